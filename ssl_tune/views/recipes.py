"""View recipes: the augmentation settings, and the lists of `ViewSpec`s a method asks for (two views, BYOL's
asymmetric pair, multi-crop). `ssl_tune.views.generator` makes the views.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import Field, model_validator

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
