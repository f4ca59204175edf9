"""SimCLR (Chen et al., 2020): NT-Xent between two views, every other view of the batch a negative.

Defaults follow solo-learn's scripts/pretrain/cifar/simclr.yaml: LARS (the paper's large-batch
optimiser), lr 0.4 at batch 256, weight decay 1e-5, a 2048-256 projector (Linear-ReLU-Linear, the
paper's g(·)), and τ = 0.2. Negatives are gathered across ranks.
"""

from __future__ import annotations

import torch
from pydantic import Field
from torch import nn

from ssl_tune.losses import nt_xent
from ssl_tune.methods.base import Method, MethodParams, Progress, StepOutput, register_method
from ssl_tune.models.heads import mlp


class SimCLRParams(MethodParams):
    proj_hidden_dim: int = Field(2048, gt=0)
    proj_output_dim: int = Field(256, gt=0)
    temperature: float = Field(0.2, gt=0, le=10)


@register_method
class SimCLR(Method):
    name = "simclr"
    Params = SimCLRParams
    train_defaults = {"optimizer": "lars", "lr": 0.4, "weight_decay": 1e-5, "warmup_epochs": 1}

    def __init__(self, backbone: nn.Module, params: SimCLRParams) -> None:
        super().__init__(backbone, params)
        self.projector = mlp([self.feature_dim, params.proj_hidden_dim, params.proj_output_dim], hidden_bn=False)

    def forward(self, views: list[torch.Tensor], progress: Progress) -> StepOutput:
        z1, z2 = (self.projector(self.backbone(v)) for v in views[:2])
        loss = nt_xent(z1, z2, self.params.temperature, distributed=True)
        return StepOutput(loss=loss, embedding=z1)
