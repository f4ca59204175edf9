"""α-ReQ recovers the decay of a known power-law spectrum, and its band score is 0 inside the band."""

from __future__ import annotations

import math

import pytest
import torch

from ssl_tune.engine.alpha_req import alpha_req, band_score


def exact_spectrum(n: int, d: int, alpha: float, seed: int = 0) -> torch.Tensor:
    """(n, d) features whose centred covariance has eigenvalues exactly k^-alpha (times a constant)."""
    g = torch.Generator().manual_seed(seed)
    raw = torch.randn(n, d, dtype=torch.float64, generator=g)
    u = torch.linalg.qr(raw - raw.mean(dim=0)).Q  # orthonormal, centred columns
    v = torch.linalg.qr(torch.randn(d, d, dtype=torch.float64, generator=g)).Q
    scales = torch.arange(1, d + 1, dtype=torch.float64).pow(-alpha / 2)
    return (u * scales) @ v.T + 3.0  # an offset: the covariance is taken about the mean


@pytest.mark.parametrize("alpha", [0.5, 1.0, 1.7, 3.0])
def test_recovers_an_exact_power_law(alpha):
    assert alpha_req(exact_spectrum(1000, 128, alpha)) == pytest.approx(alpha, abs=0.05)


@pytest.mark.parametrize("alpha", [0.8, 1.0, 1.4])
def test_recovers_a_sampled_power_law(alpha):
    # Gaussian features with population eigenvalues k^-alpha; the sample spectrum of 20,000 rows in 64 dimensions
    g = torch.Generator().manual_seed(1)
    scales = torch.arange(1, 65, dtype=torch.float32).pow(-alpha / 2)
    features = torch.randn(20_000, 64, generator=g) * scales
    assert alpha_req(features) == pytest.approx(alpha, abs=0.05)


def test_collapsed_features_give_nan():
    assert math.isnan(alpha_req(torch.ones(100, 32)))
    assert math.isnan(band_score(alpha_req(torch.ones(100, 32))))


def test_band_score():
    band = (0.9, 1.1)
    assert band_score(0.95, band) == 0.0 and band_score(1.1, band) == 0.0
    assert band_score(1.5, band) == pytest.approx(-0.4)
    assert band_score(0.4, band) == pytest.approx(-0.5)
    assert band_score(2.0, band) < band_score(1.5, band)  # farther from the band scores lower, on either side


def test_bad_shapes_are_refused():
    with pytest.raises(ValueError, match="α-ReQ needs"):
        alpha_req(torch.zeros(10))
