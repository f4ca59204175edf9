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


def _per_sample(values: torch.Tensor, like: torch.Tensor | None = None) -> torch.Tensor:
    """(N,) -> (N, 1, 1, 1), in the dtype of `like` (so that bf16/fp16 images stay bf16/fp16)."""
    return (values if like is None else values.to(like.dtype)).view(-1, 1, 1, 1)


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
    fits wins, else a centre crop of the whole image with its aspect ratio clamped to `ratio`.
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
    # torchvision's fallback: the whole image, its aspect ratio clamped to `ratio`, centred
    fall_h, fall_w = height, width
    if width / height < min(ratio):
        fall_h = round(width / min(ratio))
    elif width / height > max(ratio):
        fall_w = round(height * max(ratio))
    h = torch.where(any_ok, h.gather(1, pick).squeeze(1), torch.full_like(h[:, 0], fall_h))
    w = torch.where(any_ok, w.gather(1, pick).squeeze(1), torch.full_like(w[:, 0], fall_w))
    pos = torch.rand(2, n, generator=generator, device=device)
    top = torch.where(any_ok, torch.floor(pos[0] * (height - h + 1)), torch.full_like(h, (height - fall_h) // 2))
    left = torch.where(any_ok, torch.floor(pos[1] * (width - w + 1)), torch.full_like(w, (width - fall_w) // 2))
    return torch.stack([top, left, h, w], dim=1)


def resized_crop(
    images: torch.Tensor, boxes: torch.Tensor, size: int, flip: torch.Tensor | None = None
) -> torch.Tensor:
    """Crop each image to its box, resize it bilinearly to `size`, and mirror it where `flip` is set.

    One grid_sample whose grid is torchvision's crop-then-resize (bilinear, align_corners=False): output
    pixel centres map onto the box, and sampling positions are clamped to the box's edge pixels, so no
    pixel outside the box leaks in. This equals torchvision's antialias=False always, and its default
    antialias=True wherever the box is no larger than `size` (upsampling): every global view, since a box
    lies inside the image; a multi-crop local box can be a little larger than its output.
    """
    n, _, height, width = images.shape
    top, left, h, w = boxes.to(images.dtype).unbind(1)
    centres = torch.arange(size, device=images.device, dtype=images.dtype) + 0.5

    def axis(start: torch.Tensor, extent: torch.Tensor, full: int) -> torch.Tensor:
        """(N, size) grid coordinates along one axis, in grid_sample's [-1, 1] (pixel edges)."""
        start, extent = start.unsqueeze(1), extent.unsqueeze(1)
        pos = start + centres * (extent / size)  # in pixels, 0 = the image's first edge
        pos = torch.minimum(torch.maximum(pos, start + 0.5), start + extent - 0.5)
        return pos * (2 / full) - 1

    gx, gy = axis(left, w, width), axis(top, h, height)
    if flip is not None:
        gx = torch.where(flip.unsqueeze(1), gx.flip(1), gx)
    grid = torch.stack([gx.unsqueeze(1).expand(n, size, size), gy.unsqueeze(2).expand(n, size, size)], dim=-1)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)


# --- colour ----------------------------------------------------------------------------------------


def grayscale(images: torch.Tensor) -> torch.Tensor:
    """Luma as (N, 1, H, W)."""
    r, g, b = images.unbind(1)
    return (GRAY_WEIGHTS[0] * r + GRAY_WEIGHTS[1] * g + GRAY_WEIGHTS[2] * b).unsqueeze(1)


def _blend(a: torch.Tensor, b: torch.Tensor, ratio: torch.Tensor) -> torch.Tensor:
    ratio = _per_sample(ratio, a)
    return (ratio * a + (1 - ratio) * b).clamp_(0, 1)


def adjust_brightness(images: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    return (images * _per_sample(factor, images)).clamp_(0, 1)


def adjust_contrast(images: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    mean = grayscale(images).mean(dim=(1, 2, 3), keepdim=True)
    return _blend(images, mean, factor)


def adjust_saturation(images: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    return _blend(images, grayscale(images), factor)


def adjust_hue(images: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Rotate hue by `shift` (in turns, within [-0.5, 0.5]) through HSV, as torchvision."""
    r, g, b = images.unbind(1)
    # elementwise over the channels: much faster on CPU than a reduction over dim 1
    maxc = torch.maximum(torch.maximum(r, g), b)
    chroma = maxc - torch.minimum(torch.minimum(r, g), b)  # = value x saturation
    eq = chroma == 0
    safe_chroma = torch.where(eq, 1.0, chroma)
    rc, gc, bc = (maxc - r) / safe_chroma, (maxc - g) / safe_chroma, (maxc - b) / safe_chroma
    hue = torch.where(maxc == r, bc - gc, torch.where(maxc == g, 2.0 + rc - bc, 4.0 + gc - rc))
    hue = torch.where(eq, 0.0, hue)
    hue6 = torch.remainder(hue / 6.0 + 1.0 + shift.to(images.dtype).view(-1, 1, 1), 1.0) * 6.0
    # HSV -> RGB without branches: channel n in (5, 3, 1) for (r, g, b)
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
