"""DINO (Caron et al., 2021): a student matches an EMA teacher's centred, sharpened output.

Sources (solo = solo-learn's scripts/pretrain/cifar/dino.yaml and solo/methods/dino.py): LARS with lr 0.3 at
batch 256, wd 1e-6 (solo); a 2048-256 head onto 4096 prototypes, weight-normalised last layer frozen for the
first epoch, teacher momentum 0.9995 -> 1, student τ 0.1, teacher τ 0.07 (solo); centre momentum 0.9 and
per-parameter gradient clipping at 3.0 (paper's recipe, official main_dino.py; solo's CIFAR recipe clips
nothing). Views: solo's cifar asymmetric.yaml (two crops, saturation 0.2, solarize on the second global view
only, as the paper's global_transfo2); local crops only when asked for (solo's cifar recipe has none).
Deviations, unmeasured: the teacher τ warms up from 0.04 over the first 5 % of training (the paper warms up
over 30 epochs; solo's CIFAR recipe has no warm-up); BN in the head's hidden layers (`head_bn`; solo's and
the official default is False), which keeps short runs from collapsing.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from pydantic import Field
from torch import nn

from ssl_tune.distributed import rank_and_size
from ssl_tune.losses import dino, mean_entropy
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
        p = self.params
        warmup_steps = p.warmup_teacher_temperature_share * progress.total_steps
        if progress.step >= warmup_steps:
            return p.teacher_temperature
        share = progress.step / warmup_steps
        return p.warmup_teacher_temperature + share * (p.teacher_temperature - p.warmup_teacher_temperature)

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
                self._update_center(torch.cat(teacher))
        return StepOutput(loss=loss, embedding=hidden[0], extras={"teacher_entropy": mean_entropy(probs)})

    @torch.no_grad()
    def _update_center(self, teacher_output: torch.Tensor) -> None:
        """center <- m·center + (1 - m)·(batch mean of the teacher outputs, over all ranks)."""
        batch_sum = teacher_output.float().sum(dim=0, keepdim=True)
        count = teacher_output.shape[0]
        _, world_size = rank_and_size()
        if world_size > 1:
            dist.all_reduce(batch_sum)
            count *= world_size
        m = self.params.center_momentum
        self.center.mul_(m).add_(batch_sum / count, alpha=1 - m)

    def before_optimizer_step(self, progress: Progress) -> None:
        clip_grad_per_parameter_([*self.backbone.parameters(), *self.head.parameters()], self.params.clip_grad)
        if progress.epoch < self.params.freeze_last_layer_epochs:
            for param in self.head.last_layer.parameters():
                param.grad = None

    def ema_pairs(self) -> list[tuple[nn.Module, nn.Module]]:
        return [(self.backbone, self.teacher_backbone), (self.head, self.teacher_head)]

    def ema_momentum(self, progress: Progress) -> float:
        return cosine_momentum(self.params.base_tau, progress.fraction, self.params.final_tau)
