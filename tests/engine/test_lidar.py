"""LiDAR against a direct numpy computation of the paper's definition, and at its two ends: views that coincide
while images differ (high) and collapsed features (about 1)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ssl_tune.engine.lidar import LIDAR_DELTA, LIDAR_EPS, lidar


def numpy_lidar(e: np.ndarray, delta: float = LIDAR_DELTA, eps: float = LIDAR_EPS) -> float:
    """The paper's formulas, written out with loops over images and views."""
    n, q, d = e.shape
    mu_i = [e[i].mean(axis=0) for i in range(n)]
    mu = np.mean(mu_i, axis=0)
    s_b = sum(np.outer(m - mu, m - mu) for m in mu_i) / (n - 1)
    s_w = sum(np.outer(e[i, j] - mu_i[i], e[i, j] - mu_i[i]) for i in range(n) for j in range(q)) / (n * (q - 1))
    s_w = s_w + delta * np.eye(d)
    w, v = np.linalg.eigh(s_w)
    inv_sqrt = v @ np.diag(w**-0.5) @ v.T
    lam = np.linalg.eigvalsh(inv_sqrt @ s_b @ inv_sqrt)
    lam = np.clip(lam, 0, None)
    p = lam / lam.sum() + eps
    return float(np.exp(-(p * np.log(p)).sum()))


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize(("n", "q", "d", "noise"), [(12, 3, 5, 0.3), (40, 10, 8, 1.0), (6, 2, 16, 0.1)])
def test_matches_a_direct_numpy_computation(n, q, d, noise):
    images = torch.randn(n, 1, d, generator=_generator(n)) * torch.linspace(0.2, 2.0, d)
    views = images + noise * torch.randn(n, q, d, generator=_generator(n + 1))
    assert lidar(views) == pytest.approx(numpy_lidar(views.double().numpy()), rel=1e-9)


def test_views_that_coincide_on_images_that_differ_give_a_high_lidar():
    d = 32
    images = torch.randn(2000, 1, d, generator=_generator(0))
    assert lidar(images.expand(2000, 5, d)) == pytest.approx(d, rel=0.05)


def test_directions_where_views_vary_more_than_images_stop_counting():
    d = 32
    images = torch.randn(2000, 1, d, generator=_generator(0))
    noise = 0.1 * torch.randn(2000, 5, d, generator=_generator(1))
    noisy = noise.clone()
    noisy[..., :16] *= 100.0  # half the directions: views differ 10x more than images do
    assert lidar(images + noise) == pytest.approx(d, rel=0.05)
    assert lidar(images + noisy) == pytest.approx(d / 2, rel=0.1)


@pytest.mark.parametrize("scale", [0.0, 1.0, 1e3])
def test_collapsed_features_give_about_one(scale):
    # every image and view at one point: no between-image scatter
    assert lidar(torch.full((300, 4, 64), scale)) == pytest.approx(1.0, abs=1e-3)


def test_features_on_one_line_give_about_one():
    direction = torch.randn(1, 1, 64, generator=_generator(2))
    positions = torch.randn(300, 1, 1, generator=_generator(3)).expand(300, 4, 1)
    assert lidar(positions * direction) == pytest.approx(1.0, abs=0.01)


@pytest.mark.parametrize("shape", [(10, 1, 8), (1, 4, 8), (10, 8), (10, 4, 0)])
def test_bad_shapes_are_refused(shape):
    with pytest.raises(ValueError, match="LiDAR needs"):
        lidar(torch.zeros(shape))
