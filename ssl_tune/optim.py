"""Optimisers (SGD, LARS), parameter groups and the warm-up + cosine schedule, stepped per iteration."""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch.optim import Optimizer

from ssl_tune.methods.base import ParamGroup


class LARS(Optimizer):
    """SGD with momentum and layer-wise adaptive rate scaling (You et al., 2017).

    For parameters with `lars_adapt`, the update is scaled by eta * ||w|| / (||g|| + wd * ||w||).
    Groups built by `build_optimizer` exempt biases and norm weights from adaptation and weight decay,
    as BYOL and SimCLR do. The trust ratio stays on the device (no host sync).
    """

    def __init__(
        self,
        params: Iterable,
        lr: float,
        momentum: float = 0.9,
        weight_decay: float = 0.0,
        eta: float = 0.02,
        eps: float = 1e-8,
    ) -> None:
        defaults = {
            "lr": lr,
            "momentum": momentum,
            "weight_decay": weight_decay,
            "eta": eta,
            "eps": eps,
            "lars_adapt": True,
        }
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            wd, eta, eps = group["weight_decay"], group["eta"], group["eps"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                d_p = p.grad
                if group["lars_adapt"]:
                    w_norm, g_norm = torch.linalg.vector_norm(p), torch.linalg.vector_norm(d_p)
                    trust = eta * w_norm / (g_norm + wd * w_norm + eps)
                    trust = torch.where((w_norm > 0) & (g_norm > 0), trust, torch.ones_like(trust))
                    d_p = d_p.add(p, alpha=wd).mul_(trust)
                elif wd:
                    d_p = d_p.add(p, alpha=wd)
                state = self.state[p]
                buf = state.get("momentum_buffer")
                if buf is None:
                    buf = state["momentum_buffer"] = torch.clone(d_p).detach()
                else:
                    buf.mul_(group["momentum"]).add_(d_p)
                p.add_(buf, alpha=-group["lr"])


def build_optimizer(
    groups: list[ParamGroup],
    *,
    name: str,
    lr: float,
    batch_size: int,
    weight_decay: float,
    momentum: float,
    lars_eta: float,
) -> Optimizer:
    """An optimiser over a method's groups. Each torch group keeps `base_lr` (scaled by batch/256) and
    `fixed_lr`; `set_lr` applies the schedule to the groups that are not fixed."""
    torch_groups = []
    for g in groups:
        base_lr = (g.lr if g.lr is not None else lr) * batch_size / 256
        wd = weight_decay if g.weight_decay is None else g.weight_decay
        common = {"name": g.name, "lr": base_lr, "base_lr": base_lr, "fixed_lr": g.fixed_lr}
        if name == "lars":  # biases and norm weights: no adaptation, no weight decay
            matrices = [p for p in g.params if p.ndim > 1]
            vectors = [p for p in g.params if p.ndim <= 1]
            if matrices:
                torch_groups.append({**common, "params": matrices, "weight_decay": wd, "lars_adapt": True})
            if vectors:
                torch_groups.append({**common, "params": vectors, "weight_decay": 0.0, "lars_adapt": False})
        elif g.params:
            torch_groups.append({**common, "params": g.params, "weight_decay": wd})
    if name == "lars":
        return LARS(torch_groups, lr=lr, momentum=momentum, weight_decay=weight_decay, eta=lars_eta)
    foreach = {"foreach": True} if torch.cuda.is_available() else {}
    return torch.optim.SGD(torch_groups, lr=lr, momentum=momentum, weight_decay=weight_decay, **foreach)


def lr_factor(step: int, warmup_steps: int, total_steps: int) -> float:
    """Linear warm-up to 1 over `warmup_steps`, then a cosine decay to 0 at `total_steps`."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    span = max(1, total_steps - warmup_steps)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup_steps) / span)))


def set_lr(optimizer: Optimizer, factor: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = group["base_lr"] if group["fixed_lr"] else group["base_lr"] * factor
