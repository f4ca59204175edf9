"""Optimisers (SGD, LARS, AdamW), parameter groups, and the warm-up + cosine schedules of the lr and the weight
decay, stepped per iteration."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor
from torch.optim import Optimizer

from ssl_tune.methods.base import ParamGroup


class LARS(Optimizer):
    """SGD with momentum and layer-wise adaptive rate scaling (You et al., 2017).

    For parameters with `lars_adapt`, the update is scaled by the trust ratio eta * ||w|| / (||g|| + wd * ||w||).
    With `clip_lr` (LARC's clipping mode, as solo-learn's CIFAR recipes) it is scaled by min(trust / lr, 1)
    instead, so that each parameter's effective learning rate is min(lr, trust). It is off by default, a
    deliberate deviation from solo-learn's recipes, whose lrs the LARS methods borrow: with those lrs it was worse
    for every LARS method at 8 epochs and for SimCLR (-1.5 points of test kNN) and Barlow Twins (-11.3) at 50
    (docs/methods/index.md).
    Groups built by `build_optimizer` exempt biases and norm weights from adaptation and weight decay,
    as BYOL and SimCLR do. The trust ratio stays on the device (no host sync), and each group's update is
    a few multi-tensor `torch._foreach_*` kernels per device and dtype, not a loop over parameters.
    """

    def __init__(
        self,
        params: Iterable,
        lr: float,
        momentum: float = 0.9,
        weight_decay: float = 0.0,
        eta: float = 0.02,
        eps: float = 1e-8,
        clip_lr: bool = False,
    ) -> None:
        defaults = {
            "lr": lr,
            "momentum": momentum,
            "weight_decay": weight_decay,
            "eta": eta,
            "eps": eps,
            "clip_lr": clip_lr,
            "lars_adapt": True,
        }
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            # foreach kernels need one device and dtype per list
            buckets: dict[tuple[torch.device, torch.dtype], list[Tensor]] = {}
            for p in group["params"]:
                if p.grad is not None:
                    buckets.setdefault((p.device, p.dtype), []).append(p)
            for params in buckets.values():
                self._update(group, params)
        return loss

    def _update(self, group: dict[str, Any], params: list[Tensor]) -> None:
        """One group's update for parameters on one device and of one dtype, in a few multi-tensor kernels."""
        wd, eta, eps = group["weight_decay"], group["eta"], group["eps"]
        grads = [p.grad for p in params]
        d_p = torch._foreach_add(grads, params, alpha=wd)  # g + wd * w, a fresh tensor per parameter
        if group["lars_adapt"]:
            w_norm, g_norm = torch.stack(torch._foreach_norm(params + grads)).view(2, -1)
            trust = eta * w_norm / (g_norm + wd * w_norm + eps)
            if group.get("clip_lr", False):  # absent from checkpoints written before the option existed
                trust = (trust / max(group["lr"], 1e-12)).clamp_(max=1.0)
            trust = torch.where((w_norm > 0) & (g_norm > 0), trust, 1.0)
            torch._foreach_mul_(d_p, list(trust.unbind()))  # 0-dim scales: stays on the device
        bufs, old_d = [], []
        for p, d in zip(params, d_p, strict=True):
            buf = self.state[p].get("momentum_buffer")
            if buf is None:  # first step: the buffer starts as d_p
                self.state[p]["momentum_buffer"] = d
            else:
                bufs.append(buf)
                old_d.append(d)
        if bufs:
            torch._foreach_mul_(bufs, group["momentum"])
            torch._foreach_add_(bufs, old_d)
        torch._foreach_add_(params, [self.state[p]["momentum_buffer"] for p in params], alpha=-group["lr"])


NO_DECAY_NAMES = ("pos_embed", "cls_token", "reg_token")  # a ViT's embeddings and tokens (DINO, MoCo v3, timm)


def no_decay_ids(model: torch.nn.Module) -> set[int]:
    """Parameters that AdamW does not decay: biases and norm weights (one dimension or none), and a ViT's
    position embeddings and tokens (by name)."""
    return {id(p) for n, p in model.named_parameters() if p.ndim <= 1 or n.rsplit(".", 1)[-1] in NO_DECAY_NAMES}


