"""Clustering losses: codes over prototypes (SwAV) or a teacher's softmax (DINO), and their collapse signal."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.distributed as dist
import torch.nn.functional as F

from ssl_tune.distributed import rank_and_size


@torch.no_grad()
def sinkhorn(
    scores: torch.Tensor, epsilon: float = 0.05, iterations: int = 3, distributed: bool = False
) -> torch.Tensor:
    """SwAV's Sinkhorn-Knopp in fp32: soft codes (B, K) from prototype scores (B, K).

    Rows sum to 1; the K prototypes are used equally (column marginals tend to B/K as iterations grow).
    With `distributed`, the marginals are over the global batch.
    """
    _, world = rank_and_size() if distributed else (0, 1)
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


@torch.no_grad()
def update_center_(center: torch.Tensor, teacher_outputs: torch.Tensor, momentum: float) -> None:
    """DINO's centre, in place: center (1, K) <- m·center + (1 - m)·(mean of teacher_outputs (N, K) over the
    batch of every rank). https://arxiv.org/abs/2104.14294, eq. 4.

    >>> center = torch.zeros(1, 2)
    >>> update_center_(center, torch.tensor([[1.0, 3.0], [3.0, 1.0]]), momentum=0.9)
    >>> center
    tensor([[0.2000, 0.2000]])
    """
    batch_sum = teacher_outputs.float().sum(dim=0, keepdim=True)
    count = teacher_outputs.shape[0]
    _, world_size = rank_and_size()
    if world_size > 1:
        dist.all_reduce(batch_sum)
        count *= world_size
    center.mul_(momentum).add_(batch_sum / count, alpha=1 - momentum)


def mean_entropy(probs: torch.Tensor) -> torch.Tensor:
    """Entropy (nats) of the batch-mean distribution: log K when K outputs are used equally, 0 when one is."""
    mean = probs.detach().float().mean(dim=0)
    return -(mean * torch.log(mean.clamp_min(1e-12))).sum()
