"""What a method declares, and the registry. Nothing here knows about Ray or the training loop."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from pydantic import ValidationInfo, field_validator
from torch import nn

from ssl_tune.models.ema import ema_update
from ssl_tune.registry import Registry
from ssl_tune.settings import Settings
from ssl_tune.views import AugmentConfig, ViewSpec, two_views


@dataclass(frozen=True)
class Progress:
    """Where training stands, for schedules inside a method (EMA momentum, temperature warm-up)."""

    epoch: int
    step: int
    steps_per_epoch: int
    total_steps: int

    @property
    def fraction(self) -> float:
        """Share of training done, in [0, 1]."""
        return self.step / max(1, self.total_steps)

    def warmed_up(self, warmup_steps: float) -> float:
        """Share of a linear warm-up of `warmup_steps` done, in [0, 1] (1 without a warm-up)."""
        return 1.0 if warmup_steps <= 0 else min(self.step / warmup_steps, 1.0)


@dataclass
class StepOutput:
    """A training step's loss and the embeddings watched for collapse (projector outputs)."""

    loss: torch.Tensor
    embedding: torch.Tensor
    extras: dict[str, torch.Tensor] = field(default_factory=dict)


@dataclass
class ParamGroup:
    """Parameters that share optimiser settings. `lr` is a base lr (before batch scaling); None = the run's.

    A `fixed_lr` group keeps its lr constant (no warm-up or cosine decay), as SimSiam's predictor.
    """

    name: str
    params: list[nn.Parameter]
    lr: float | None = None
    fixed_lr: bool = False
    weight_decay: float | None = None


MAX_WIDTH = 65536  # a head's widest layer, or prototypes (DINO's largest head has 65536)
MAX_QUEUE = 1_000_000  # rows of a feature queue (MoCo's 65536, SwAV's 3840 at batch 256)


# what the keys several methods share mean, said once: a method's field without a description gets its line
SHARED_DESCRIPTIONS = {
    "proj_hidden_dim": "projector hidden width",
    "proj_output_dim": "projector output width (the embedding)",
    "pred_hidden_dim": "predictor hidden width",
    "num_prototypes": "prototypes (cluster centres) the embeddings are scored against",
    "temperature": "softmax temperature of the loss",
}


class MethodParams(Settings):
    """Base of each method's own hyperparameters (strict: unknown keys are errors). Every head width (`*_dim`),
    `num_prototypes` and `queue_size` is bounded here, so a typo like 2**31 is a validation error, not an
    out-of-memory crash mid-sweep. Keys in SHARED_DESCRIPTIONS need no description of their own."""

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        for name, info in cls.model_fields.items():
            if info.description is None and name in SHARED_DESCRIPTIONS:
                info.description = SHARED_DESCRIPTIONS[name]

    @field_validator("*")
    @classmethod
    def _bounded_sizes(cls, value: Any, info: ValidationInfo) -> Any:
        name = info.field_name or ""
        limit = MAX_QUEUE if name == "queue_size" else MAX_WIDTH
        sized = name.endswith("_dim") or name in ("num_prototypes", "queue_size")
        if sized and isinstance(value, int) and value > limit:
            raise ValueError(f"{value} is above the largest {name}, {limit}")
        return value


class Method(nn.Module):
    """An SSL method: backbone, heads, views, parameter groups, EMA pairs and loss.

    Subclasses set `name`, `Params` and `train_defaults` (defaults for the run's keys such as `lr`,
    `optimizer`, `augment` or `method_params`), build their heads in `__init__`, and implement `forward`.
    `vit_defaults` is the method's ViT recipe, merged over `train_defaults` when the backbone is a ViT.
    """

    name: ClassVar[str]
    Params: ClassVar[type[MethodParams]] = MethodParams
    train_defaults: ClassVar[dict[str, Any]] = {}
    vit_defaults: ClassVar[dict[str, Any]] = {}
    sync_batchnorm: ClassVar[bool] = True  # convert BN to SyncBN under multi-GPU DDP

    def __init__(self, backbone: nn.Module, params: MethodParams) -> None:
        super().__init__()
        self.backbone = backbone
        self.params = params
        self.feature_dim: int = backbone.feature_dim

    def view_specs(self, augment: AugmentConfig, image_size: int) -> list[ViewSpec]:
        return two_views(augment, image_size)

    def forward(self, views: list[torch.Tensor], progress: Progress) -> StepOutput:
        raise NotImplementedError

    def parameter_groups(self) -> list[ParamGroup]:
        return [ParamGroup("all", [p for p in self.parameters() if p.requires_grad])]

    # EMA targets: pairs of (online, target) updated after each optimiser step
    def ema_pairs(self) -> list[tuple[nn.Module, nn.Module]]:
        return []

    def ema_momentum(self, progress: Progress) -> float:
        return 1.0

    def before_optimizer_step(self, progress: Progress) -> None:
        """Hook after backward, before the step (e.g. cancel gradients of frozen prototypes)."""

    @torch.no_grad()
    def after_optimizer_step(self, progress: Progress) -> None:
        """Hook after the step: updates the EMA pairs by default."""
        pairs = self.ema_pairs()
        if pairs:
            tau = self.ema_momentum(progress)
            for online, target in pairs:
                ema_update(target, online, tau)


@torch.no_grad()
def clip_grad_per_parameter_(params: list[nn.Parameter], max_norm: float) -> None:
    """Scales each parameter's gradient down to an L2 norm of at most `max_norm`, one parameter at a time (DINO's
    `clip_gradients`, not torch's global-norm clipping). Stays on the device: no host sync."""
    grads = [p.grad for p in params if p.grad is not None]
    if not grads or max_norm <= 0:
        return
    for group in _by_device_and_dtype(grads):
        scale = (max_norm / (torch.stack(torch._foreach_norm(group)) + 1e-6)).clamp_(max=1.0)
        torch._foreach_mul_(group, list(scale.unbind()))


def _by_device_and_dtype(tensors: list[torch.Tensor]) -> list[list[torch.Tensor]]:
    buckets: dict[tuple[torch.device, torch.dtype], list[torch.Tensor]] = {}
    for t in tensors:
        buckets.setdefault((t.device, t.dtype), []).append(t)
    return list(buckets.values())


METHODS = Registry[type[Method]]("method")


def register_method(cls: type[Method]) -> type[Method]:
    """Class decorator: registers a `Method` subclass under its `name`."""
    METHODS.add(cls.name, cls)
    return cls


def get_method(name: str) -> type[Method]:
    return METHODS.get(name)
