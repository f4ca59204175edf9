"""The pixels of a derived dataset: resized to another side, or turned grey (`ImageData.derived`). Both are
dataset options (`image_size`, `grayscale`), so a user trains, sweeps and evaluates on the derived data like any
dataset; the `shifted` search preset uses them to break the recipes' assumptions (16 px grey CIFAR-10).

The transforms are deterministic (no randomness to seed): the same source gives the same pixels. A grey image
keeps 3 channels, all equal, so every backbone and augmentation takes it unchanged; colour jitter's hue and
saturation and the random grey view then change nothing.

>>> import torch
>>> images = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8)
>>> grey = to_grey(resize(images, 16))
>>> tuple(grey.shape), bool((grey[:, 0] == grey[:, 2]).all())
((4, 3, 16, 16), True)
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

LUMA = (0.299, 0.587, 0.114)  # ITU-R BT.601, as torchvision's rgb_to_grayscale
STREAMED_GREY = "grayscale applies to a dataset loaded whole, not to streamed shards: pack grey images instead"
CHUNK = 4096  # images converted at a time: bounded float memory for any dataset size


def _chunked(images: torch.Tensor, fn: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """`fn` over float chunks of uint8 `images`, rounded back to uint8."""
    return torch.cat(
        [
            fn(images[i : i + CHUNK].float()).round_().clamp_(0, 255).to(torch.uint8)
            for i in range(0, len(images), CHUNK)
        ]
    )


def resize(images: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 (N, C, H, W) images resized to (N, C, size, size), antialiased when downscaling."""
    if images.shape[-2:] == (size, size):
        return images
    return _chunked(images, lambda x: F.interpolate(x, size=(size, size), mode="bilinear", antialias=True))


def to_grey(images: torch.Tensor) -> torch.Tensor:
    """uint8 (N, 3, H, W) images as their luma, repeated in 3 equal channels."""
    weights = torch.tensor(LUMA).view(1, 3, 1, 1)
    return _chunked(images, lambda x: (x * weights).sum(1, keepdim=True).repeat(1, 3, 1, 1))


def channel_stats(images: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std in [0, 1] of uint8 (N, 3, H, W) images, for the derived data's normalisation."""
    total = torch.zeros(3, dtype=torch.float64)
    squares = torch.zeros(3, dtype=torch.float64)
    for i in range(0, len(images), CHUNK):
        x = images[i : i + CHUNK].double() / 255
        total += x.sum((0, 2, 3))
        squares += (x * x).sum((0, 2, 3))
    n = images.numel() / 3
    mean = total / n
    std = (squares / n - mean * mean).clamp_min(0).sqrt()
    return tuple(float(v) for v in mean), tuple(float(v) for v in std)
