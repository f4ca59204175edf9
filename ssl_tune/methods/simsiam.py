"""SimSiam (Chen & He, 2021): a predictor plus stop-gradient, no negatives and no EMA.

Sources (solo = solo-learn's scripts/pretrain/cifar/simsiam.yaml and solo/methods/simsiam.py): SGD with lr
0.5 at batch 256 (scaled by batch/256), wd 1e-5, a 3-layer 2048-d projector whose output BN has no affine
(solo; the official code; lightly), a 512-d predictor bottleneck, and the predictor's lr kept fixed
(paper, section 4.3). Views: solo's cifar symmetric_weak.yaml (jitter 0.4/0.4/0.4/0.1) less its blur
(0.5 there): lightly's CIFAR-10 benchmark disables blur at 32 px. No lr warm-up (the paper's SGD recipe).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import Field

from ssl_tune.losses import negative_cosine
from ssl_tune.methods.base import Method, MethodParams, ParamGroup, Progress, StepOutput, register_method
from ssl_tune.models.heads import mlp


class SimSiamParams(MethodParams):
    proj_hidden_dim: int = Field(2048, gt=0)
    proj_output_dim: int = Field(2048, gt=0)
    pred_hidden_dim: int = Field(512, gt=0)
    predictor_lr: float | None = Field(None, gt=0, le=1e3, description="base lr of the predictor; None = the run's lr")
    stop_gradient: bool = Field(True, description="False only to show the collapse it prevents")


@register_method
class SimSiam(Method):
    name = "simsiam"
    Params = SimSiamParams
    train_defaults = {"optimizer": "sgd", "lr": 0.5, "weight_decay": 1e-5, "warmup_epochs": 0}

    def __init__(self, backbone: torch.nn.Module, params: SimSiamParams) -> None:
        super().__init__(backbone, params)
        p = params
        self.projector = mlp(
            [self.feature_dim, p.proj_hidden_dim, p.proj_hidden_dim, p.proj_output_dim],
            last_bn=True,
            last_bn_affine=False,
        )
        self.predictor = mlp([p.proj_output_dim, p.pred_hidden_dim, p.proj_output_dim])

    def forward(self, views: list[torch.Tensor], progress: Progress) -> StepOutput:
        # each view on its own pass, so BN statistics are per view as in the paper
        z1, z2 = (self.projector(self.backbone(v)) for v in views[:2])
        p1, p2 = self.predictor(z1), self.predictor(z2)
        if self.params.stop_gradient:
            loss = (negative_cosine(p1, z2) + negative_cosine(p2, z1)) / 2
        else:  # ablation: gradients flow into both branches
            loss = -(F.cosine_similarity(p1, z2).mean() + F.cosine_similarity(p2, z1).mean()) / 2
        return StepOutput(loss=loss, embedding=z1)

    def parameter_groups(self) -> list[ParamGroup]:
        predictor = list(self.predictor.parameters())
        others = [p for n, p in self.named_parameters() if not n.startswith("predictor.") and p.requires_grad]
        return [
            ParamGroup("backbone+projector", others),
            ParamGroup("predictor", predictor, lr=self.params.predictor_lr, fixed_lr=True),
        ]
