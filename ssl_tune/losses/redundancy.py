"""Redundancy-reduction losses on the embeddings' (cross-)covariance (Barlow Twins, VICReg)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ssl_tune.distributed import all_reduce_sum, gather, rank_and_size


def _standardize(z: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Zero mean, unit (biased) variance per dimension over the batch, as a non-affine BatchNorm."""
    return (z - z.mean(dim=0)) / torch.sqrt(z.var(dim=0, unbiased=False) + eps)


def barlow_twins(z1: torch.Tensor, z2: torch.Tensor, lambd: float = 0.0051, distributed: bool = False) -> torch.Tensor:
    """Σ_i (1 - C_ii)² + λ Σ_{i≠j} C_ij², C the cross-correlation of the batch-standardised embeddings.

    With `distributed`, C is averaged over ranks (each rank standardises its own batch).
    """
    z1, z2 = _standardize(z1.float()), _standardize(z2.float())
    c = z1.T @ z2 / z1.shape[0]
    _, world = rank_and_size() if distributed else (0, 1)
    if world > 1:
        c = all_reduce_sum(c) / world
    on_diag = (torch.diagonal(c) - 1).pow(2).sum()
    off_diag = c.pow(2).sum() - torch.diagonal(c).pow(2).sum()
    return on_diag + lambd * off_diag


def vicreg(
    z1: torch.Tensor,
    z2: torch.Tensor,
    sim_weight: float = 25.0,
    var_weight: float = 25.0,
    cov_weight: float = 1.0,
    eps: float = 1e-4,
    distributed: bool = False,
) -> torch.Tensor:
    """VICReg: invariance (MSE) + variance (hinge on each dimension's std at 1) + covariance (off-diagonal²/d).

    With `distributed`, every term is over the embeddings gathered from all ranks (as the official code).
    """
    z1, z2 = z1.float(), z2.float()
    if distributed and rank_and_size()[1] > 1:
        z1, z2 = gather(z1), gather(z2)
    invariance = F.mse_loss(z1, z2)

    def variance(z: torch.Tensor) -> torch.Tensor:
        return F.relu(1 - torch.sqrt(z.var(dim=0) + eps)).mean()

    def covariance(z: torch.Tensor) -> torch.Tensor:
        n, d = z.shape
        z = z - z.mean(dim=0)
        cov = z.T @ z / (n - 1)
        return (cov.pow(2).sum() - torch.diagonal(cov).pow(2).sum()) / d

    return (
        sim_weight * invariance
        + var_weight * (variance(z1) + variance(z2))
        + cov_weight * (covariance(z1) + covariance(z2))
    )
