"""SwAV (Caron et al., 2020): swapped prediction of Sinkhorn codes over learnable prototypes.

Sources (solo = solo-learn's scripts/pretrain/cifar/swav.yaml and solo/methods/swav.py): LARS with lr 0.6 at
batch 256, wd 1e-6, a 2048-128 projector, 3000 prototypes, τ 0.1, ε 0.05 with 3 Sinkhorn iterations,
prototypes frozen for 2 epochs, a 3840-sample queue from epoch 50, split across ranks (solo; the official
code likewise divides the queue by the world size). Views: two crops from 0.08 with colour strength
0.8/0.8/0.8/0.2 (solo's cifar symmetric.yaml; the paper's s = 1). Deviation: no blur at 32 px (solo's
recipe has 0.5; lightly's CIFAR-10 benchmark disables it for SwAV). Multi-crop is an option
(`augment.num_local_crops`: solo's cifar-multicrop geometry at 32 px; the paper uses 6 crops at 224 px).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from ssl_tune.distributed import rank_and_size
from ssl_tune.losses import mean_entropy, sinkhorn, swav
from ssl_tune.methods.base import Method, MethodParams, Progress, StepOutput, register_method
from ssl_tune.models.heads import Prototypes, mlp
from ssl_tune.views import AugmentConfig, ViewSpec, multi_crop


class SwAVParams(MethodParams):
    proj_hidden_dim: int = Field(2048, gt=0)
    proj_output_dim: int = Field(128, gt=0)
    num_prototypes: int = Field(3000, gt=1)
    temperature: float = Field(0.1, gt=0, le=10)
    sk_epsilon: float = Field(0.05, gt=0, le=10, description="Sinkhorn entropic regularisation ε")
    sk_iters: int = Field(3, ge=1, le=100, description="Sinkhorn iterations")
    freeze_prototypes_epochs: int = Field(2, ge=0, description="epochs with the prototypes frozen")
    queue_size: int = Field(3840, ge=0, description="0 = no queue")
    epoch_queue_starts: int = Field(50, ge=0, description="the queue is used from this epoch")
    use_sinkhorn: bool = Field(True, description="False only to show the collapse equal partition prevents")


@register_method
class SwAV(Method):
    name = "swav"
    Params = SwAVParams
    train_defaults = {"optimizer": "lars", "lr": 0.6, "weight_decay": 1e-6, "warmup_epochs": 1,
                      "augment": {"brightness": 0.8, "contrast": 0.8, "saturation": 0.8, "hue": 0.2}}  # fmt: skip

    def __init__(self, backbone: nn.Module, params: SwAVParams) -> None:
        super().__init__(backbone, params)
        p = params
        self.projector = mlp([self.feature_dim, p.proj_hidden_dim, p.proj_output_dim])
        self.prototypes = Prototypes(p.proj_output_dim, p.num_prototypes)
        self.prototypes.normalize_()
        # per global crop: this rank's most recent embeddings, newest first, queue_size / world size rows (the
        # ranks' queues together hold queue_size); `queue_filled` counts valid rows (a host int: no step reads
        # the device). Not buffers, so DDP does not overwrite every rank's queue with rank 0's; extra state.
        self.queue_rows = p.queue_size // rank_and_size()[1]
        self.queue = torch.zeros(2, self.queue_rows, p.proj_output_dim)
        self.queue_filled = 0

    def _apply(self, fn, recurse=True):  # .to(device) and friends move the queue too
        self.queue = fn(self.queue)
        return super()._apply(fn, recurse)

    def get_extra_state(self) -> dict[str, torch.Tensor | int]:
        return {"queue": self.queue, "queue_filled": self.queue_filled}

    def set_extra_state(self, state: dict[str, torch.Tensor | int]) -> None:
        if state["queue"].shape == self.queue.shape:  # else another world size: the queue refills
            self.queue = state["queue"].to(self.queue.device)
            self.queue_filled = int(state["queue_filled"])

    def view_specs(self, augment: AugmentConfig, image_size: int) -> list[ViewSpec]:
        return multi_crop(augment, image_size)

    def forward(self, views: list[torch.Tensor], progress: Progress) -> StepOutput:
        z = [F.normalize(self.projector(self.backbone(v)), dim=1) for v in views]
        scores = [self.prototypes(zi) for zi in z]
        use_queue = self.queue_rows > 0 and progress.epoch >= self.params.epoch_queue_starts
        codes = [self._codes(scores[i], use_queue, i) for i in range(2)]
        if use_queue:
            self._enqueue([zi.detach() for zi in z[:2]])
        loss = swav(scores, codes, self.params.temperature)
        return StepOutput(loss=loss, embedding=z[0], extras={"assignment_entropy": mean_entropy(codes[0])})

    @torch.no_grad()
    def _codes(self, scores: torch.Tensor, use_queue: bool, crop: int) -> torch.Tensor:
        p, batch = self.params, scores.shape[0]
        if not p.use_sinkhorn:  # ablation: plain softmax, no equal-partition constraint
            return F.softmax(scores.detach().float() / p.sk_epsilon, dim=1)
        if use_queue and self.queue_filled >= self.queue_rows:  # only a full queue (as the paper's code)
            scores = torch.cat([self.prototypes(self.queue[crop]), scores])
        return sinkhorn(scores, p.sk_epsilon, p.sk_iters, distributed=True)[-batch:]

    @torch.no_grad()
    def _enqueue(self, embeddings: list[torch.Tensor]) -> None:
        rows = self.queue_rows
        for crop, z in enumerate(embeddings):
            self.queue[crop] = torch.cat([z[:rows], self.queue[crop]])[:rows]
        self.queue_filled = min(self.queue_filled + embeddings[0].shape[0], rows)

    def before_optimizer_step(self, progress: Progress) -> None:
        if progress.epoch < self.params.freeze_prototypes_epochs:
            for param in self.prototypes.parameters():
                param.grad = None

    @torch.no_grad()
    def after_optimizer_step(self, progress: Progress) -> None:
        self.prototypes.normalize_()
        super().after_optimizer_step(progress)
