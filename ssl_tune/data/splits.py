"""A fixed, seeded, stratified validation hold-out of a train split, the same for every trial of a sweep.

Example: 10% of CIFAR-10's 50,000 train images, 500 per class, identical on every call with the same inputs::

    split = validation_split(train_labels, len(train_labels), fraction=0.1, seed=0)
    val_images = train_images[split.val_indices]
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class ValidationSplit:
    """Indices into the original train split, int64 on the CPU, sorted ascending.

    The two are disjoint and together cover range(n).
    """

    train_indices: Tensor  # (n - n_val,)
    val_indices: Tensor  # (n_val,)


def validation_split(
    labels: Tensor | None,
    n: int,
    *,
    fraction: float = 0.1,
    size: int | None = None,
    cap: int = 5000,
    seed: int = 0,
) -> ValidationSplit:
    """Hold out `size` (else min(round(fraction * n), cap), at least 1) of the n train images as a validation set.

    labels: (n,) integer class per image, or None for unlabeled data (a seeded uniform choice).
    With labels, the hold-out is stratified: class c gives n_val * count_c / n images, rounded by largest
    remainder (ties to the smaller class value) so the total is exactly n_val; which images of a class go is
    a seeded permutation (torch.Generator), not the order of the data.

    The result depends only on (labels, n, fraction, size, cap, seed): not on the global RNG, the device or
    the call order. Raises ValueError if fraction is not in (0, 0.5], if size is not in [1, n), or if
    nothing would be left to train on.

    >>> split = validation_split(torch.tensor([0, 0, 0, 0, 1, 1, 1, 1]), 8, fraction=0.5)
    >>> len(split.val_indices), len(split.train_indices)
    (4, 4)
    """
    if not 0.0 < fraction <= 0.5:
        raise ValueError(f"validation fraction must be in (0, 0.5], got {fraction}")
    if n < 1:
        raise ValueError(f"cannot split {n} images")
    if cap < 1:
        raise ValueError(f"validation cap must be at least 1, got {cap}")
    if labels is not None and (labels.dim() != 1 or len(labels) != n):
        raise ValueError(f"labels must have shape ({n},), got {tuple(labels.shape)}")
    if size is not None:
        if not 1 <= size < n:
            raise ValueError(f"validation size must be in [1, {n}) for {n} images, got {size}")
        n_val = size
    else:
        n_val = max(1, min(round(fraction * n), cap))
        if n_val >= n:
            raise ValueError(f"holding out {n_val} of {n} images would leave none to train on")

    generator = torch.Generator().manual_seed(seed)
    if labels is None:
        is_val = torch.zeros(n, dtype=torch.bool)
        is_val[torch.randperm(n, generator=generator)[:n_val]] = True
    else:
        is_val = _stratified_mask(labels.detach().cpu(), n_val, generator)
    indices = torch.arange(n)
    return ValidationSplit(train_indices=indices[~is_val], val_indices=indices[is_val])


def _stratified_mask(labels: Tensor, n_val: int, generator: torch.Generator) -> Tensor:
    """(n,) bool: True for the n_val held-out images, each class in proportion to its count."""
    n = len(labels)
    _, class_of, class_counts = torch.unique(labels, return_inverse=True, return_counts=True)
    # exact integer arithmetic: quota_c = n_val * count_c / n = floor + remainder / n
    scaled = class_counts * n_val
    quota = scaled // n
    leftover = n_val - int(quota.sum())
    # largest remainders first; a stable sort breaks ties by class value. Every class that gets +1 has a
    # non-zero remainder (the remainders sum to leftover * n with each below n), so quota_c <= count_c.
    by_remainder = torch.sort(scaled % n, descending=True, stable=True).indices
    quota[by_remainder[:leftover]] += 1

    # visit images in a seeded random order; the first quota_c of class c in that order are held out
    order = torch.randperm(n, generator=generator)
    grouped = order[torch.sort(class_of[order], stable=True).indices]  # by class, random within a class
    class_start = torch.cumsum(class_counts, 0) - class_counts
    grouped_class = class_of[grouped]
    rank_in_class = torch.arange(n) - class_start[grouped_class]
    is_val = torch.zeros(n, dtype=torch.bool)
    is_val[grouped[rank_in_class < quota[grouped_class]]] = True
    return is_val
