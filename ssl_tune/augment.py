"""Batched image augmentations with per-sample parameters, as plain tensor code.

Every op takes a float batch (N, 3, H, W) in [0, 1] and one parameter per sample, so that a whole
batch is augmented on the device in a handful of kernels. The `sample_*` functions draw those
parameters from a `torch.Generator`. The semantics follow torchvision.transforms.v2.functional.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

GRAY_WEIGHTS = (0.2989, 0.587, 0.114)  # ITU-R 601-2 luma, as torchvision


def _per_sample(values: torch.Tensor) -> torch.Tensor:
    return values.view(-1, 1, 1, 1)


# --- crop, resize and flip: one grid_sample --------------------------------------------------------


def sample_crop_boxes(
    n: int,
    height: int,
    width: int,
    scale: tuple[float, float],
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
    attempts: int = 10,
) -> torch.Tensor:
    """RandomResizedCrop boxes, one per sample, as (N, 4) float [top, left, h, w] in pixels.

    Like torchvision: up to `attempts` draws of area and log-aspect-ratio per sample; the first that
    fits wins, else the whole image is taken (torchvision clamps the ratio of a centre crop).
    """
    area = height * width
    u = torch.rand(3, n, attempts, generator=generator, device=device)
    target_area = area * (scale[0] + (scale[1] - scale[0]) * u[0])
    log_r = math.log(ratio[0]) + (math.log(ratio[1]) - math.log(ratio[0])) * u[1]
    aspect = torch.exp(log_r)
    w = torch.sqrt(target_area * aspect).round()
    h = torch.sqrt(target_area / aspect).round()
    ok = (w > 0) & (h > 0) & (w <= width) & (h <= height)
    first = torch.argmax(ok.to(torch.int8), dim=1)  # index of the first valid draw (0 if none)
    any_ok = ok.any(dim=1)
    pick = first.unsqueeze(1)
    h = torch.where(any_ok, h.gather(1, pick).squeeze(1), torch.full_like(h[:, 0], height))
    w = torch.where(any_ok, w.gather(1, pick).squeeze(1), torch.full_like(w[:, 0], width))
    pos = torch.rand(2, n, generator=generator, device=device)
    top = torch.floor(pos[0] * (height - h + 1))
    left = torch.floor(pos[1] * (width - w + 1))
    return torch.stack([top, left, h, w], dim=1)


def resized_crop(
    images: torch.Tensor, boxes: torch.Tensor, size: int, flip: torch.Tensor | None = None
) -> torch.Tensor:
    """Crop each image to its box, resize it bilinearly to `size`, and mirror it where `flip` is set.

    One affine grid_sample: the grid maps output pixel centres onto the box as torchvision's
    crop-then-resize does (align_corners=False, no antialias).
    """
    n, _, height, width = images.shape
    top, left, h, w = boxes.to(images.dtype).unbind(1)
    scale_x, scale_y = w / width, h / height
    shift_x = (2 * left + w) / width - 1
    shift_y = (2 * top + h) / height - 1
    if flip is not None:
        scale_x = torch.where(flip, -scale_x, scale_x)
    theta = torch.zeros(n, 2, 3, device=images.device, dtype=images.dtype)
    theta[:, 0, 0], theta[:, 0, 2] = scale_x, shift_x
    theta[:, 1, 1], theta[:, 1, 2] = scale_y, shift_y
    grid = F.affine_grid(theta, [n, 3, size, size], align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)


# --- colour ----------------------------------------------------------------------------------------


def grayscale(images: torch.Tensor) -> torch.Tensor:
    """Luma as (N, 1, H, W)."""
    r, g, b = images.unbind(1)
    return (GRAY_WEIGHTS[0] * r + GRAY_WEIGHTS[1] * g + GRAY_WEIGHTS[2] * b).unsqueeze(1)


def _blend(a: torch.Tensor, b: torch.Tensor, ratio: torch.Tensor) -> torch.Tensor:
    ratio = _per_sample(ratio)
    return (ratio * a + (1 - ratio) * b).clamp_(0, 1)


def adjust_brightness(images: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    return (images * _per_sample(factor)).clamp_(0, 1)


def adjust_contrast(images: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    mean = grayscale(images).mean(dim=(1, 2, 3), keepdim=True)
    return _blend(images, mean, factor)


def adjust_saturation(images: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    return _blend(images, grayscale(images), factor)


def adjust_hue(images: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Rotate hue by `shift` (in turns, within [-0.5, 0.5]) through HSV, as torchvision."""
    r, g, b = images.unbind(1)
    maxc, _ = images.max(dim=1)
    minc, _ = images.min(dim=1)
    delta = maxc - minc
    eq = maxc == minc
    safe_delta = torch.where(eq, torch.ones_like(delta), delta)
    sat = delta / torch.where(eq, torch.ones_like(maxc), maxc)
    rc, gc, bc = (maxc - r) / safe_delta, (maxc - g) / safe_delta, (maxc - b) / safe_delta
    hue = torch.where(maxc == r, bc - gc, torch.where(maxc == g, 2.0 + rc - bc, 4.0 + gc - rc))
    hue = torch.where(eq, torch.zeros_like(hue), hue)
    hue6 = torch.remainder(hue / 6.0 + 1.0 + shift.view(-1, 1, 1), 1.0) * 6.0
    # HSV -> RGB without branches: channel n in (5, 3, 1) for (r, g, b)
    chroma = maxc * sat
    out = []
    for n in (5.0, 3.0, 1.0):
        k = torch.remainder(n + hue6, 6.0)
        out.append(maxc - chroma * torch.minimum(k, 4.0 - k).clamp(0, 1))
    return torch.stack(out, dim=1)


def solarize(images: torch.Tensor, apply: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    flipped = torch.where(images >= threshold, 1.0 - images, images)
    return torch.where(_per_sample(apply), flipped, images)


def gaussian_kernels(sigma: torch.Tensor, kernel_size: int) -> torch.Tensor:
    """(N, K) normalised 1-D Gaussian kernels, one per sigma."""
    half = (kernel_size - 1) / 2
    x = torch.linspace(-half, half, kernel_size, device=sigma.device, dtype=sigma.dtype)
    k = torch.exp(-0.5 * (x.view(1, -1) / sigma.view(-1, 1)) ** 2)
    return k / k.sum(dim=1, keepdim=True)


def gaussian_blur(images: torch.Tensor, sigma: torch.Tensor, kernel_size: int) -> torch.Tensor:
    """Separable Gaussian blur with a sigma per sample and reflect padding (torchvision's border)."""
    n, c, h, w = images.shape
    k = gaussian_kernels(sigma.to(images.dtype), kernel_size).repeat_interleave(c, dim=0)  # (N*C, K)
    pad = kernel_size // 2
    x = images.reshape(1, n * c, h, w)
    x = F.conv2d(F.pad(x, (pad, pad, 0, 0), mode="reflect"), k.view(n * c, 1, 1, -1), groups=n * c)
    x = F.conv2d(F.pad(x, (0, 0, pad, pad), mode="reflect"), k.view(n * c, 1, -1, 1), groups=n * c)
    return x.view(n, c, h, w)


def blur_kernel_size(image_size: int) -> int:
    """About 10% of the image side, odd, at least 3 (SimCLR: 23 px at 224 px)."""
    k = max(3, int(0.1 * image_size))
    return k if k % 2 else k + 1
