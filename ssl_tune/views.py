"""View recipes (two views, BYOL's asymmetric pair, multi-crop) and the batched generator that makes them.

A recipe is a list of `ViewSpec`s. `ViewGenerator` turns a uint8 batch on any device into one float
tensor per view, each sample with its own random crop, flip, jitter, grayscale, blur and solarize.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from pydantic import Field, model_validator

from ssl_tune import augment
from ssl_tune.settings import Settings


class AugmentConfig(Settings):
    """Augmentation strengths; the SimCLR CIFAR recipe by default (solo-learn's cifar symmetric_weak)."""

    crop_min_scale: float = Field(0.08, gt=0, le=1)
    crop_max_scale: float = Field(1.0, gt=0, le=1)
    flip_prob: float = Field(0.5, ge=0, le=1)
    jitter_prob: float = Field(0.8, ge=0, le=1)
    brightness: float = Field(0.4, ge=0, le=1)
    contrast: float = Field(0.4, ge=0, le=1)
    saturation: float = Field(0.4, ge=0, le=1)
    hue: float = Field(0.1, ge=0, le=0.5)
    grayscale_prob: float = Field(0.2, ge=0, le=1)
    blur_prob: float = Field(0.0, ge=0, le=1)
    solarize_prob: float = Field(0.0, ge=0, le=1)
    # multi-crop (used by methods whose recipe is multi-crop)
    num_local_crops: int = Field(0, ge=0, le=16)
    local_crop_size: int | None = Field(None, gt=0)
    local_crop_min_scale: float = Field(0.05, gt=0, le=1)
    local_crop_max_scale: float = Field(0.14, gt=0, le=1)
    global_crop_min_scale: float = Field(0.14, gt=0, le=1)

    @model_validator(mode="after")
    def _scales_ordered(self) -> AugmentConfig:
        if self.crop_min_scale > self.crop_max_scale:
            raise ValueError("crop_min_scale must not exceed crop_max_scale")
        if self.local_crop_min_scale > self.local_crop_max_scale:
            raise ValueError("local_crop_min_scale must not exceed local_crop_max_scale")
        return self


@dataclass(frozen=True)
class ViewSpec:
    """One kind of view; `count` views of it are made per image."""

    size: int
    scale: tuple[float, float]
    flip_prob: float
    jitter_prob: float
    brightness: float
    contrast: float
    saturation: float
    hue: float
    grayscale_prob: float
    blur_prob: float
    solarize_prob: float
    count: int = 1


def _spec(aug: AugmentConfig, size: int, **overrides: float | int | tuple[float, float]) -> ViewSpec:
    fields = {
        "size": size,
        "scale": (aug.crop_min_scale, aug.crop_max_scale),
        "flip_prob": aug.flip_prob,
        "jitter_prob": aug.jitter_prob,
        "brightness": aug.brightness,
        "contrast": aug.contrast,
        "saturation": aug.saturation,
        "hue": aug.hue,
        "grayscale_prob": aug.grayscale_prob,
        "blur_prob": aug.blur_prob,
        "solarize_prob": aug.solarize_prob,
    }
    fields.update(overrides)
    return ViewSpec(**fields)


def two_views(aug: AugmentConfig, image_size: int) -> list[ViewSpec]:
    """SimCLR-style: two views from the same distribution."""
    return [_spec(aug, image_size, count=2)]


def asymmetric_views(aug: AugmentConfig, image_size: int) -> list[ViewSpec]:
    """BYOL's pair: view 1 always blurred, never solarized; view 2 rarely blurred, sometimes solarized.

    At or below 64 px blur is dropped (as in solo-learn's CIFAR recipe) unless `blur_prob` asks for it.
    """
    small = image_size <= 64
    blur1 = aug.blur_prob if small else 1.0
    blur2 = aug.blur_prob if small else 0.1
    return [
        _spec(aug, image_size, blur_prob=blur1, solarize_prob=0.0),
        _spec(aug, image_size, blur_prob=blur2, solarize_prob=0.2),
    ]


def multi_crop(aug: AugmentConfig, image_size: int) -> list[ViewSpec]:
    """2 global crops plus `num_local_crops` small crops (SwAV, DINO). The global views come first."""
    local_size = aug.local_crop_size or max(8, (image_size * 3) // 8 // 4 * 4)
    specs = [_spec(aug, image_size, scale=(aug.global_crop_min_scale, aug.crop_max_scale), count=2)]
    if aug.num_local_crops:
        specs.append(
            _spec(
                aug, local_size, scale=(aug.local_crop_min_scale, aug.local_crop_max_scale), count=aug.num_local_crops
            )
        )
    return specs


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

    def plain(self, images: torch.Tensor) -> torch.Tensor:
        """The un-augmented, normalised batch (for the kNN bank)."""
        return self.normalize(images.to(self.dtype).div_(255))


def augment_batch(x: torch.Tensor, spec: ViewSpec, generator: torch.Generator | None = None) -> torch.Tensor:
    """One view of a float batch in [0, 1], with per-sample random parameters."""
    n, _, h, w = x.shape
    dev = x.device

    def rand(*shape: int) -> torch.Tensor:
        return torch.rand(*shape, generator=generator, device=dev)

    boxes = augment.sample_crop_boxes(n, h, w, spec.scale, generator=generator, device=dev)
    flip = rand(n) < spec.flip_prob
    out = augment.resized_crop(x, boxes, spec.size, flip)

    if spec.jitter_prob > 0:
        jitter = rand(n) < spec.jitter_prob
        u = rand(4, n)
        one = torch.ones(n, device=dev)

        def factor(strength: float, v: torch.Tensor) -> torch.Tensor:
            return torch.where(jitter, 1 - strength + 2 * strength * v, one)

        # fixed order brightness, contrast, saturation, hue (as DALI's and solo-learn's GPU pipelines)
        if spec.brightness:
            out = augment.adjust_brightness(out, factor(spec.brightness, u[0]))
        if spec.contrast:
            out = augment.adjust_contrast(out, factor(spec.contrast, u[1]))
        if spec.saturation:
            out = augment.adjust_saturation(out, factor(spec.saturation, u[2]))
        if spec.hue:
            out = augment.adjust_hue(out, torch.where(jitter, spec.hue * (2 * u[3] - 1), 0 * one))
    if spec.grayscale_prob > 0:
        gray = (rand(n) < spec.grayscale_prob).view(-1, 1, 1, 1)
        out = torch.where(gray, augment.grayscale(out).expand_as(out), out)
    if spec.blur_prob > 0:
        blur = rand(n) < spec.blur_prob
        sigma = 0.1 + 1.9 * rand(n)
        blurred = augment.gaussian_blur(out, sigma, augment.blur_kernel_size(spec.size))
        out = torch.where(blur.view(-1, 1, 1, 1), blurred, out)
    if spec.solarize_prob > 0:
        out = augment.solarize(out, rand(n) < spec.solarize_prob)
    return out
