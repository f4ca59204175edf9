"""MoCo v3 (Chen, Xie & He, 2021): a query encoder with a predictor contrasts against a momentum encoder.

Sources (solo = solo-learn's scripts/pretrain/cifar/mocov3.yaml and solo/methods/mocov3.py): LARS with lr
0.3 at batch 256, wd 1e-6, a 4096-256 projector (last BN without affine) and a 4096 predictor, τ 0.2,
momentum 0.99 -> 1 on a cosine. Views: solo's cifar asymmetric.yaml (BYOL's pair, saturation 0.2, no blur
at 32 px). The loss is the symmetrised `moco_v3_contrastive` with in-batch keys (gathered across ranks),
as in the paper's pseudo-code.
ViT recipe (`vit_defaults`; paper sec. 4 and appendix, official facebookresearch/moco-v3 CONFIG.md, ViT-S):
AdamW, lr 1.5e-4 x batch/256, weight decay 0.1, 300 epochs with 40 of warm-up, momentum 0.99 -> 1 (cosine),
τ 0.2, a 3-layer projector (4096-4096-256), a 2-layer predictor, the random patch projection frozen (sec. 5).
Deviation: timm's learned position embedding, not the official fixed 2-D sin-cos one.
"""

from __future__ import annotations

import torch
from pydantic import Field
from torch import nn

from ssl_tune.losses import moco_v3_contrastive
from ssl_tune.methods.base import Method, MethodParams, Progress, StepOutput, register_method
from ssl_tune.models.ema import cosine_momentum, frozen_copy
from ssl_tune.models.heads import mlp
from ssl_tune.views import AugmentConfig, ViewSpec, asymmetric_views


class MoCoV3Params(MethodParams):
    proj_hidden_dim: int = Field(4096, gt=0)
    proj_output_dim: int = Field(256, gt=0)
    proj_layers: int = Field(2, ge=2, le=4, description="Linear layers in the projector (ViT recipe: 3)")
    pred_hidden_dim: int = Field(4096, gt=0)
    temperature: float = Field(0.2, gt=0, le=10, description="softmax temperature of the contrastive loss")
    base_tau: float = Field(0.99, ge=0, le=1, description="momentum-encoder EMA at the start")
    final_tau: float = Field(1.0, ge=0, le=1, description="momentum-encoder EMA at the end (cosine)")
    freeze_patch_embed: bool = Field(True, description="ViT: keep the random patch projection fixed (paper, sec. 5)")


@register_method
class MoCoV3(Method):
    name = "mocov3"
    Params = MoCoV3Params
    train_defaults = {"optimizer": "lars", "lr": 0.3, "weight_decay": 1e-6, "warmup_epochs": 1,
                      "augment": {"saturation": 0.2}}  # fmt: skip
    vit_defaults = {"optimizer": "adamw", "lr": 1.5e-4, "weight_decay": 0.1, "epochs": 300, "warmup_epochs": 40,
                    "method_params": {"proj_layers": 3}}  # fmt: skip

    def __init__(self, backbone: nn.Module, params: MoCoV3Params) -> None:
        super().__init__(backbone, params)
        p = params
        if p.freeze_patch_embed and hasattr(backbone, "freeze_patch_embed"):
            backbone.freeze_patch_embed()
        hidden = [p.proj_hidden_dim] * (p.proj_layers - 1)
        self.projector = mlp([self.feature_dim, *hidden, p.proj_output_dim], last_bn=True, last_bn_affine=False)
        self.predictor = mlp([p.proj_output_dim, p.pred_hidden_dim, p.proj_output_dim])
        self.momentum_backbone = frozen_copy(self.backbone)
        self.momentum_projector = frozen_copy(self.projector)

    def view_specs(self, augment: AugmentConfig, image_size: int) -> list[ViewSpec]:
        return asymmetric_views(augment, image_size)

    def forward(self, views: list[torch.Tensor], progress: Progress) -> StepOutput:
        z = [self.projector(self.backbone(v)) for v in views[:2]]
        q = [self.predictor(zi) for zi in z]
        with torch.no_grad():
            k = [self.momentum_projector(self.momentum_backbone(v)) for v in views[:2]]
        t = self.params.temperature
        loss = sum(moco_v3_contrastive(q[i], k[1 - i], t, distributed=True) for i in (0, 1))
        return StepOutput(loss=loss, embedding=z[0])

    def ema_pairs(self) -> list[tuple[nn.Module, nn.Module]]:
        return [(self.backbone, self.momentum_backbone), (self.projector, self.momentum_projector)]

    def ema_momentum(self, progress: Progress) -> float:
        return cosine_momentum(self.params.base_tau, progress.fraction, self.params.final_tau)
