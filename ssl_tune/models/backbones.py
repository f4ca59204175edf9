"""Backbones built on torchvision.models, returning pooled features (no classifier)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Protocol, runtime_checkable

import torch
from torch import nn
from torchvision.models import resnet18, resnet50
from torchvision.models.resnet import BasicBlock
from torchvision.models.vision_transformer import VisionTransformer

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


def _vit(image_size: int, hidden_dim: int, heads: int) -> nn.Module:
    patch = 4 if image_size <= SMALL_IMAGE_MAX else 16
    if image_size % patch:
        raise UsageError(f"image size {image_size} is not a multiple of the ViT patch size {patch}")
    model = VisionTransformer(
        image_size=image_size,
        patch_size=patch,
        num_layers=12,
        num_heads=heads,
        hidden_dim=hidden_dim,
        mlp_dim=4 * hidden_dim,
    )
    model.heads = nn.Identity()  # forward returns the class token
    model.feature_dim = hidden_dim
    return model


BACKBONES = Registry[Callable[[int], nn.Module]]("backbone")  # name -> builder(image_size)
BACKBONES.add("resnet_tiny", lambda size: TinyResNet(image_size=size))
BACKBONES.add("resnet18", lambda size: _torchvision_resnet(resnet18, size))
BACKBONES.add("resnet50", lambda size: _torchvision_resnet(resnet50, size))
BACKBONES.add("vit_tiny", lambda size: _vit(size, hidden_dim=192, heads=3))
BACKBONES.add("vit_small", lambda size: _vit(size, hidden_dim=384, heads=6))


def build_backbone(name: str, image_size: int) -> Backbone:
    """A backbone whose forward returns (N, feature_dim) features. Raises UsageError for an unknown name."""
    model = BACKBONES.get(name)(image_size)
    if not isinstance(model, Backbone):
        raise TypeError(f"backbone '{name}' does not declare an int feature_dim")
    return model
