"""Barlow Twins (Zbontar et al., 2021): the views' cross-correlation matrix is pushed to the identity.

Defaults follow solo-learn's scripts/pretrain/cifar/barlow.yaml: LARS, lr 0.3 at batch 256, weight
decay 1e-4, a large 2048-2048-2048 projector, λ = 0.0051 and a loss scale of 0.1.
"""

from __future__ import annotations

import torch
from pydantic import Field
from torch import nn

from ssl_tune.losses import barlow_twins
from ssl_tune.methods.base import Method, MethodParams, Progress, StepOutput, register_method
from ssl_tune.models.heads import mlp


class BarlowTwinsParams(MethodParams):
    proj_hidden_dim: int = Field(2048, gt=0)
    proj_output_dim: int = Field(2048, gt=0)
    lambd: float = Field(0.0051, ge=0, le=1, description="weight of the off-diagonal (redundancy) term")
    scale_loss: float = Field(0.1, gt=0, le=100)


@register_method
class BarlowTwins(Method):
    name = "barlow_twins"
    Params = BarlowTwinsParams
    train_defaults = {"optimizer": "lars", "lr": 0.3, "weight_decay": 1e-4, "warmup_epochs": 1}

    def __init__(self, backbone: nn.Module, params: BarlowTwinsParams) -> None:
        super().__init__(backbone, params)
        p = params
        self.projector = mlp(
            [self.feature_dim, p.proj_hidden_dim, p.proj_hidden_dim, p.proj_output_dim], last_bias=False
        )

    def forward(self, views: list[torch.Tensor], progress: Progress) -> StepOutput:
        z1, z2 = (self.projector(self.backbone(v)) for v in views[:2])
        loss = self.params.scale_loss * barlow_twins(z1, z2, self.params.lambd, distributed=True)
        return StepOutput(loss=loss, embedding=z1)
