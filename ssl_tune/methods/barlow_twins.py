"""Barlow Twins (Zbontar et al., 2021): the views' cross-correlation matrix is pushed to the identity.

Sources (solo = solo-learn's scripts/pretrain/cifar/barlow.yaml): LARS with lr 0.3 at batch 256, wd 1e-4, a
2048-2048-2048 projector, a loss scale of 0.1 (solo); λ = 0.0051 (paper; solo's default). Views: solo's
cifar asymmetric.yaml (BYOL's pair, saturation 0.2, solarize on the second view, no blur at 32 px), as the
paper, which uses BYOL's augmentations.
"""

from __future__ import annotations

import torch
from pydantic import Field
from torch import nn

from ssl_tune.losses import barlow_twins
from ssl_tune.methods.base import Method, MethodParams, Progress, StepOutput, register_method
from ssl_tune.models.heads import mlp
from ssl_tune.views import AugmentConfig, ViewSpec, asymmetric_views


class BarlowTwinsParams(MethodParams):
    proj_hidden_dim: int = Field(2048, gt=0)
    proj_output_dim: int = Field(2048, gt=0)
    lambd: float = Field(0.0051, ge=0, le=1, description="weight of the off-diagonal (redundancy) term")
    scale_loss: float = Field(0.1, gt=0, le=100, description="scale of the whole loss")


@register_method
class BarlowTwins(Method):
    name = "barlow_twins"
    Params = BarlowTwinsParams
    train_defaults = {"optimizer": "lars", "lr": 0.3, "weight_decay": 1e-4, "warmup_epochs": 1,
                      "augment": {"saturation": 0.2}}  # fmt: skip

    def __init__(self, backbone: nn.Module, params: BarlowTwinsParams) -> None:
        super().__init__(backbone, params)
        p = params
        self.projector = mlp(
            [self.feature_dim, p.proj_hidden_dim, p.proj_hidden_dim, p.proj_output_dim], last_bias=False
        )

    def view_specs(self, augment: AugmentConfig, image_size: int) -> list[ViewSpec]:
        return asymmetric_views(augment, image_size)

    def forward(self, views: list[torch.Tensor], progress: Progress) -> StepOutput:
        z1, z2 = (self.projector(self.backbone(v)) for v in views[:2])
        loss = self.params.scale_loss * barlow_twins(z1, z2, self.params.lambd, distributed=True)
        return StepOutput(loss=loss, embedding=z1)
