"""VICReg (Bardes, Ponce & LeCun, 2022): invariance, variance and covariance terms, no negatives or EMA.

Sources (solo = solo-learn's scripts/pretrain/cifar/vicreg.yaml): LARS with lr 0.3 at batch 256, wd 1e-4, a
2048-2048-2048 projector, weights 25 / 25 / 1. Views: solo's own VICReg recipe in that file, the same for
both views: crops from 0.2, jitter 0.4/0.4/0.2/0.1, solarize 0.1, no blur (the paper's ImageNet recipe
is BYOL's asymmetric pair).
"""

from __future__ import annotations

import torch
from pydantic import Field
from torch import nn

from ssl_tune.losses import vicreg
from ssl_tune.methods.base import Method, MethodParams, Progress, StepOutput, register_method
from ssl_tune.models.heads import mlp


class VICRegParams(MethodParams):
    proj_hidden_dim: int = Field(2048, gt=0)
    proj_output_dim: int = Field(2048, gt=0)
    sim_weight: float = Field(25.0, ge=0, le=1000, description="weight of the invariance term")
    var_weight: float = Field(25.0, ge=0, le=1000, description="weight of the variance term")
    cov_weight: float = Field(1.0, ge=0, le=1000, description="weight of the covariance term")


@register_method
class VICReg(Method):
    name = "vicreg"
    Params = VICRegParams
    train_defaults = {"optimizer": "lars", "lr": 0.3, "weight_decay": 1e-4, "warmup_epochs": 1,
                      "augment": {"crop_min_scale": 0.2, "saturation": 0.2, "solarize_prob": 0.1}}  # fmt: skip

    def __init__(self, backbone: nn.Module, params: VICRegParams) -> None:
        super().__init__(backbone, params)
        p = params
        self.projector = mlp([self.feature_dim, p.proj_hidden_dim, p.proj_hidden_dim, p.proj_output_dim])

    def forward(self, views: list[torch.Tensor], progress: Progress) -> StepOutput:
        z1, z2 = (self.projector(self.backbone(v)) for v in views[:2])
        p = self.params
        loss = vicreg(z1, z2, p.sim_weight, p.var_weight, p.cov_weight, distributed=True)
        return StepOutput(loss=loss, embedding=z1)
