"""RankMe (Garrido, Balestriero, Najman & LeCun, ICML 2023): the effective rank of a set of representations.

For an (N, d) representation matrix Z with singular values sigma_1..sigma_min(N,d), the paper defines

    p_k = sigma_k / ||sigma||_1 + eps,        RankMe(Z) = exp(-sum_k p_k log p_k),

on Z as it is: not centred, not normalised. It is about 1 when every row lies on one line and about min(N, d)
when the rows spread evenly over all directions; a higher value predicts a better downstream accuracy.

Measured on the 2-core CPU dev box (torch 2.14), N=10,000, d=512: 0.2-0.3 s with float32 svdvals (float64:
0.5-0.6 s, the same RankMe to 1e-7), so float32 it is. Going through the Gram matrix is faster in float32 but
turns the singular values below ~3e-4 * sigma_max into noise (RankMe of a line: 1.02 instead of 1.0001).
"""

from __future__ import annotations

import torch
from torch import Tensor


@torch.no_grad()
def rankme(features: Tensor, eps: float = 1e-7) -> float:
    """RankMe of (N, d) features, in [1, min(N, d)] up to eps; computed in float32 on the features' device.

    Invariant to scaling the features (not to shifting them: no centring, as in the paper).

    >>> v = torch.randn(1, 64)
    >>> round(rankme(torch.randn(2000, 1) * v), 2)  # every row on one line
    1.0
    """
    if features.dim() != 2 or min(features.shape) == 0:
        raise ValueError(f"RankMe needs (N, d) features with N, d >= 1, got shape {tuple(features.shape)}")
    singular_values = torch.linalg.svdvals(features.detach().float())
    # all-zero features: every p_k = eps, a RankMe of about 1 (collapsed), not nan
    p = singular_values / singular_values.sum().clamp_min(torch.finfo(torch.float32).tiny) + eps
    return torch.exp(-(p * torch.log(p)).sum()).item()
