"""Exponential moving averages of parameters (BYOL, MoCo v3 and DINO targets) and their schedule."""

from __future__ import annotations

import copy
import math

import torch
from torch import nn


def cosine_momentum(base: float, fraction: float, final: float = 1.0) -> float:
    """tau rising from `base` to `final` on a half cosine over training (`fraction` in [0, 1])."""
    fraction = min(max(fraction, 0.0), 1.0)
    return final - (final - base) * (math.cos(math.pi * fraction) + 1) / 2


@torch.no_grad()
def ema_update(target: nn.Module, online: nn.Module, momentum: float) -> None:
    """theta_t <- tau * theta_t + (1 - tau) * theta_s for every parameter pair."""
    t_params = [p for p in target.parameters()]
    o_params = [p.detach() for p in online.parameters()]
    if len(t_params) != len(o_params):
        raise ValueError("EMA target and online module have different parameters")
    torch._foreach_mul_(t_params, momentum)
    torch._foreach_add_(t_params, o_params, alpha=1.0 - momentum)


def frozen_copy(module: nn.Module) -> nn.Module:
    """A deep copy that takes no gradient, as an EMA target starts."""
    target = copy.deepcopy(module)
    for p in target.parameters():
        p.requires_grad_(False)
    return target
