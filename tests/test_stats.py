"""The paired comparison behind every "better": checked against intervals computed by hand, and t quantiles against
the printed table (Abramowitz and Stegun, table 26.10)."""

from __future__ import annotations

import math

import pytest

from ssl_tune.stats import paired_difference, t_cdf, t_quantile

# the two-sided 95 % critical values t(0.975, df) as printed in every table
T_TABLE = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 9: 2.262, 10: 2.228, 29: 2.045, 120: 1.980}


@pytest.mark.parametrize("df", T_TABLE)
def test_t_quantiles_match_the_table(df):
    assert t_quantile(0.975, df) == pytest.approx(T_TABLE[df], abs=5e-4)
    assert t_quantile(0.025, df) == pytest.approx(-T_TABLE[df], abs=5e-4)
    assert t_cdf(0.0, df) == 0.5


def test_t_cdf_of_one_degree_is_the_cauchy_cdf():
    for t in (-3.0, -0.5, 0.7, 4.0):
        assert t_cdf(t, 1) == pytest.approx(0.5 + math.atan(t) / math.pi, abs=1e-12)


def test_the_paired_interval_is_the_hand_computed_one():
    """Test kNN (%) of a config and the default over the same 4 seeds, worked by hand:
    d = (3.0, 1.0, 4.0, 2.0), mean 2.5, sd √(5/3) = 1.29099, se 0.645497, t(0.975, 3) = 3.182446,
    half width 2.054260: [0.445740, 4.554260], so better."""
    config = [0.330, 0.290, 0.350, 0.310]
    default = [0.300, 0.280, 0.310, 0.290]
    d = paired_difference(config, default)
    assert d.differences == pytest.approx((0.03, 0.01, 0.04, 0.02))
    assert d.mean == pytest.approx(0.025)
    assert d.low == pytest.approx(0.00445740, abs=1e-7) and d.high == pytest.approx(0.04554260, abs=1e-7)
    assert d.verdict == "better"
    assert d.target(0.03) == "too wide to decide"  # +3 points is inside the interval
    assert d.target(0.004) == "met" and d.target(0.05) == "not met"


def test_unpaired_noise_the_pairing_removes():
    """A seed that helps both sides equally is no evidence: the paired interval is narrow, though the two means'
    spreads overlap widely."""
    default = [0.247, 0.300, 0.340]
    config = [x + 0.02 for x in default]
    d = paired_difference(config, default)
    assert d.verdict == "better" and d.low == pytest.approx(0.02) and d.high == pytest.approx(0.02)


def test_an_interval_that_holds_zero_is_within_noise_and_one_seed_has_none():
    assert paired_difference([0.35, 0.25, 0.31], [0.30, 0.30, 0.30]).verdict == "within noise"
    assert paired_difference([0.25, 0.26, 0.255], [0.30, 0.30, 0.30]).verdict == "worse"
    one = paired_difference([0.35], [0.30])
    assert one.low is None and one.verdict == "one seed: no interval" and "--seeds 2" in one.describe()
    with pytest.raises(ValueError, match="same seeds"):
        paired_difference([0.3, 0.3], [0.3])
