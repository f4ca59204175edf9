"""The reusable losses: each against a plain re-computation of its paper's formula, its gradient paths,
and its known fixed points; the EMA update and the DINO centre."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ssl_tune import losses
from ssl_tune.methods.base import Progress
from ssl_tune.models.ema import cosine_momentum, ema_update

torch.manual_seed(0)


def _cos(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(a @ b / (a.norm() * b.norm()))


# --- formulas, written plainly (loops over samples) ------------------------------------------------


def test_negative_cosine_and_byol_match_the_formula():
    p, z = torch.randn(6, 5), torch.randn(6, 5)
    expected = -sum(_cos(p[i], z[i]) for i in range(6)) / 6
    assert losses.negative_cosine(p, z).item() == pytest.approx(expected, abs=1e-6)
    assert losses.byol(p, z).item() == pytest.approx(2 + 2 * expected, abs=1e-6)


def test_nt_xent_matches_the_formula():
    n, t = 5, 0.3
    z1, z2 = torch.randn(n, 8), torch.randn(n, 8)
    views = [F.normalize(v, dim=0) for v in torch.cat([z1, z2])]
    total = 0.0
    for i in range(2 * n):
        pos = (i + n) % (2 * n)
        numerator = math.exp(float(views[i] @ views[pos]) / t)
        denominator = sum(math.exp(float(views[i] @ views[k]) / t) for k in range(2 * n) if k != i)
        total += -math.log(numerator / denominator)
    assert losses.nt_xent(z1, z2, t).item() == pytest.approx(total / (2 * n), rel=1e-5)


def test_moco_v3_contrastive_matches_the_formula():
    n, t = 4, 0.2
    q, k = torch.randn(n, 6), torch.randn(n, 6)
    total = 0.0
    for i in range(n):
        logits = [_cos(q[i], k[j]) / t for j in range(n)]
        total += -(logits[i] - math.log(sum(math.exp(v) for v in logits)))
    assert losses.moco_v3_contrastive(q, k, t).item() == pytest.approx(2 * t * total / n, rel=1e-5)


def test_barlow_twins_matches_the_formula():
    n, d, lambd = 16, 4, 0.01
    z1, z2 = torch.randn(n, d), torch.randn(n, d)

    def standardize(z):
        return (z - z.mean(0)) / torch.sqrt(z.var(0, unbiased=False) + 1e-5)

    a, b = standardize(z1), standardize(z2)
    expected = 0.0
    for i in range(d):
        for j in range(d):
            c_ij = sum(float(a[k, i] * b[k, j]) for k in range(n)) / n
            expected += (1 - c_ij) ** 2 if i == j else lambd * c_ij**2
    assert losses.barlow_twins(z1, z2, lambd).item() == pytest.approx(expected, rel=1e-5)


def test_vicreg_matches_the_formula():
    n, d = 12, 3
    z1, z2 = torch.randn(n, d), torch.randn(n, d) * 0.5
    inv = float(((z1 - z2) ** 2).mean())

    def var_term(z):
        return sum(max(0.0, 1 - math.sqrt(float(z[:, j].var()) + 1e-4)) for j in range(d)) / d

    def cov_term(z):
        zc = z - z.mean(0)
        cov = zc.T @ zc / (n - 1)
        return sum(float(cov[i, j]) ** 2 for i in range(d) for j in range(d) if i != j) / d

    expected = 25 * inv + 25 * (var_term(z1) + var_term(z2)) + 1 * (cov_term(z1) + cov_term(z2))
    assert losses.vicreg(z1, z2).item() == pytest.approx(expected, rel=1e-5)


def test_swav_matches_the_formula():
    b, k, t = 4, 5, 0.1
    scores = [torch.randn(b, k) for _ in range(3)]
    codes = [torch.softmax(torch.randn(b, k), 1) for _ in range(2)]
    total, pairs = 0.0, 0
    for i in range(2):
        for v in range(3):
            if v != i:
                log_p = torch.log_softmax(scores[v] / t, 1)
                total += -sum(float((codes[i][s] * log_p[s]).sum()) for s in range(b)) / b
                pairs += 1
    assert losses.swav(scores, codes, t).item() == pytest.approx(total / pairs, rel=1e-5)


def test_dino_matches_the_formula():
    b, k, ts, tt = 3, 6, 0.1, 0.04
    student = [torch.randn(b, k) for _ in range(4)]
    teacher = [torch.randn(b, k) for _ in range(2)]
    center = torch.randn(1, k)
    total, pairs = 0.0, 0
    for i in range(2):
        q = torch.softmax((teacher[i] - center) / tt, 1)
        for v in range(4):
            if v != i:
                log_p = torch.log_softmax(student[v] / ts, 1)
                total += -float((q * log_p).sum()) / b
                pairs += 1
    assert losses.dino(student, teacher, center, ts, tt).item() == pytest.approx(total / pairs, rel=1e-5)


# --- gradients flow only where they should ---------------------------------------------------------


@pytest.mark.parametrize(
    "loss_fn",
    [
        lambda a, b: losses.negative_cosine(a, b),
        lambda a, b: losses.byol(a, b),
        lambda a, b: losses.moco_v3_contrastive(a, b, 0.2),
    ],
    ids=["negative_cosine", "byol", "moco_v3"],
)
def test_no_gradient_into_the_target(loss_fn):
    online = torch.randn(8, 4, requires_grad=True)
    target = torch.randn(8, 4, requires_grad=True)
    loss_fn(online, target).backward()
    assert online.grad is not None and online.grad.abs().sum() > 0
    assert target.grad is None


def test_no_gradient_into_codes_or_teacher():
    scores = [torch.randn(4, 5, requires_grad=True) for _ in range(2)]
    codes = [losses.sinkhorn(s, 0.05, 3) for s in scores]  # computed from the scores, but a target
    losses.swav(scores, codes, 0.1).backward()
    assert all(s.grad is not None and s.grad.abs().sum() > 0 for s in scores)

    student = [torch.randn(3, 6, requires_grad=True) for _ in range(3)]
    teacher = [torch.randn(3, 6, requires_grad=True) for _ in range(2)]
    losses.dino(student, teacher, torch.zeros(1, 6), 0.1, 0.04).backward()
    assert all(s.grad is not None for s in student)
    assert all(t.grad is None for t in teacher)


def test_symmetric_losses_send_gradients_to_both_branches():
    for fn in (lambda a, b: losses.nt_xent(a, b, 0.5), losses.barlow_twins, losses.vicreg):
        z1, z2 = torch.randn(8, 4, requires_grad=True), torch.randn(8, 4, requires_grad=True)
        fn(z1, z2).backward()
        assert z1.grad.abs().sum() > 0 and z2.grad.abs().sum() > 0


# --- fixed points ----------------------------------------------------------------------------------


def test_nt_xent_of_identical_well_separated_views_tends_to_zero_as_temperature_falls():
    z = torch.eye(8) * 3  # orthogonal directions: well separated
    values = [losses.nt_xent(z, z.clone(), t).item() for t in (1.0, 0.3, 0.1, 0.03)]
    assert values == sorted(values, reverse=True)
    assert values[-1] < 1e-6
    # as τ grows the logits even out and the loss tends to log(2N - 1)
    assert losses.nt_xent(z, z.clone(), 1e4).item() == pytest.approx(math.log(15), rel=1e-3)


def test_barlow_twins_is_zero_for_identical_decorrelated_views():
    z = torch.tensor([[1.0, 1.0], [1.0, -1.0], [-1.0, 1.0], [-1.0, -1.0]])  # standardised, uncorrelated dims
    assert losses.barlow_twins(z, z.clone(), 0.005).item() == pytest.approx(0.0, abs=1e-4)
    assert losses.barlow_twins(z, -z, 0.005).item() == pytest.approx(2 * 4.0, rel=1e-3)  # C = -I: Σ(1+1)²


def test_vicreg_invariance_is_zero_and_variance_hinge_off_for_spread_identical_views():
    z = torch.randn(256, 4) * 3
    assert losses.vicreg(z, z.clone(), var_weight=25, cov_weight=0).item() == pytest.approx(0.0, abs=1e-6)


def test_byol_loss_is_zero_when_prediction_matches_target_direction():
    z = torch.randn(5, 7)
    assert losses.byol(2 * z, z).item() == pytest.approx(0.0, abs=1e-6)
    assert losses.byol(-z, z).item() == pytest.approx(4.0, abs=1e-6)


# --- Sinkhorn ---------------------------------------------------------------------------------------


def test_sinkhorn_rows_sum_to_one_and_prototypes_are_used_equally():
    scores = F.normalize(torch.randn(64, 8), dim=1) @ F.normalize(torch.randn(16, 8), dim=1).T
    codes = losses.sinkhorn(scores, epsilon=0.05, iterations=100)
    assert torch.allclose(codes.sum(dim=1), torch.ones(64), atol=1e-5)
    column_share = codes.sum(dim=0) / codes.sum()
    assert torch.allclose(column_share, torch.full((16,), 1 / 16), atol=1e-3)
    # fewer iterations: the marginals are approached, and more iterations get closer
    few = losses.sinkhorn(scores, 0.05, 3).sum(dim=0) / 64
    assert (few - 1 / 16).abs().max() < (F.softmax(scores / 0.05, 1).sum(0) / 64 - 1 / 16).abs().max()


def test_sinkhorn_is_stable_with_small_epsilon_in_low_precision():
    scores = (torch.rand(32, 10) * 2 - 1).to(torch.bfloat16)
    codes = losses.sinkhorn(scores, epsilon=0.01, iterations=3)
    assert codes.dtype == torch.float32 and torch.isfinite(codes).all()


def test_mean_entropy_is_log_k_for_equal_use_and_zero_for_one_output():
    assert losses.mean_entropy(torch.eye(4)).item() == pytest.approx(math.log(4), rel=1e-6)
    assert losses.mean_entropy(torch.tensor([[1.0, 0.0]] * 5)).item() == pytest.approx(0.0, abs=1e-6)


# --- EMA and the DINO centre ------------------------------------------------------------------------


def test_ema_update_follows_the_formula_with_the_scheduled_momentum():
    online, target = nn.Linear(3, 2), nn.Linear(3, 2)
    before = [p.detach().clone() for p in target.parameters()]
    progress = Progress(epoch=0, step=25, steps_per_epoch=10, total_steps=100)
    tau = cosine_momentum(0.99, progress.fraction)
    assert tau == pytest.approx(1 - (1 - 0.99) * (math.cos(math.pi * 0.25) + 1) / 2)
    ema_update(target, online, tau)
    for t_old, t_new, o in zip(before, target.parameters(), online.parameters(), strict=True):
        assert torch.allclose(t_new, tau * t_old + (1 - tau) * o.detach(), atol=1e-7)
    assert cosine_momentum(0.99, 0.0) == pytest.approx(0.99) and cosine_momentum(0.99, 1.0) == pytest.approx(1.0)


def test_methods_apply_their_scheduled_ema_after_each_step():
    from ssl_tune.methods import get_method
    from ssl_tune.models.backbones import build_backbone

    cls = get_method("byol")
    method = cls(
        build_backbone("resnet_tiny", 32), cls.Params(proj_hidden_dim=32, proj_output_dim=16, pred_hidden_dim=16)
    )
    with torch.no_grad():
        for p in method.projector.parameters():
            p.add_(1.0)  # online now differs from its target
    target_before = [p.clone() for p in method.target_projector.parameters()]
    progress = Progress(epoch=0, step=50, steps_per_epoch=10, total_steps=100)
    method.after_optimizer_step(progress)
    tau = cosine_momentum(0.99, 0.5)
    for old, new, online in zip(
        target_before, method.target_projector.parameters(), method.projector.parameters(), strict=True
    ):
        assert torch.allclose(new, tau * old + (1 - tau) * online, atol=1e-6)


def test_dino_centre_is_an_ema_of_the_teacher_batch_mean():
    from ssl_tune.losses import update_center_

    center = torch.randn(1, 10)
    before = center.clone()
    teacher_out = torch.randn(12, 10)
    update_center_(center, teacher_out, momentum=0.8)
    assert torch.allclose(center, 0.8 * before + 0.2 * teacher_out.mean(0, keepdim=True), atol=1e-6)
