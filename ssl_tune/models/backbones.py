"""Backbones returning pooled features (no classifier): ResNets from torchvision, ViTs from timm."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from typing import Protocol, runtime_checkable

import torch
from torch import nn
from torchvision.models import resnet18, resnet50
from torchvision.models.resnet import BasicBlock

from ssl_tune.errors import UsageError
from ssl_tune.registry import Registry

SMALL_IMAGE_MAX = 64  # at or below this size a ResNet gets the CIFAR stem


@runtime_checkable
class Backbone(Protocol):
    """What methods and the engine need of a backbone: pooled (N, feature_dim) features from images."""

    feature_dim: int

    def __call__(self, images: torch.Tensor) -> torch.Tensor: ...

    def parameters(self) -> Iterator[nn.Parameter]: ...


def _cifar_stem(model: nn.Module) -> None:
    """3x3 stride-1 first conv and no max-pool, as for 32 px inputs."""
    model.conv1 = nn.Conv2d(3, model.conv1.out_channels, 3, stride=1, padding=1, bias=False)
    model.maxpool = nn.Identity()


def _torchvision_resnet(factory: Callable[..., nn.Module], image_size: int) -> nn.Module:
    model = factory(weights=None, zero_init_residual=True)
    if image_size <= SMALL_IMAGE_MAX:
        _cifar_stem(model)
    model.feature_dim = model.fc.in_features
    model.fc = nn.Identity()
    return model


class TinyResNet(nn.Module):
    """A narrow ResNet (one torchvision BasicBlock per stage) for CPU demos and tests.

    At 32 px the stem keeps full resolution and every stage halves it (16, 8, 4, 2 px): about 2.4x
    cheaper on CPU than a first stage at 32 px, at the same widths.
    """

    def __init__(self, widths: tuple[int, ...] = (16, 32, 64, 128), image_size: int = 32) -> None:
        super().__init__()
        small = image_size <= SMALL_IMAGE_MAX
        self.stem = nn.Sequential(
            nn.Conv2d(3, widths[0], 3 if small else 7, stride=1 if small else 2, padding=1 if small else 3, bias=False),
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(inplace=True),
            nn.Identity() if small else nn.MaxPool2d(3, stride=2, padding=1),
        )
        stages, in_ch = [], widths[0]
        for i, width in enumerate(widths):
            stride = 2 if (small or i > 0) else 1
            down = None
            if stride != 1 or in_ch != width:
                down = nn.Sequential(nn.Conv2d(in_ch, width, 1, stride=stride, bias=False), nn.BatchNorm2d(width))
            stages.append(BasicBlock(in_ch, width, stride=stride, downsample=down))
            in_ch = width
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.feature_dim = in_ch
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.pool(self.stages(self.stem(x))), 1)


@functools.cache
def vit_class() -> type[nn.Module]:
    """The ViT backbone class, built on first use (timm takes 0.6 s to import, which every command would pay)."""
    from timm.models.vision_transformer import VisionTransformer

    class ViT(VisionTransformer):
        """timm's `VisionTransformer` as SSL uses it: the CLS token as the feature, position embeddings
        interpolated to any input size (multi-crop's local crops), drop path, and a patch projection that a
        method may freeze (MoCo v3). Patch 4 at <= 64 px (CIFAR), else 16; 12 blocks. Its state_dict is timm's
        own, so an exported backbone.pt loads into timm's `VisionTransformer` built with the same arguments."""

        def __init__(self, embed_dim: int, heads: int, image_size: int, drop_path: float = 0.0) -> None:
            patch = 4 if image_size <= SMALL_IMAGE_MAX else 16
            if image_size % patch:
                raise UsageError(f"image size {image_size} is not a multiple of the ViT patch size {patch}")
            super().__init__(
                img_size=image_size, patch_size=patch, embed_dim=embed_dim, depth=12, num_heads=heads,
                num_classes=0, global_pool="token", dynamic_img_size=True, dynamic_img_pad=True,
                drop_path_rate=drop_path,
            )  # fmt: skip
            self.feature_dim = embed_dim

        def freeze_patch_embed(self) -> None:
            """MoCo v3's stability fix (Chen et al., 2021, sec. 5): the random patch projection is never trained."""
            for p in self.patch_embed.parameters():
                p.requires_grad_(False)

    return ViT


def _vit(embed_dim: int, heads: int, image_size: int, drop_path: float) -> nn.Module:
    """A ViT backbone (`vit_class`).

    >>> vit = _vit(192, 3, 32, 0.0)
    >>> vit(torch.zeros(2, 3, 32, 32)).shape, vit(torch.zeros(2, 3, 16, 16)).shape
    (torch.Size([2, 192]), torch.Size([2, 192]))
    """
    return vit_class()(embed_dim, heads, image_size, drop_path)


BACKBONES = Registry[Callable[[int, float], nn.Module]]("backbone")  # name -> builder(image_size, drop_path)
BACKBONES.add("resnet_tiny", lambda size, _: TinyResNet(image_size=size))
BACKBONES.add("resnet18", lambda size, _: _torchvision_resnet(resnet18, size))
BACKBONES.add("resnet50", lambda size, _: _torchvision_resnet(resnet50, size))
BACKBONES.add("vit_tiny", lambda size, drop: _vit(192, 3, size, drop))
BACKBONES.add("vit_small", lambda size, drop: _vit(384, 6, size, drop))
BACKBONES.add("vit_base", lambda size, drop: _vit(768, 12, size, drop))


def is_vit(name: str) -> bool:
    """Whether backbone `name` is a ViT (drop path, the methods' ViT recipes)."""
    return name.startswith("vit")


def build_backbone(name: str, image_size: int, drop_path: float = 0.0) -> Backbone:
    """A backbone whose forward returns (N, feature_dim) features. Raises UsageError for an unknown name.
    `drop_path` reaches the ViTs (the run config refuses it for the others)."""
    model = BACKBONES.get(name)(image_size, drop_path)
    if not isinstance(model, Backbone):
        raise TypeError(f"backbone '{name}' does not declare an int feature_dim")
    return model
