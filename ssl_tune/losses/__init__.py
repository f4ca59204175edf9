"""SSL losses as plain functions: usable without ssl-tune's trainer. One file per family.

All of them compute in float32, whatever the autocast dtype of their inputs. Those that need the whole
global batch (negatives, Sinkhorn marginals, cross-correlations) take a `distributed` flag: when set and
torch.distributed is initialised, they gather or all-reduce across ranks (with gradients where needed).

    >>> import torch
    >>> from ssl_tune.losses import nt_xent
    >>> z1, z2 = torch.randn(8, 16), torch.randn(8, 16)  # (N, d) embeddings of two views
    >>> nt_xent(z1, z2, temperature=0.2).shape
    torch.Size([])
"""

from ssl_tune.losses.clustering import dino, mean_entropy, sinkhorn, swav, update_center_
from ssl_tune.losses.contrastive import moco_v3_contrastive, nt_xent
from ssl_tune.losses.redundancy import barlow_twins, vicreg
from ssl_tune.losses.similarity import byol, negative_cosine

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
    "update_center_",
    "vicreg",
]
