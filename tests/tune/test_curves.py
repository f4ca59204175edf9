"""curves.parquet: every epoch of every trial, read back, matches each trial's result.json."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pyarrow.parquet as pq
import yaml

from ssl_tune.tune.curves import CURVES_FILE, curve_rows, curves_table, write_curves
from ssl_tune.tune.results import END_FILE, SWEEP_FILE, latest_attempt, load_sweep
from ssl_tune.tune.space import SearchSpace
from tests.helpers import TINY_FIXED

LR = {"lr": {"type": "loguniform", "low": 1e-3, "high": 2.0}}


def assert_curves_match_the_trials(sweep_dir: Path, table: Path | None = None, strategy: str | None = None) -> None:
    """Every (trial, epoch) of the sweep is one row of curves.parquet (a benchmark's: those of `strategy`), with its
    config, seed, seconds and every numeric metric of its result.json row, and nothing else."""
    rows = pq.read_table(table or sweep_dir / CURVES_FILE).to_pylist()
    rows = [r for r in rows if strategy is None or r["strategy"] == strategy]
    sweep = load_sweep(str(sweep_dir))
    expected = 0
    for trial in sweep.trials:
        results = latest_attempt(
            [json.loads(x) for x in (Path(trial.trial_dir) / "result.json").read_text().splitlines() if x.strip()]
        )
        mine = sorted((r for r in rows if r["trial_id"] == trial.trial_id), key=lambda r: r["epoch"])
        assert [r["epoch"] for r in mine] == [r["epoch"] for r in results], trial.trial_id
        seed = sweep.space.train_config(trial.params, sweep.data_dir).seed
        for row, result in zip(mine, results, strict=True):
            assert json.loads(row["config"]) == trial.params and row["seed"] == seed
            assert row["end_status"] == trial.status.value and row["status"] == result.get("status")
            assert row["seconds"] == result.get("time_total_s")
            for key, value in result.items():
                if isinstance(value, int | float) and not isinstance(value, bool) and key in row:
                    assert row[key] == value or (math.isnan(row[key]) and math.isnan(value)), (key, row, result)
            assert row["val_knn_acc"] == result["val_knn_acc"] or math.isnan(result["val_knn_acc"])
        expected += len(results)
    assert len(rows) == expected


def _same_rows(a: list[dict], b: list[dict]) -> bool:
    def same(x, y):
        return x == y or (isinstance(x, float) and isinstance(y, float) and math.isnan(x) and math.isnan(y))

    return len(a) == len(b) and all(
        r.keys() == s.keys() and all(same(r[k], s[k]) for k in r) for r, s in zip(a, b, strict=False)
    )


def test_curves_round_trip_and_match_result_json(tmp_path):
    space = SearchSpace.model_validate({"fixed": TINY_FIXED, "params": LR})
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    (sweep / SWEEP_FILE).write_text(yaml.safe_dump({"space": space.model_dump(mode="json"), "name": "sweep"}))
    trials = {
        "a": (0.1, [0.18, 0.30, 0.40], "completed"),
        "b": (0.5, [0.18, float("nan")], "diverged"),
        "c": (0.01, [0.18, 0.19], "stopped"),
    }
    for trial_id, (lr, knn, status) in trials.items():
        folder = sweep / f"trial-{trial_id}"
        folder.mkdir()
        (folder / "params.json").write_text(json.dumps({"lr": lr}))
        rows = [
            {"epoch": e, "val_knn_acc": v, "loss": 5.0 - e, "status": "ok", "time_total_s": 3.0 + 2 * e,
             "training_iteration": e + 1, "config": {"lr": lr}, "done": False}
            for e, v in enumerate(knn)
        ]  # fmt: skip
        if trial_id == "a":  # a restart re-reported epoch 1: the curve keeps each epoch once
            rows.insert(2, {**rows[1], "val_knn_acc": 0.99})
            rows[2], rows[1] = rows[1], rows[2]
        (folder / "result.json").write_text("".join(json.dumps(r) + "\n" for r in rows))
        (folder / END_FILE).write_text(json.dumps({"status": status}))
    table = curves_table(curve_rows(load_sweep(str(sweep))))
    write_curves(str(sweep), table)
    read = pq.read_table(sweep / CURVES_FILE)
    assert read.schema.equals(table.schema) and _same_rows(read.to_pylist(), table.to_pylist())
    assert table.column_names[:7] == ["trial_id", "end_status", "config", "seed", "epoch", "seconds", "status"]
    assert "training_iteration" not in table.column_names and "done" not in table.column_names
    assert_curves_match_the_trials(sweep)
    a1 = [r for r in table.to_pylist() if r["trial_id"] == "a" and r["epoch"] == 1]
    assert [r["val_knn_acc"] for r in a1] == [0.30]  # the latest attempt's
