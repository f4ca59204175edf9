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
        rows = [{"epoch": e, "val_knn_acc": v} for e, v in enumerate(knn)]
        (folder / "result.json").write_text("".join(json.dumps(r) + "\n" for r in rows))
        (folder / END_FILE).write_text(json.dumps({"status": status}))
    return sweep


def test_summary_reports_the_default_and_the_best_with_their_gains(tmp_path):
    default_lr = SearchSpace.model_validate({"fixed": TINY_FIXED, "params": LR}).default_point()["lr"]
    sweep = _sweep(
        tmp_path,
        {
            "dflt": (default_lr, [0.18, 0.20, 0.25], "stopped"),  # stopped by ASHA at epoch 2
            "best": (0.9, [0.18, 0.30, 0.40, 0.45, 0.43], "completed"),
            "weak": (0.01, [0.18, 0.19], "stopped"),
        },
    )
    record = load_sweep(str(sweep))
    assert record.default_trial().trial_id == "dflt"
    assert record.summary() == [
        "random network (epoch 0): val_knn_acc 18.00%",
        "default recipe: val_knn_acc 25.00% (trial dflt, stopped at epoch 2; "
        "the best trial had val_knn_acc 40.00% then)",
        "best trial best: val_knn_acc 43.00% (+18.0 points over the default, +25.0 points over epoch 0)",  # last epochs
        "  with {'lr': 0.9}",
    ]


def test_without_try_default_no_trial_is_the_default(tmp_path):
    default_lr = SearchSpace.model_validate({"fixed": TINY_FIXED, "params": LR}).default_point()["lr"]
    sweep = _sweep(tmp_path, {"a": (default_lr, [0.1, 0.2], "completed")}, try_default=False)
    record = load_sweep(str(sweep))
    assert record.default_trial() is None
    assert record.summary()[1] == "best trial a: val_knn_acc 20.00% (+10.0 points over epoch 0)"
