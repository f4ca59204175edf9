"""View recipes: the augmentation settings, and the lists of `ViewSpec`s a method asks for (two views, BYOL's
asymmetric pair, multi-crop). `ssl_tune.views.generator` makes the views.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import Field, model_validator

from ssl_tune.settings import Settings


class AugmentConfig(Settings):
    """Augmentation strengths. The defaults are lightly's CIFAR-10 benchmark transform (SimCLR's at colour
    strength 0.5: jitter 0.4/0.4/0.4/0.1, crops from 0.08, no blur). That is solo-learn's cifar
    `symmetric_weak.yaml` less its blur (0.5 there): at 32 px we follow lightly ("disable blur for cifar10").
    Methods change some of these in their `train_defaults` (e.g. saturation 0.2 for BYOL's recipe).

    Multi-crop keys left at None follow the image size: at or below 64 px no local crops (solo-learn's and
    lightly's CIFAR recipes use two crops), and when asked for, solo-learn's `cifar-multicrop` geometry
    (18 px at 32 px, scale 0.08-0.5; globals from 0.2); above 64 px 2 local crops at 3/8 of the size, scale
    0.05-0.14, globals from 0.14 (the SwAV and DINO papers' geometry at 224 px).
    """

    crop_min_scale: float = Field(0.08, gt=0, le=1, description="random resized crop: smallest share of the image area")
    crop_max_scale: float = Field(1.0, gt=0, le=1, description="random resized crop: largest share of the image area")
    flip_prob: float = Field(0.5, ge=0, le=1, description="probability of a horizontal flip")
    jitter_prob: float = Field(0.8, ge=0, le=1, description="probability of colour jitter")
    brightness: float = Field(0.4, ge=0, le=1, description="colour jitter: brightness strength")
    contrast: float = Field(0.4, ge=0, le=1, description="colour jitter: contrast strength")
    saturation: float = Field(0.4, ge=0, le=1, description="colour jitter: saturation strength")
    hue: float = Field(0.1, ge=0, le=0.5, description="colour jitter: hue strength")
    grayscale_prob: float = Field(0.2, ge=0, le=1, description="probability of turning a view grey")
    blur_prob: float = Field(0.0, ge=0, le=1, description="probability of a Gaussian blur")
    solarize_prob: float = Field(
        0.0, ge=0, le=1, description="probability of solarising (the second view of an asymmetric pair)"
    )
    num_local_crops: int | None = Field(
        None, ge=0, le=16, description="multi-crop: small local crops per image (None: by image size)"
    )
    local_crop_size: int | None = Field(
        None, gt=0, le=1024, description="multi-crop: side of a local crop in pixels (None: by image size)"
    )
    local_crop_min_scale: float | None = Field(
        None, gt=0, le=1, description="multi-crop: smallest area share of a local crop"
    )
    local_crop_max_scale: float | None = Field(
        None, gt=0, le=1, description="multi-crop: largest area share of a local crop"
    )
    global_crop_min_scale: float | None = Field(
        None, gt=0, le=1, description="multi-crop: smallest area share of a global crop"
    )

    @model_validator(mode="after")
    def _scales_ordered(self) -> AugmentConfig:
        if self.crop_min_scale > self.crop_max_scale:
            raise ValueError("crop_min_scale must not exceed crop_max_scale")
        local = (self.local_crop_min_scale, self.local_crop_max_scale)
        if None not in local and local[0] > local[1]:
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


def asymmetric_views(aug: AugmentConfig, image_size: int, scale: tuple[float, float] | None = None) -> list[ViewSpec]:
    """BYOL's pair: view 1 always blurred, never solarized; view 2 rarely blurred, solarized with p 0.2.

    At or below 64 px blur is dropped (solo-learn's cifar `asymmetric.yaml`) unless `blur_prob` asks for it.
    `scale` replaces the crop scale (DINO's global crops).
    """
    small = image_size <= 64
    blur1 = aug.blur_prob if small else 1.0
    blur2 = aug.blur_prob if small else 0.1
    scale = scale or (aug.crop_min_scale, aug.crop_max_scale)
    return [
        _spec(aug, image_size, scale=scale, blur_prob=blur1, solarize_prob=0.0),
        _spec(aug, image_size, scale=scale, blur_prob=blur2, solarize_prob=0.2),
    ]


@dataclass(frozen=True)
class PaperCrops:
    """A method's multi-crop above 64 px, as its paper has it: the local crops' count and scale, the global crops'
    minimum scale. Local crops are 96/224 of the image side (96 px at 224), in whole 16 px patches.
    `augment`'s own settings override each."""

    num_local: int
    global_min_scale: float
    local_scale: tuple[float, float]


SWAV_CROPS = PaperCrops(6, 0.14, (0.05, 0.14))  # SwAV (Caron et al., 2020): 2x224 (0.14-1) + 6x96 (0.05-0.14)
DINO_CROPS = PaperCrops(8, 0.4, (0.05, 0.4))  # DINO (Caron et al., 2021), official main_dino.py defaults


def local_crop_size(image_size: int) -> int:
    """SwAV's and DINO's 96 px local crops at 224 px, scaled to `image_size` in whole ViT patches (16 px).

    >>> local_crop_size(224), local_crop_size(96), local_crop_size(160)
    (96, 48, 64)
    """
    return max(16, round(image_size * 96 / 224 / 16) * 16)


def multi_crop(
    aug: AugmentConfig, image_size: int, asymmetric: bool = False, paper: PaperCrops = SWAV_CROPS
) -> list[ViewSpec]:
    """2 global crops plus the local crops (SwAV, DINO); the global views come first. `asymmetric` makes the
    globals BYOL's pair (DINO: blur on the first, solarize on the second). Above 64 px the defaults are the
    method's `paper` crops; at <= 64 px no local crops unless `num_local_crops` asks for them.

    Without local crops the globals are plain two-view crops (`crop_min_scale`), as solo-learn's CIFAR recipes.
    """
    small = image_size <= 64
    n_local = aug.num_local_crops if aug.num_local_crops is not None else (0 if small else paper.num_local)
    if n_local == 0:
        global_scale = (aug.crop_min_scale, aug.crop_max_scale)
    else:
        global_min = aug.global_crop_min_scale or (0.2 if small else paper.global_min_scale)
        global_scale = (global_min, aug.crop_max_scale)
    if asymmetric:
        specs = asymmetric_views(aug, image_size, scale=global_scale)
    else:
        specs = [_spec(aug, image_size, scale=global_scale, count=2)]
    if n_local:
        default_size = round(image_size * 9 / 16) if small else local_crop_size(image_size)
        local_scale = (
            aug.local_crop_min_scale or (0.08 if small else paper.local_scale[0]),
            aug.local_crop_max_scale or (0.5 if small else paper.local_scale[1]),
        )
        if local_scale[0] > local_scale[1]:
            raise ValueError(f"local crop scale {local_scale}: the minimum exceeds the maximum")
        specs.append(_spec(aug, aug.local_crop_size or default_size, scale=local_scale, count=n_local))
    return specs
