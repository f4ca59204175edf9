"""SSL losses as plain functions: usable without ssl-tune's trainer.

All of them compute in float32, whatever the autocast dtype of their inputs. Those that need the whole
global batch (negatives, Sinkhorn marginals, cross-correlations) take a `distributed` flag: when set and
torch.distributed is initialised, they gather or all-reduce across ranks (with gradients where needed).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.distributed as dist
import torch.nn.functional as F


def _world() -> tuple[int, int]:
    """(rank, world size) of the default process group, or (0, 1) without one."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _gather(x: torch.Tensor) -> torch.Tensor:
    """Concatenate `x` from every rank along dim 0, keeping the gradient of this rank's part."""
    from torch.distributed.nn.functional import all_gather

    return torch.cat(all_gather(x), dim=0)


def _all_reduce_sum(x: torch.Tensor) -> torch.Tensor:
    """Sum over ranks, differentiable."""
    from torch.distributed.nn.functional import all_reduce

    return all_reduce(x)


# --- no negatives ----------------------------------------------------------------------------------


def negative_cosine(p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of -cos(p, z), with z detached (SimSiam's D(p, z); BYOL's loss is 2 + 2x this)."""
    return -F.cosine_similarity(p.float(), z.detach().float(), dim=-1).mean()


def byol(p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """BYOL's normalised MSE, 2 - 2 cos(p, z), averaged over the batch; z (the target) is detached."""
    return 2 + 2 * negative_cosine(p, z)


# --- contrastive ------------------------------------------------------------------------------------


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.1, distributed: bool = False) -> torch.Tensor:
    """SimCLR's NT-Xent over the 2N views of N pairs; the mean over all 2N anchors.

    Each view's positive is its pair, and the other 2N - 2 views are its negatives. With `distributed`,
    negatives are gathered from every rank (2N·W views), and the mean is over this rank's anchors.
    """
    z1, z2 = F.normalize(z1.float(), dim=1), F.normalize(z2.float(), dim=1)
    n = z1.shape[0]
    rank, world = _world() if distributed else (0, 1)
    keys1, keys2 = (_gather(z1), _gather(z2)) if world > 1 else (z1, z2)
    keys = torch.cat([keys1, keys2])  # (2NW, d): all first views, then all second views
    queries = torch.cat([z1, z2])  # (2N, d)
    logits = queries @ keys.T / temperature
    total = keys1.shape[0]
    local = torch.arange(n, device=z1.device) + rank * n
    self_idx = torch.cat([local, local + total])
    pos_idx = torch.cat([local + total, local])
    logits[torch.arange(2 * n, device=z1.device), self_idx] = float("-inf")
    return F.cross_entropy(logits, pos_idx)


def moco_v3_contrastive(
    q: torch.Tensor, k: torch.Tensor, temperature: float = 0.2, distributed: bool = False
) -> torch.Tensor:
    """MoCo v3's InfoNCE: CE of normalised q·kᵀ/τ against the diagonal, times 2τ. k is detached.

    With `distributed`, the keys of every rank are the negatives (as in the paper's pseudo-code).
    """
    q = F.normalize(q.float(), dim=1)
    k = F.normalize(k.detach().float(), dim=1)
    rank, world = _world() if distributed else (0, 1)
    if world > 1:
        k = _gather(k)
    logits = q @ k.T / temperature
    labels = torch.arange(q.shape[0], device=q.device) + rank * q.shape[0]
    return F.cross_entropy(logits, labels) * 2 * temperature


# --- clustering -------------------------------------------------------------------------------------


