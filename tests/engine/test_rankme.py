from __future__ import annotations

import math

import pytest
import torch

from ssl_tune.engine.rankme import rankme


def gaussian(n: int, d: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed))


def test_points_on_a_line_have_rank_one():
    generator = torch.Generator().manual_seed(0)
    direction = torch.randn(1, 64, generator=generator)
    positions = torch.randn(2000, 1, generator=generator)
    value = rankme(positions * direction)
    assert isinstance(value, float)
    assert value == pytest.approx(1.0, rel=0.1)


@pytest.mark.parametrize(("n", "d"), [(10_000, 128), (64, 512), (512, 64)])
def test_isotropic_gaussian_has_full_rank(n, d):
    # with one side 8x or more the other, the singular values sit within 1 +- sqrt(min/max) of each other
    # (Marchenko-Pastur), so p is nearly uniform over the min(n, d) of them
    assert rankme(gaussian(n, d)) == pytest.approx(min(n, d), rel=0.1)


def test_rank_of_a_subspace():
    generator = torch.Generator().manual_seed(1)
    basis = torch.linalg.qr(torch.randn(128, 10, generator=generator)).Q.T  # (10, 128), orthonormal rows
    features = torch.randn(5000, 10, generator=generator) @ basis
    assert rankme(features) == pytest.approx(10, rel=0.1)


@pytest.mark.parametrize("scale", [1e-3, 0.5, 7.0, 1e3])
def test_invariant_to_scale(scale):
    features = gaussian(1000, 64) * torch.linspace(0.1, 2.0, 64)
    assert rankme(features * scale) == pytest.approx(rankme(features), rel=1e-4)


def test_not_centred():
    # a shared offset is one large singular direction: it lowers RankMe, where a centred measure would not see it
    noise = gaussian(2000, 64)
    assert rankme(noise + 10.0) < 0.5 * rankme(noise)


@pytest.mark.parametrize(
    "features",
    [
        gaussian(300, 40),
        gaussian(40, 300),
        gaussian(500, 3) @ gaussian(3, 50, seed=1),
        gaussian(1, 16),
        gaussian(16, 1),
        gaussian(200, 30).relu(),
        torch.zeros(10, 5),
    ],
    ids=["tall", "wide", "rank-3", "one-row", "one-column", "relu", "zeros"],
)
def test_between_one_and_min_n_d(features):
    value = rankme(features)
    assert math.isfinite(value)
    # eps lets p sum to 1 + min(n, d) * eps, so either bound can be passed by a hair
    assert 1.0 - 1e-4 <= value <= min(features.shape) * (1 + 1e-3)


def test_low_precision_input():
    features = gaussian(2000, 32)
    assert rankme(features.half()) == pytest.approx(rankme(features), rel=1e-2)
    assert rankme(features.bfloat16()) == pytest.approx(rankme(features), rel=1e-2)


@pytest.mark.parametrize("shape", [(10,), (2, 3, 4), (0, 5), (5, 0)])
def test_bad_shape_raises(shape):
    with pytest.raises(ValueError, match="RankMe needs"):
        rankme(torch.ones(shape))
