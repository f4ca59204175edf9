"""Projection, prediction and prototype heads, shared by the methods."""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise

import torch
import torch.nn.functional as F
from torch import nn


def in_float32(layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """`layer(x)` in float32, also under bf16 autocast: SwAV's scores feed Sinkhorn at ε = 0.05 and DINO's
    teacher logits a softmax at τ = 0.04, where bf16's 8-bit mantissa visibly moves the result."""
    with torch.autocast(x.device.type, enabled=False):
        return layer(x.float())


def mlp(
    dims: Sequence[int],
    *,
    hidden_bn: bool = True,
    last_bn: bool = False,
    last_bn_affine: bool = True,
    last_bias: bool = True,
) -> nn.Sequential:
    """Linear-BN-ReLU blocks through `dims` ([in, hidden..., out]), then a last Linear (+ optional BN).

    Linears followed by BN carry no bias.
    """
    layers: list[nn.Module] = []
    for d_in, d_out in pairwise(dims[:-1]):
        layers.append(nn.Linear(d_in, d_out, bias=not hidden_bn))
        if hidden_bn:
            layers.append(nn.BatchNorm1d(d_out))
        layers.append(nn.ReLU(inplace=True))
    layers.append(nn.Linear(dims[-2], dims[-1], bias=last_bias and not last_bn))
    if last_bn:
        layers.append(nn.BatchNorm1d(dims[-1], affine=last_bn_affine))
    return nn.Sequential(*layers)


class Prototypes(nn.Module):
    """A bias-free linear layer onto K prototypes whose rows can be L2-normalised in place (SwAV)."""

    def __init__(self, dim: int, num_prototypes: int) -> None:
        super().__init__()
        self.layer = nn.Linear(dim, num_prototypes, bias=False)

    @torch.no_grad()
    def normalize_(self) -> None:
        self.layer.weight.copy_(F.normalize(self.layer.weight, dim=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return in_float32(self.layer, x)


class DINOHead(nn.Module):
    """MLP -> L2-normalise -> weight-normalised linear onto K outputs (last layer's norm fixed to 1).

    `use_bn` puts BatchNorm after the hidden layers (DINO's `use_bn_in_head`, for ResNets).
    """

    def __init__(
        self,
        in_dim: int,
        hidden_dim: int,
        bottleneck_dim: int,
        out_dim: int,
        num_layers: int = 3,
        use_bn: bool = False,
    ) -> None:
        super().__init__()
        dims = [in_dim] + [hidden_dim] * (num_layers - 1) + [bottleneck_dim]
        layers: list[nn.Module] = []
        for i, (d_in, d_out) in enumerate(pairwise(dims)):
            layers.append(nn.Linear(d_in, d_out))
            if i < len(dims) - 2:
                if use_bn:
                    layers.append(nn.BatchNorm1d(d_out))
                layers.append(nn.GELU())
        self.mlp = nn.Sequential(*layers)
        self.last_layer = nn.utils.parametrizations.weight_norm(nn.Linear(bottleneck_dim, out_dim, bias=False))
        self.last_layer.parametrizations.weight.original0.data.fill_(1.0)
        self.last_layer.parametrizations.weight.original0.requires_grad = False
        for m in self.mlp:
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.prototype_scores(self.mlp(x))

    def prototype_scores(self, hidden: torch.Tensor) -> torch.Tensor:
        """The last layer on the L2-normalised MLP output (`hidden = self.mlp(x)`), in float32."""
        return in_float32(self.last_layer, F.normalize(hidden.float(), dim=-1))
