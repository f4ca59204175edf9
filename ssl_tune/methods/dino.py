"""DINO (Caron et al., 2021): a student matches an EMA teacher's centred, sharpened output.

Sources (solo = solo-learn's scripts/pretrain/cifar/dino.yaml and solo/methods/dino.py): LARS with lr 0.3 at
batch 256, wd 1e-6 (solo); a 2048-256 head onto 4096 prototypes, weight-normalised last layer frozen for the
first epoch, teacher momentum 0.9995 -> 1, student τ 0.1, teacher τ 0.07 (solo); centre momentum 0.9 and
per-parameter gradient clipping at 3.0 (paper; official main_dino.py). Views: solo's cifar asymmetric.yaml;
local crops only when asked for at <= 64 px. Deviations, unmeasured: the teacher τ warms up from 0.04 over
the first 5 % of training (solo: none); BN in the head's hidden layers (`head_bn`), which keeps short runs
from collapsing. ViT recipe (`vit_defaults`; official main_dino.py and its README's ViT-S/16 run): AdamW,
lr 5e-4 x batch/256, weight decay 0.04 -> 0.4 (cosine), 100 epochs with 10 of warm-up, drop path 0.1,
teacher τ 0.04 -> 0.07 over 30 epochs, momentum 0.996 -> 1, 65536 prototypes, no head BN, and 8 local crops
(blur 0.5; DINO_CROPS). Prototype and teacher-logit layers run in float32 under bf16 (`heads.in_float32`).
"""

from __future__ import annotations

import torch
from pydantic import Field
from torch import nn

from ssl_tune.losses import dino, mean_entropy, update_center_
from ssl_tune.methods.base import Method, MethodParams, Progress, StepOutput, clip_grad_per_parameter_, register_method
from ssl_tune.models.ema import cosine_momentum, frozen_copy
from ssl_tune.models.heads import DINOHead
from ssl_tune.views import DINO_CROPS, AugmentConfig, ViewSpec, multi_crop


class DINOParams(MethodParams):
    proj_hidden_dim: int = Field(2048, gt=0)
    proj_output_dim: int = Field(256, gt=0, description="bottleneck before the prototypes")
    num_prototypes: int = Field(4096, gt=1)
    student_temperature: float = Field(0.1, gt=0, le=10, description="student softmax temperature")
    teacher_temperature: float = Field(0.07, gt=0, le=10, description="after the warm-up")
    warmup_teacher_temperature: float = Field(0.04, gt=0, le=10, description="teacher temperature at the start")
    warmup_teacher_temperature_share: float = Field(0.05, ge=0, le=1, description="share of training")
    warmup_teacher_temperature_epochs: float | None = Field(None, ge=0, le=1e5, description="replaces the share")
    base_tau: float = Field(0.9995, ge=0, le=1, description="teacher EMA momentum at the start")
    final_tau: float = Field(1.0, ge=0, le=1, description="EMA momentum at the end")
    center_momentum: float = Field(0.9, ge=0, le=1, description="EMA of the teacher centre")
    freeze_last_layer_epochs: int = Field(1, ge=0, description="epochs with the last layer frozen")
    clip_grad: float = Field(3.0, ge=0, description="per-parameter gradient-norm clip of the student; 0 = off")
    head_bn: bool = Field(True, description="BatchNorm in the head's hidden layers (DINO's use_bn_in_head)")
    use_centering: bool = Field(True, description="False only to show the collapse centring prevents")


@register_method
class DINO(Method):
    name = "dino"
    Params = DINOParams
    train_defaults = {"optimizer": "lars", "lr": 0.3, "weight_decay": 1e-6, "warmup_epochs": 1,
                      "augment": {"saturation": 0.2}}  # fmt: skip
    vit_defaults = {"optimizer": "adamw", "lr": 5e-4, "weight_decay": 0.04, "weight_decay_end": 0.4,
                    "epochs": 100, "warmup_epochs": 10, "drop_path": 0.1, "augment": {"blur_prob": 0.5},
                    "method_params": {"base_tau": 0.996, "num_prototypes": 65536, "head_bn": False,
                                      "warmup_teacher_temperature_epochs": 30}}  # fmt: skip

    def __init__(self, backbone: nn.Module, params: DINOParams) -> None:
        super().__init__(backbone, params)
        p = params
        self.head = DINOHead(self.feature_dim, p.proj_hidden_dim, p.proj_output_dim, p.num_prototypes, use_bn=p.head_bn)
        self.teacher_backbone = frozen_copy(self.backbone)
        self.teacher_head = frozen_copy(self.head)
        self.register_buffer("center", torch.zeros(1, p.num_prototypes))

    def view_specs(self, augment: AugmentConfig, image_size: int) -> list[ViewSpec]:
        return multi_crop(augment, image_size, asymmetric=True, paper=DINO_CROPS)

    def teacher_temperature(self, progress: Progress) -> float:
        """Linear warm-up from `warmup_teacher_temperature`, then constant (main_dino.py's schedule)."""
        p, t0 = self.params, self.params.warmup_teacher_temperature
        steps = p.warmup_teacher_temperature_share * progress.total_steps
        if p.warmup_teacher_temperature_epochs is not None:
            steps = p.warmup_teacher_temperature_epochs * progress.steps_per_epoch
        return t0 + progress.warmed_up(steps) * (p.teacher_temperature - t0)

    def forward(self, views: list[torch.Tensor], progress: Progress) -> StepOutput:
        p = self.params
        hidden = [self.head.mlp(self.backbone(v)) for v in views]  # hidden[0] is watched for collapse
        student = [self.head.prototype_scores(h) for h in hidden]
        with torch.no_grad():
            teacher = [self.teacher_head(self.teacher_backbone(v)) for v in views[:2]]
        center = self.center if p.use_centering else torch.zeros_like(self.center)
        t_temp = self.teacher_temperature(progress)
        loss = dino(student, teacher, center, p.student_temperature, t_temp)
        with torch.no_grad():
            probs = torch.softmax((teacher[0].float() - center) / t_temp, dim=1)
            if p.use_centering:
                update_center_(self.center, torch.cat(teacher), p.center_momentum)
        return StepOutput(loss=loss, embedding=hidden[0], extras={"teacher_entropy": mean_entropy(probs)})

    def before_optimizer_step(self, progress: Progress) -> None:
        clip_grad_per_parameter_([*self.backbone.parameters(), *self.head.parameters()], self.params.clip_grad)
        if progress.epoch < self.params.freeze_last_layer_epochs:
            for param in self.head.last_layer.parameters():
                param.grad = None

    def ema_pairs(self) -> list[tuple[nn.Module, nn.Module]]:
        return [(self.backbone, self.teacher_backbone), (self.head, self.teacher_head)]

    def ema_momentum(self, progress: Progress) -> float:
        return cosine_momentum(self.params.base_tau, progress.fraction, self.params.final_tau)