def build_optimizer(
    groups: list[ParamGroup],
    *,
    name: str,
    lr: float,
    batch_size: int,
    weight_decay: float,
    momentum: float,
    lars_eta: float,
    lars_clip_lr: bool = False,
    no_decay: set[int] | None = None,
) -> Optimizer:
    """An optimiser over a method's groups. Each torch group keeps `base_lr` (scaled by batch/256), `fixed_lr`
    and `base_weight_decay`; `set_lr` and `set_weight_decay` apply the schedules. AdamW leaves the parameters in
    `no_decay` (`no_decay_ids`) undecayed, in a group of their own."""
    torch_groups = []
    for g in groups:
        base_lr = (g.lr if g.lr is not None else lr) * batch_size / 256
        wd = weight_decay if g.weight_decay is None else g.weight_decay
        common = {"name": g.name, "lr": base_lr, "base_lr": base_lr, "fixed_lr": g.fixed_lr}
        decay = {"weight_decay": wd, "base_weight_decay": wd}
        no_decay_group = {"weight_decay": 0.0, "base_weight_decay": 0.0}
        if name == "adamw":
            skip = no_decay or set()
            decayed = [p for p in g.params if id(p) not in skip]
            undecayed = [p for p in g.params if id(p) in skip]
            if decayed:
                torch_groups.append({**common, "params": decayed, **decay})
            if undecayed:
                torch_groups.append({**common, "params": undecayed, **no_decay_group})
        elif name == "lars":  # biases and norm weights: no adaptation, no weight decay
            matrices = [p for p in g.params if p.ndim > 1]
            vectors = [p for p in g.params if p.ndim <= 1]
            if matrices:
                torch_groups.append({**common, "params": matrices, **decay, "lars_adapt": True})
            if vectors:
                torch_groups.append({**common, "params": vectors, **no_decay_group, "lars_adapt": False})
        elif g.params:
            torch_groups.append({**common, "params": g.params, **decay})
    if name == "adamw":
        return torch.optim.AdamW(torch_groups, lr=lr, weight_decay=weight_decay, **_sgd_impl(torch_groups))
    if name == "lars":
        return LARS(
            torch_groups, lr=lr, momentum=momentum, weight_decay=weight_decay, eta=lars_eta, clip_lr=lars_clip_lr
        )
    return torch.optim.SGD(torch_groups, lr=lr, momentum=momentum, weight_decay=weight_decay, **_sgd_impl(torch_groups))


def _sgd_impl(torch_groups: list[dict[str, Any]]) -> dict[str, bool]:
    """Fused SGD when every parameter is on a CUDA device, foreach when some are, torch's default on CPU.
    Decided from the parameters, so a CPU run on a GPU machine does not ask for fused kernels."""
    kinds = {p.device.type for g in torch_groups for p in g["params"]}
    if kinds == {"cuda"}:
        return {"fused": True}
    return {"foreach": True} if "cuda" in kinds else {}


def lr_factor(step: int, warmup_steps: int, total_steps: int) -> float:
    """Linear warm-up to 1 over `warmup_steps`, then a cosine decay to 0 at `total_steps`."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    span = max(1, total_steps - warmup_steps)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup_steps) / span)))


def set_lr(optimizer: Optimizer, factor: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = group["base_lr"] if group["fixed_lr"] else group["base_lr"] * factor


def weight_decay_at(start: float, end: float, fraction: float) -> float:
    """A cosine from `start` (fraction 0) to `end` (fraction 1), as DINO's weight-decay schedule.

    >>> weight_decay_at(0.04, 0.4, 0.0), weight_decay_at(0.04, 0.4, 0.5), weight_decay_at(0.04, 0.4, 1.0)
    (0.04, 0.22, 0.4)
    """
    return round(end + (start - end) * 0.5 * (1 + math.cos(math.pi * min(1.0, max(0.0, fraction)))), 12)


def set_weight_decay(optimizer: Optimizer, factor: float) -> None:
    """Each group's weight decay: its `base_weight_decay` times `factor` (undecayed groups stay at 0)."""
    for group in optimizer.param_groups:
        group["weight_decay"] = group["base_weight_decay"] * factor