@torch.no_grad()
def sinkhorn(
    scores: torch.Tensor, epsilon: float = 0.05, iterations: int = 3, distributed: bool = False
) -> torch.Tensor:
    """SwAV's Sinkhorn-Knopp in fp32: soft codes (B, K) from prototype scores (B, K).

    Rows sum to 1; the K prototypes are used equally (column marginals tend to B/K as iterations grow).
    With `distributed`, the marginals are over the global batch.
    """
    _, world = _world() if distributed else (0, 1)
    scores = scores.detach().float()
    top = scores.max()
    if world > 1:
        dist.all_reduce(top, op=dist.ReduceOp.MAX)
    q = torch.exp((scores - top) / epsilon).T  # (K, B), shifted so exp cannot overflow
    num_prototypes, batch = q.shape[0], q.shape[1] * world

    def reduce(x: torch.Tensor) -> torch.Tensor:
        if world > 1:
            dist.all_reduce(x)
        return x

    q /= reduce(q.sum())
    for _ in range(iterations):
        q /= reduce(q.sum(dim=1, keepdim=True))  # each prototype gets mass 1/K
        q /= num_prototypes
        q /= q.sum(dim=0, keepdim=True)  # each sample gets mass 1/B
        q /= batch
    return (q * batch).T


def swav(
    scores_per_crop: Sequence[torch.Tensor], codes_per_global_crop: Sequence[torch.Tensor], temperature: float = 0.1
) -> torch.Tensor:
    """SwAV's swapped prediction: each global crop's codes are predicted from every other crop's scores.

    The mean, over (global crop i, other crop v) pairs, of the batch mean of -Σ_k q_i log softmax(s_v / τ).
    """
    total, pairs = 0.0, 0
    for i, codes in enumerate(codes_per_global_crop):
        for v, scores in enumerate(scores_per_crop):
            if v == i:
                continue
            log_p = F.log_softmax(scores.float() / temperature, dim=1)
            total = total - (codes.detach().float() * log_p).sum(dim=1).mean()
            pairs += 1
    return total / pairs


def dino(
    student_outputs: Sequence[torch.Tensor],
    teacher_outputs: Sequence[torch.Tensor],
    center: torch.Tensor,
    student_temp: float = 0.1,
    teacher_temp: float = 0.04,
) -> torch.Tensor:
    """DINO's cross-entropy between the teacher's centred, sharpened softmax and the student's softmax.

    Averaged over every pair (teacher global crop i, student crop v) with v != i; the teacher is detached.
    Student crops are ordered as the teacher's: the first `len(teacher_outputs)` are the global crops.
    """
    targets = [F.softmax((t.detach().float() - center) / teacher_temp, dim=1) for t in teacher_outputs]
    log_probs = [F.log_softmax(s.float() / student_temp, dim=1) for s in student_outputs]
    total, pairs = 0.0, 0
    for i, q in enumerate(targets):
        for v, log_p in enumerate(log_probs):
            if v == i:
                continue
            total = total - (q * log_p).sum(dim=1).mean()
            pairs += 1
    return total / pairs


# --- redundancy reduction ---------------------------------------------------------------------------


def _standardize(z: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Zero mean, unit (biased) variance per dimension over the batch, as a non-affine BatchNorm."""
    return (z - z.mean(dim=0)) / torch.sqrt(z.var(dim=0, unbiased=False) + eps)


def barlow_twins(z1: torch.Tensor, z2: torch.Tensor, lambd: float = 0.0051, distributed: bool = False) -> torch.Tensor:
    """Σ_i (1 - C_ii)² + λ Σ_{i≠j} C_ij², C the cross-correlation of the batch-standardised embeddings.

    With `distributed`, C is averaged over ranks (each rank standardises its own batch).
    """
    z1, z2 = _standardize(z1.float()), _standardize(z2.float())
    c = z1.T @ z2 / z1.shape[0]
    _, world = _world() if distributed else (0, 1)
    if world > 1:
        c = _all_reduce_sum(c) / world
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
    if distributed and _world()[1] > 1:
        z1, z2 = _gather(z1), _gather(z2)
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


def mean_entropy(probs: torch.Tensor) -> torch.Tensor:
    """Entropy (nats) of the batch-mean distribution: log K when K outputs are used equally, 0 when one is."""
    mean = probs.detach().float().mean(dim=0)
    return -(mean * torch.log(mean.clamp_min(1e-12))).sum()


__all__ = [
    "barlow_twins",
    "byol",
    "dino",
    "mean_entropy",
    "moco_v3_contrastive",
    "negative_cosine",
    "nt_xent",
    "sinkhorn",
    "swav",
    "vicreg",
]
