"""LARS (multi-tensor) against a per-parameter reference, its checkpoints, the SGD variant `build_optimizer`
picks and the warm-up + cosine schedule."""

from __future__ import annotations

import copy
import itertools
from types import SimpleNamespace

import pytest
import torch
from torch import nn
from torch.optim import Optimizer

from ssl_tune.engine.optim import LARS, _sgd_impl, build_optimizer, lr_factor, set_lr
from ssl_tune.methods.base import ParamGroup

HYPER = {"lr": 0.5, "momentum": 0.9, "eta": 0.1}


class ReferenceLARS(Optimizer):
    """The per-parameter loop LARS replaced: the semantics it must keep."""

    def __init__(self, params, lr, momentum=0.9, weight_decay=0.0, eta=0.02, eps=1e-8, clip_lr=False):
        defaults = {"lr": lr, "momentum": momentum, "weight_decay": weight_decay, "eta": eta, "eps": eps}
        super().__init__(params, {**defaults, "lars_adapt": True, "clip_lr": clip_lr})
        self.clipped = self.unclipped = 0  # how often min(trust / lr, 1) took each side

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
                    if group["clip_lr"]:  # LARC: the parameter's lr is min(lr, trust)
                        ratio = trust / group["lr"]
                        self.clipped += int(ratio > 1)
                        self.unclipped += int(ratio <= 1)
                        trust = torch.clamp(ratio, max=1.0)
                    if w_norm == 0 or g_norm == 0:
                        trust = torch.ones_like(trust)
                    d_p = d_p.add(p, alpha=wd).mul(trust)
                else:
                    d_p = d_p.add(p, alpha=wd)
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = d_p.clone()
                else:
                    state["momentum_buffer"].mul_(group["momentum"]).add_(d_p)
                p.sub_(group["lr"] * state["momentum_buffer"])


