"""`ssl-tune bench-sweep`: the timing read from a sweep's files, and the benchmark end to end in a tiny setting."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from ssl_tune.cli import main
from ssl_tune.errors import UsageError
from ssl_tune.tools.bench_sweep import BenchSweepRequest, run_bench_sweep, sweep_timing
from ssl_tune.tune.results import END_FILE, SESSIONS_FILE, SWEEP_FILE, load_sweep
from ssl_tune.tune.space import SearchSpace
from tests.helpers import TINY_FIXED, write_space


def _sweep(root: Path, trials: dict[str, tuple[float, float, list[dict]]], sessions: list[dict]) -> Path:
    """A finished sweep's files: per trial (started, first_result, result rows), and the driver's sessions."""
    sweep = root / "sweep"
    sweep.mkdir()
    space = SearchSpace.model_validate({"fixed": TINY_FIXED})
    (sweep / SWEEP_FILE).write_text(yaml.safe_dump({"space": space.model_dump(mode="json"), "name": "sweep"}))
    (sweep / SESSIONS_FILE).write_text(json.dumps(sessions))
    for trial_id, (started, first, rows) in trials.items():
        folder = sweep / f"trial-{trial_id}"
        folder.mkdir()
        (folder / "params.json").write_text("{}")
        (folder / "result.json").write_text("".join(json.dumps(r) + "\n" for r in rows))
        end = {"status": "completed", "started": started, "first_result": first, "ended": first + 10}
        (folder / END_FILE).write_text(json.dumps(end))
    return sweep


def test_timing_is_computed_from_the_sweep_files(tmp_path):
    fresh = {"epoch": 0, "epoch_time_s": 1.0, "eval_time_s": 1.0, "startup_process_s": 4.0, "startup_data_s": 0.5}
    reused = {"epoch": 0, "epoch_time_s": 0.0, "eval_time_s": 0.0, "startup_process_s": 0.0}
    sweep = _sweep(
        tmp_path,
        {
            "a": (100.0, 103.0, [fresh, {"epoch": 1, "epoch_time_s": 6.0}]),
            "b": (100.0, 105.0, [fresh, {"epoch": 1, "epoch_time_s": 8.0}, {"epoch": 2, "epoch_time_s": 8.0}]),
            "c": (120.0, 120.5, [reused, {"epoch": 1, "epoch_time_s": 6.0}]),
        },
        # a resumed sweep: two driver runs, 20 s + 10 s; 2 slots
        [{"started": 90.0, "ended": 110.0, "slots": 2}, {"started": 115.0, "ended": 125.0, "slots": 2}],
    )
    t = sweep_timing(str(sweep), "ours")
    assert (t.trials, t.slots, t.wall_s) == (3, 2, 30.0)
    assert t.work_s == pytest.approx(1 + 6 + 1 + 8 + 8 + 0 + 6)
    assert t.efficiency == pytest.approx(30.0 / (30.0 * 2))
    # a trial that began a process also waited for its spawn and imports (4 s)
    assert (t.startup_min_s, t.startup_median_s, t.startup_max_s) == (0.5, 7.0, 9.0)
    assert t.trials_per_hour == pytest.approx(3 / 30 * 3600)
    assert (t.first_process_s, t.first_data_s, t.first_epoch0_s) == (4.0, 0.5, 1.0)
    assert t.reused_startup_median_s == 0.5
    baseline = sweep_timing(str(sweep), "Ray Train per trial")  # there the workers' start is in the interval
    assert (baseline.startup_min_s, baseline.startup_max_s) == (0.5, 5.0)


def test_a_sweep_without_sessions_is_refused(tmp_path):
    sweep = _sweep(tmp_path, {"a": (0.0, 1.0, [{"epoch": 0, "epoch_time_s": 1.0}])}, [])
    (sweep / SESSIONS_FILE).unlink()
    with pytest.raises(UsageError, match=r"sessions\.json"):
        sweep_timing(str(sweep))


def test_bench_sweep_bad_input_is_one_line_and_exit_2(tmp_path, capsys):
    assert main(["bench-sweep", "--space", str(tmp_path / "missing.yaml"), "--no-baseline"]) == 2
    assert main(["bench-sweep", "--num-samples", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all(line.startswith("ssl-tune bench-sweep: error:") for line in err)


@pytest.mark.slow
def test_bench_sweep_runs_a_tiny_sweep_and_its_numbers_match_its_files(tmp_path):
    space = write_space(tmp_path / "space.yaml", fixed={"epochs": 1}, sweep={"cpus_per_worker": 1})
    store = tmp_path / "store"
    (timing,) = run_bench_sweep(BenchSweepRequest(space=str(space), num_samples=3, baseline=False, storage=str(store)))
    (sweep_dir,) = store.iterdir()
    sweep = load_sweep(str(sweep_dir))
    assert timing.trials == len(sweep.trials) == 3 and timing.slots == 2
    assert timing.work_s == pytest.approx(sum(r["epoch_time_s"] for t in sweep.trials for r in t.results))
    assert 0 < timing.efficiency <= 1 and timing.startup_min_s > 0
    assert timing.command_s > timing.wall_s > timing.startup_max_s
    # two processes ran three trials: one reused its process, its dataset and its epoch 0
    pids = {t.results[0]["pid"] for t in sweep.trials}
    assert len(pids) == 2
    first_rows = [t.results[0] for t in sweep.trials]
    assert sorted(r["startup_process_s"] > 0 for r in first_rows) == [False, True, True]
