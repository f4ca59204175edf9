"""SSL losses as plain functions: usable without ssl-tune's trainer.

All of them compute in float32, whatever the autocast dtype of their inputs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def negative_cosine(p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of -cos(p, z), with z detached (SimSiam's D(p, z); BYOL's loss is 2 + 2x this)."""
    return -F.cosine_similarity(p.float(), z.detach().float(), dim=-1).mean()
