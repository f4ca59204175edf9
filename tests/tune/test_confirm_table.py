"""confirm's comparison with the default recipe, from its rows: seed by seed, with the hand-computed interval of
tests/test_stats.py, in confirm.md and in the Parquet rows."""

from __future__ import annotations

import pytest

from ssl_tune.tune.confirm import DEFAULT_LABEL, markdown_table, with_default_differences
from tests.helpers import TINY_FIXED


def _rows() -> list[dict]:
    config = [0.330, 0.290, 0.350, 0.310]  # per seed 1..4; the default's below: differences 3, 1, 4, 2 points
    default = [0.300, 0.280, 0.310, 0.290]
    rows = []
    for label, values in (("3f2a9c01", config), (DEFAULT_LABEL, default)):
        for seed, value in zip((2, 1, 3, 4), (values[1], values[0], values[2], values[3]), strict=True):  # any order
            rows.append({"label": label, "seed": seed, "epochs": 8, "params": "{}", "test_knn_acc": value,
                         "probe_top1": value + 0.1, "probe_top5": value + 0.3})  # fmt: skip
    return rows


def test_each_row_carries_its_seeds_difference_and_its_configs_interval():
    rows = with_default_differences(_rows())
    config = sorted((r for r in rows if r["label"] == "3f2a9c01"), key=lambda r: r["seed"])
    assert [r["test_knn_acc_vs_default"] for r in config] == pytest.approx([0.03, 0.01, 0.04, 0.02])
    for r in config:
        assert r["test_knn_acc_vs_default_mean"] == pytest.approx(0.025)
        assert r["test_knn_acc_vs_default_low"] == pytest.approx(0.0044574, abs=1e-7)
        assert r["test_knn_acc_vs_default_high"] == pytest.approx(0.0455426, abs=1e-7)
        assert r["test_knn_acc_vs_default_verdict"] == "better"
    assert all(r["test_knn_acc_vs_default"] is None for r in rows if r["label"] == DEFAULT_LABEL)


def test_confirm_md_shows_the_paired_interval_and_the_verdict():
    table = markdown_table(with_default_differences(_rows()), "val_knn_acc")
    assert "| trial 3f2a9c01 | +2.50 points, 95 % CI [+0.45, +4.55] over 4 paired seeds: better |" in table


def test_without_the_default_there_is_no_comparison():
    rows = with_default_differences([r for r in _rows() if r["label"] != DEFAULT_LABEL])
    assert all(r["test_knn_acc_vs_default_mean"] is None for r in rows)
    assert "vs default" not in markdown_table(rows, "val_knn_acc")


def test_the_default_recipe_is_the_one_the_sweeps_default_trial_ran():
    """A space that draws the method: the default recipe is its first method's (as `try_default` ran it), not
    TrainConfig's default method."""
    from ssl_tune.metrics import TrialStatus
    from ssl_tune.tune.confirm import plan_runs
    from ssl_tune.tune.results import SweepRecord, TrialRecord
    from ssl_tune.tune.space import SearchSpace

    fixed = {k: v for k, v in TINY_FIXED.items() if k not in ("method", "method_params")}
    methods = {"method": {"type": "categorical", "choices": ["byol", "simsiam"]}}
    space = SearchSpace.model_validate({"fixed": fixed, "params": methods, "sweep": {"try_default": True}})
    trial = TrialRecord("t1", "/x/trial-t1", {"method": "simsiam"}, end_status=TrialStatus.COMPLETED)
    trial.results = [{"epoch": 0, "val_knn_acc": 0.1}, {"epoch": 1, "val_knn_acc": 0.2}]
    runs = plan_runs(SweepRecord("/x", space, None, [trial]), top=1, seeds=1, epochs=None, with_default=True)
    assert [(r.label, r.config["method"]) for r in runs] == [("t1", "simsiam"), (DEFAULT_LABEL, "byol")]
    assert space.default_point()["method"] == "byol"
