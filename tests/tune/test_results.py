"""A sweep's summary, read from its files: epoch 0, the default recipe's trial and the best trial, with gains."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from ssl_tune.tune.results import END_FILE, SWEEP_FILE, load_sweep
from ssl_tune.tune.space import SearchSpace
from tests.helpers import TINY_FIXED

LR = {"lr": {"type": "loguniform", "low": 1e-3, "high": 2.0}}


def _sweep(root: Path, trials: dict[str, tuple[float, list[float], str]], try_default: bool = True) -> Path:
    space = SearchSpace.model_validate({"fixed": TINY_FIXED, "params": LR, "sweep": {"try_default": try_default}})
    sweep = root / "sweep"
    sweep.mkdir()
    (sweep / SWEEP_FILE).write_text(yaml.safe_dump({"space": space.model_dump(mode="json"), "name": "sweep"}))
    for trial_id, (lr, knn, status) in trials.items():
        folder = sweep / f"trial-{trial_id}"
        folder.mkdir()
        (folder / "params.json").write_text(json.dumps({"lr": lr}))
        rows = [{"epoch": e, "val_knn_acc": v, "knn_queries": 1000} for e, v in enumerate(knn)]
        (folder / "result.json").write_text("".join(json.dumps(r) + "\n" for r in rows))
        (folder / END_FILE).write_text(json.dumps({"status": status}))
    return sweep


def test_summary_compares_the_best_and_the_default_at_equal_epochs(tmp_path):
    default_lr = SearchSpace.model_validate({"fixed": TINY_FIXED, "params": LR}).default_point()["lr"]
    sweep = _sweep(
        tmp_path,
        {
            "dflt": (default_lr, [0.18, 0.20, 0.25, 0.31, 0.30], "completed"),  # ASHA never stops the default
            "best": (0.9, [0.18, 0.30, 0.40, 0.45, 0.43], "completed"),
            "weak": (0.01, [0.18, 0.19], "stopped"),
        },
    )
    record = load_sweep(str(sweep))
    assert record.default_trial().trial_id == "dflt"
    assert record.summary() == [
        "random network (epoch 0): val_knn_acc 18.00%",
        "default recipe: val_knn_acc 30.00% (trial dflt, completed at epoch 4)",
        "best trial best: val_knn_acc 43.00% (+13.0 points over the default; +25.0 points over epoch 0)",
        "  with {'lr': 0.9}",
        "  best epochs: val_knn_acc 45.00% (epoch 3) against the default's val_knn_acc 31.00% (epoch 3): +14.0 points",
        "  the best trial is the maximum over trials on these validation images, so its gain is biased upward; "
        f"the unbiased test: ssl-tune confirm --sweep {sweep} --top 1 --seeds 3 --with-default",
    ]


def test_a_gap_below_the_validation_splits_standard_error_is_within_noise(tmp_path):
    """1,000 validation images at 30 %: a standard error of √(0.3 · 0.7 / 1000) = 1.45 points. The default stopped
    (a budget, a failure) at epoch 2: the trials are compared at epoch 2."""
    default_lr = SearchSpace.model_validate({"fixed": TINY_FIXED, "params": LR}).default_point()["lr"]
    sweep = _sweep(
        tmp_path,
        {"dflt": (default_lr, [0.18, 0.25, 0.30], "stopped"), "best": (0.9, [0.18, 0.26, 0.31, 0.40], "completed")},
    )
    lines = load_sweep(str(sweep)).summary()
    assert lines[2] == (
        "best trial best: val_knn_acc 40.00% (+1.0 points over the default at epoch 2: within noise, below the "
        "validation split's standard error of 1.5; +22.0 points over epoch 0)"
    )
    assert lines[4].endswith("(epoch 2): +10.0 points")  # best epochs: 40 % (epoch 3) against 30 % (epoch 2)


def test_without_try_default_no_trial_is_the_default(tmp_path):
    default_lr = SearchSpace.model_validate({"fixed": TINY_FIXED, "params": LR}).default_point()["lr"]
    sweep = _sweep(tmp_path, {"a": (default_lr, [0.1, 0.2], "completed")}, try_default=False)
    record = load_sweep(str(sweep))
    assert record.default_trial() is None
    assert record.summary()[1] == "best trial a: val_knn_acc 20.00% (+10.0 points over epoch 0)"
