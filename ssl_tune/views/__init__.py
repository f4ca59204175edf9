"""Views: augmentation ops as batched tensor code (`ops`), the recipes methods ask for (`recipes`), and the
generator that makes every view of a batch on the device (`generator`)."""

from ssl_tune.views.generator import ViewGenerator, augment_batch
from ssl_tune.views.recipes import (
    DINO_CROPS,
    SWAV_CROPS,
    AugmentConfig,
    PaperCrops,
    ViewSpec,
    asymmetric_views,
    multi_crop,
    two_views,
)

__all__ = [
    "DINO_CROPS",
    "SWAV_CROPS",
    "AugmentConfig",
    "PaperCrops",
    "ViewGenerator",
    "ViewSpec",
    "asymmetric_views",
    "augment_batch",
    "multi_crop",
    "two_views",
]
