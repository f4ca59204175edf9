"""Collapse signals computed from a batch of embeddings."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def embedding_std(z: torch.Tensor) -> torch.Tensor:
    """Mean per-dimension std of L2-normalised embeddings: about 1/sqrt(d) when healthy, 0 when collapsed."""
    return F.normalize(z.detach().float(), dim=1).std(dim=0).mean()


def effective_rank(z: torch.Tensor) -> torch.Tensor:
    """exp(entropy) of the normalised singular values of centred, L2-normalised embeddings (Roy & Vetterli).

    Between 1 (every sample on one line: collapsed) and min(N, d) (spread over all dimensions).
    """
    z = F.normalize(z.detach().float(), dim=1)
    s = torch.linalg.svdvals(z - z.mean(dim=0))
    p = s / s.sum().clamp_min(1e-12)
    return torch.exp(-(p * torch.log(p.clamp_min(1e-12))).sum())
