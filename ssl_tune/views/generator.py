"""The batched view generator: a uint8 (N, 3, H, W) batch on any device to one float tensor per view, each
sample with its own random crop, flip, jitter, grayscale, blur and solarize (ops in `ssl_tune.views.ops`)."""

from __future__ import annotations

import torch

from ssl_tune.views import ops
from ssl_tune.views.recipes import ViewSpec


class ViewGenerator:
    """Makes every view of a uint8 (N, 3, H, W) batch on its device, then normalises it."""

    def __init__(
        self,
        specs: list[ViewSpec],
        mean: tuple[float, float, float],
        std: tuple[float, float, float],
        channels_last: bool = False,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        self.specs = specs
        self.mean = torch.tensor(mean).view(1, 3, 1, 1)
        self.std = torch.tensor(std).view(1, 3, 1, 1)
        self.channels_last = channels_last
        self.dtype = dtype
        self._stats: dict[tuple[torch.device, torch.dtype], tuple[torch.Tensor, torch.Tensor]] = {}

    @property
    def num_views(self) -> int:
        return sum(s.count for s in self.specs)

    def __call__(self, images: torch.Tensor, generator: torch.Generator | None = None) -> list[torch.Tensor]:
        x = images.to(self.dtype).div_(255)
        views = []
        for spec in self.specs:
            # the `count` views of one spec in one batched pass (fewer, larger kernels), then split
            batch = x if spec.count == 1 else x.repeat(spec.count, 1, 1, 1)
            views.extend(self.normalize(augment_batch(batch, spec, generator)).chunk(spec.count))
        return views

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        key = (x.device, x.dtype)
        if key not in self._stats:  # copied to the device once: a host-to-device copy per step would sync
            self._stats[key] = (self.mean.to(x.device, x.dtype), self.std.to(x.device, x.dtype))
        mean, std = self._stats[key]
        x = (x - mean) / std
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def first_view(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """One view of each image, as the first view of a training step makes it (for LiDAR's views)."""
        return self.normalize(augment_batch(images.to(self.dtype).div_(255), self.specs[0], generator))

    def plain(self, images: torch.Tensor) -> torch.Tensor:
        """The un-augmented, normalised batch (for the kNN bank)."""
        return self.normalize(images.to(self.dtype).div_(255))


def augment_batch(x: torch.Tensor, spec: ViewSpec, generator: torch.Generator | None = None) -> torch.Tensor:
    """One view of a float batch in [0, 1], with per-sample random parameters."""
    n, _, h, w = x.shape
    dev = x.device

    def rand(*shape: int) -> torch.Tensor:
        return torch.rand(*shape, generator=generator, device=dev)

    boxes = ops.sample_crop_boxes(n, h, w, spec.scale, generator=generator, device=dev)
    flip = rand(n) < spec.flip_prob
    out = ops.resized_crop(x, boxes, spec.size, flip)

    if spec.jitter_prob > 0:
        jitter = rand(n) < spec.jitter_prob
        u = rand(4, n)
        one = torch.ones(n, device=dev)

        def factor(strength: float, v: torch.Tensor) -> torch.Tensor:
            return torch.where(jitter, 1 - strength + 2 * strength * v, one)

        # fixed order brightness, contrast, saturation, hue (as DALI's and solo-learn's GPU pipelines)
        if spec.brightness:
            out = ops.adjust_brightness(out, factor(spec.brightness, u[0]))
        if spec.contrast:
            out = ops.adjust_contrast(out, factor(spec.contrast, u[1]))
        if spec.saturation:
            out = ops.adjust_saturation(out, factor(spec.saturation, u[2]))
        if spec.hue:
            out = ops.adjust_hue(out, torch.where(jitter, spec.hue * (2 * u[3] - 1), 0 * one))
    if spec.grayscale_prob > 0:
        gray = (rand(n) < spec.grayscale_prob).view(-1, 1, 1, 1)
        out = torch.where(gray, ops.grayscale(out).expand_as(out), out)
    if spec.blur_prob > 0:
        blur = rand(n) < spec.blur_prob
        sigma = 0.1 + 1.9 * rand(n)
        blurred = ops.gaussian_blur(out, sigma, ops.blur_kernel_size(spec.size))
        out = torch.where(blur.view(-1, 1, 1, 1), blurred, out)
    if spec.solarize_prob > 0:
        out = ops.solarize(out, rand(n) < spec.solarize_prob)
    return out
