"""Collapse signals computed from a batch of embeddings."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def embedding_std(z: torch.Tensor) -> torch.Tensor:
    """Mean per-dimension std of L2-normalised embeddings: about 1/sqrt(d) when healthy, 0 when collapsed."""
    return F.normalize(z.detach().float(), dim=1).std(dim=0).mean()
