"""The shared heads: MLP layout, SwAV's prototype normalisation, DINO's weight-normalised last layer."""

from __future__ import annotations

import torch
from torch import nn

from ssl_tune.models.heads import DINOHead, Prototypes, mlp


def test_mlp_layout_bias_only_where_no_bn_follows():
    head = mlp([8, 16, 4], last_bn=True, last_bn_affine=False)
    kinds = [type(m) for m in head]
    assert kinds == [nn.Linear, nn.BatchNorm1d, nn.ReLU, nn.Linear, nn.BatchNorm1d]
    assert head[0].bias is None and head[3].bias is None  # BN follows both
    assert not head[4].affine
    plain = mlp([8, 16, 4], hidden_bn=False)
    assert [type(m) for m in plain] == [nn.Linear, nn.ReLU, nn.Linear]
    assert plain[0].bias is not None and plain[2].bias is not None
    assert plain(torch.randn(5, 8)).shape == (5, 4)


def test_prototypes_normalise_rows_in_place():
    protos = Prototypes(dim=6, num_prototypes=10)
    with torch.no_grad():
        protos.layer.weight.mul_(7.0)
    weight = protos.layer.weight
    protos.normalize_()
    assert protos.layer.weight is weight  # in place: the optimiser keeps its reference
    assert torch.allclose(weight.norm(dim=1), torch.ones(10), atol=1e-6)
    x = torch.randn(3, 6)
    assert torch.allclose(protos(x), x @ weight.T)


def test_dino_last_layer_has_unit_row_norms_and_a_frozen_gain():
    torch.manual_seed(0)
    head = DINOHead(in_dim=12, hidden_dim=32, bottleneck_dim=8, out_dim=20, num_layers=3, use_bn=True)
    gain = head.last_layer.parametrizations.weight.original0
    direction = head.last_layer.parametrizations.weight.original1
    assert not gain.requires_grad and torch.all(gain == 1.0)
    with torch.no_grad():
        direction.mul_(5.0)  # weight norm divides it out: each output's weight row keeps norm 1
    assert torch.allclose(head.last_layer.weight.norm(dim=1), torch.ones(20), atol=1e-5)
    x = torch.randn(4, 12)
    out = head(x)
    assert out.shape == (4, 20)
    # the scores are cosines between the normalised bottleneck and unit rows, so |score| <= 1
    assert out.abs().max() <= 1 + 1e-5
    assert torch.allclose(out, head.prototype_scores(head.mlp(x)))
    # BN after the hidden layers only, GELU between them
    hidden = [nn.Linear, nn.BatchNorm1d, nn.GELU]
    assert [type(m) for m in head.mlp] == [*hidden, *hidden, nn.Linear]


def test_dino_last_layer_gain_gets_no_gradient():
    head = DINOHead(in_dim=12, hidden_dim=16, bottleneck_dim=8, out_dim=10, num_layers=2)
    head(torch.randn(4, 12)).sum().backward()
    assert head.last_layer.parametrizations.weight.original0.grad is None
    assert head.last_layer.parametrizations.weight.original1.grad is not None
