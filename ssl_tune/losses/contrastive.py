"""Contrastive losses: InfoNCE against the other samples of the (global) batch (SimCLR, MoCo v3)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ssl_tune.distributed import gather, rank_and_size


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.1, distributed: bool = False) -> torch.Tensor:
    """SimCLR's NT-Xent over the 2N views of N pairs; the mean over all 2N anchors.

    Each view's positive is its pair, and the other 2N - 2 views are its negatives. With `distributed`,
    negatives are gathered from every rank (2N·W views), and the mean is over this rank's anchors.
    """
    z1, z2 = F.normalize(z1.float(), dim=1), F.normalize(z2.float(), dim=1)
    n = z1.shape[0]
    rank, world = rank_and_size() if distributed else (0, 1)
    keys1, keys2 = (gather(z1), gather(z2)) if world > 1 else (z1, z2)
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
    rank, world = rank_and_size() if distributed else (0, 1)
    if world > 1:
        k = gather(k)
    logits = q @ k.T / temperature
    labels = torch.arange(q.shape[0], device=q.device) + rank * q.shape[0]
    return F.cross_entropy(logits, labels) * 2 * temperature
