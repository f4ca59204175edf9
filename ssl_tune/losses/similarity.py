"""Losses without negatives: a prediction p matched to a detached target z (SimSiam, BYOL)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def negative_cosine(p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of -cos(p, z), with z detached (SimSiam's D(p, z); BYOL's loss is 2 + 2x this)."""
    return -F.cosine_similarity(p.float(), z.detach().float(), dim=-1).mean()


def byol(p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """BYOL's normalised MSE, 2 - 2 cos(p, z), averaged over the batch; z (the target) is detached."""
    return 2 + 2 * negative_cosine(p, z)