class Tiny(nn.Module):
    """A small model with the awkward cases: a weight that starts at zero, one whose grad is all zeros,
    a float64 weight (its own foreach bucket) and one that gets no grad at all."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.bn, self.fc2 = nn.Linear(6, 5), nn.BatchNorm1d(5), nn.Linear(5, 4)
        self.zero_init = nn.Parameter(torch.zeros(4, 4))
        self.dead = nn.Parameter(torch.randn(3, 2))
        self.wide = nn.Parameter(torch.randn(4, 3, dtype=torch.float64))
        self.unused = nn.Parameter(torch.randn(2, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.fc2(torch.relu(self.bn(self.fc1(x))))
        h = h + h @ self.zero_init
        return (h @ self.wide.float()).square().mean() + 0 * self.dead.sum()


def lars_groups(m: Tiny) -> list[dict]:
    """Adapted and non-adapted groups, each with weight decay > 0 and = 0."""
    return [
        {"params": [m.fc1.weight, m.zero_init, m.dead, m.wide, m.unused], "weight_decay": 1e-2},
        {"params": [m.fc2.weight], "weight_decay": 0.0},
        {"params": [m.fc1.bias, m.fc2.bias], "weight_decay": 1e-2, "lars_adapt": False},
        {"params": [m.bn.weight, m.bn.bias], "weight_decay": 0.0, "lars_adapt": False},
    ]


def backward(model: Tiny, step: int) -> None:
    model.zero_grad(set_to_none=step % 2 == 0)  # in-place zeroing catches buffers that alias grads
    x = torch.randn(8, 6, generator=torch.Generator().manual_seed(step))
    model(x).backward()


def assert_same(a: Tiny, b: Tiny, opt_a: Optimizer, opt_b: Optimizer, atol: float) -> None:
    for (name, pa), pb in zip(a.named_parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(pa, pb, atol=atol, rtol=0, msg=lambda m, n=name: f"{n}: {m}")
        sa, sb = opt_a.state.get(pa, {}), opt_b.state.get(pb, {})
        assert sa.keys() == sb.keys(), name
        if sa:
            torch.testing.assert_close(sa["momentum_buffer"], sb["momentum_buffer"], atol=atol, rtol=0)


@pytest.mark.parametrize("clip_lr", [False, True])
def test_lars_matches_per_parameter_reference(clip_lr):
    torch.manual_seed(0)
    model = Tiny()
    ref_model = copy.deepcopy(model)
    hyper = {**HYPER, "clip_lr": clip_lr}
    opt, ref = LARS(lars_groups(model), **hyper), ReferenceLARS(lars_groups(ref_model), **hyper)
    start = {n: p.detach().clone() for n, p in model.named_parameters()}
    for step in range(6):
        for group in opt.param_groups + ref.param_groups:  # a changing lr, as under a schedule
            group["lr"] = 0.05 * (1 + step)
        backward(model, step)
        backward(ref_model, step)
        assert model.dead.grad is not None and not model.dead.grad.any()
        opt.step()
        ref.step()
        assert_same(model, ref_model, opt, ref, atol=1e-6)
    # the awkward cases moved (trust 1 where a norm is zero) and the grad-less one did not
    assert model.zero_init.any() and not torch.equal(model.dead, start["dead"])
    assert torch.equal(model.unused, start["unused"]) and model.unused not in opt.state
    if clip_lr:  # both sides of min(trust / lr, 1) were taken
        assert ref.clipped > 0 and ref.unclipped > 0, (ref.clipped, ref.unclipped)


def test_lars_state_dict_round_trip_and_old_checkpoints():
    torch.manual_seed(1)
    model = Tiny()
    ref_model = copy.deepcopy(model)
    opt, ref = LARS(lars_groups(model), **HYPER), ReferenceLARS(lars_groups(ref_model), **HYPER)
    for step in range(2):
        for m, o in ((model, opt), (ref_model, ref)):
            backward(m, step)
            o.step()
    saved = opt.state_dict()
    assert "momentum_buffer" in saved["state"][0]
    # a fresh LARS from the new one's checkpoint, and one from the old implementation's checkpoint
    resumed, from_old = copy.deepcopy(model), copy.deepcopy(ref_model)
    opt_resumed, opt_from_old = LARS(lars_groups(resumed), **HYPER), LARS(lars_groups(from_old), **HYPER)
    opt_resumed.load_state_dict(copy.deepcopy(saved))
    opt_from_old.load_state_dict(copy.deepcopy(ref.state_dict()))
    for step in range(2, 5):
        for m, o in ((model, opt), (resumed, opt_resumed), (ref_model, ref), (from_old, opt_from_old)):
            backward(m, step)
            o.step()
    assert_same(model, resumed, opt, opt_resumed, atol=0)
    assert_same(ref_model, from_old, ref, opt_from_old, atol=1e-6)


def build(model: nn.Module, name: str) -> Optimizer:
    groups = [ParamGroup("all", list(model.parameters())), ParamGroup("head", [], lr=0.1, fixed_lr=True)]
    return build_optimizer(groups, name=name, lr=0.3, batch_size=512, weight_decay=1e-4, momentum=0.9, lars_eta=0.02)


def test_build_optimizer_cpu_sgd_is_not_fused(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # a CPU run on a GPU machine
    opt = build(nn.Linear(3, 2), "sgd")
    assert type(opt) is torch.optim.SGD
    assert not opt.defaults["fused"] and not opt.defaults["foreach"]
    assert [g["lr"] for g in opt.param_groups] == [0.6]


def test_build_optimizer_lars_splits_matrices_and_vectors():
    opt = build(nn.Linear(3, 2), "lars")
    assert isinstance(opt, LARS)
    assert [(g["lars_adapt"], g["weight_decay"], len(g["params"])) for g in opt.param_groups] == [
        (True, 1e-4, 1),
        (False, 0.0, 1),
    ]


def test_sgd_impl_follows_parameter_devices():
    def groups(*devices: str) -> list[dict]:
        return [{"params": [SimpleNamespace(device=torch.device(d)) for d in devices]}]

    assert _sgd_impl(groups("cuda:0", "cuda:0")) == {"fused": True}
    assert _sgd_impl(groups("cuda:0", "cpu")) == {"foreach": True}
    assert _sgd_impl(groups("cpu", "cpu")) == {}


def test_lr_factor_warmup_and_cosine_endpoints():
    assert lr_factor(0, 10, 110) == pytest.approx(0.1)
    assert lr_factor(9, 10, 110) == pytest.approx(1.0)
    assert lr_factor(10, 10, 110) == pytest.approx(1.0)
    assert lr_factor(60, 10, 110) == pytest.approx(0.5)
    assert lr_factor(110, 10, 110) == pytest.approx(0.0, abs=1e-12)
    assert lr_factor(200, 10, 110) == pytest.approx(0.0, abs=1e-12)
    assert lr_factor(0, 0, 100) == pytest.approx(1.0)
    factors = [lr_factor(s, 10, 110) for s in range(111)]
    assert all(a < b for a, b in itertools.pairwise(factors[:10]))  # warm-up rises
    assert all(a >= b for a, b in itertools.pairwise(factors[10:]))  # cosine falls


def test_set_lr_keeps_fixed_groups():
    opt = build(nn.Linear(3, 2), "sgd")
    opt.add_param_group({"params": [nn.Parameter(torch.zeros(1))], "base_lr": 0.2, "fixed_lr": True})
    set_lr(opt, 0.25)
    assert [g["lr"] for g in opt.param_groups] == [pytest.approx(0.15), 0.2]
