"""BYOL (Grill et al., 2020): an online network with a predictor regresses an EMA target's projection.

Sources (solo = solo-learn's scripts/pretrain/cifar/byol.yaml): LARS with lr 1.0 at batch 256, wd 1e-5, a
4096-256 projector and a 4096 predictor, τ 0.99 -> 1 on a cosine (solo; paper, eq. 2). The loss is the
symmetrised 2 - 2·cos (paper, eq. 2-3). Views: BYOL's asymmetric pair with saturation 0.2 (paper, table 6;
solo's cifar asymmetric.yaml; lightly's BYOLTransform), without blur at 32 px as solo's CIFAR recipe.
"""

from __future__ import annotations

import torch
from pydantic import Field
from torch import nn

from ssl_tune.losses import byol
from ssl_tune.methods.base import Method, MethodParams, ParamGroup, Progress, StepOutput, register_method
from ssl_tune.models.ema import cosine_momentum, frozen_copy
from ssl_tune.models.heads import mlp
from ssl_tune.views import AugmentConfig, ViewSpec, asymmetric_views


class BYOLParams(MethodParams):
    proj_hidden_dim: int = Field(4096, gt=0)
    proj_output_dim: int = Field(256, gt=0)
    pred_hidden_dim: int = Field(4096, gt=0)
    base_tau: float = Field(0.99, ge=0, le=1, description="EMA momentum at the start")
    final_tau: float = Field(1.0, ge=0, le=1, description="EMA momentum at the end (cosine schedule)")
    predictor_lr: float | None = Field(None, gt=0, le=1e3, description="base lr of the predictor; None = the run's lr")
    use_predictor: bool = Field(True, description="False (with τ = 0) only to show the collapse it prevents")


@register_method
class BYOL(Method):
    name = "byol"
    Params = BYOLParams
    train_defaults = {"optimizer": "lars", "lr": 1.0, "weight_decay": 1e-5, "warmup_epochs": 1,
                      "augment": {"saturation": 0.2}}  # fmt: skip

    def __init__(self, backbone: nn.Module, params: BYOLParams) -> None:
        super().__init__(backbone, params)
        p = params
        self.projector = mlp([self.feature_dim, p.proj_hidden_dim, p.proj_output_dim])
        self.predictor = (
            mlp([p.proj_output_dim, p.pred_hidden_dim, p.proj_output_dim]) if p.use_predictor else nn.Identity()
        )
        self.target_backbone = frozen_copy(self.backbone)
        self.target_projector = frozen_copy(self.projector)

    def view_specs(self, augment: AugmentConfig, image_size: int) -> list[ViewSpec]:
        return asymmetric_views(augment, image_size)

    def forward(self, views: list[torch.Tensor], progress: Progress) -> StepOutput:
        z = [self.projector(self.backbone(v)) for v in views[:2]]
        p = [self.predictor(zi) for zi in z]
        with torch.no_grad():
            t = [self.target_projector(self.target_backbone(v)) for v in views[:2]]
        loss = byol(p[0], t[1]) + byol(p[1], t[0])
        return StepOutput(loss=loss, embedding=z[0])

    def parameter_groups(self) -> list[ParamGroup]:
        predictor = [p for p in self.predictor.parameters()]
        others = [p for n, p in self.named_parameters() if not n.startswith("predictor.") and p.requires_grad]
        groups = [ParamGroup("backbone+projector", others)]
        if predictor:
            groups.append(ParamGroup("predictor", predictor, lr=self.params.predictor_lr))
        return groups

    def ema_pairs(self) -> list[tuple[nn.Module, nn.Module]]:
        return [(self.backbone, self.target_backbone), (self.projector, self.target_projector)]

    def ema_momentum(self, progress: Progress) -> float:
        return cosine_momentum(self.params.base_tau, progress.fraction, self.params.final_tau)
