"""`ssl-tune bench-search`: the rank correlation, the equal budgets, the report, and the benchmark end to end in a
tiny setting on real CIFAR-10 images."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import yaml

from ssl_tune.cli import main
from ssl_tune.tools.bench_search import (
    STRATEGIES,
    SearchBenchReport,
    SearchBenchRequest,
    StrategyResult,
    _sweep_settings,
    asha_rungs,
    format_report,
    run_search_bench,
    rung_correlation,
    spearman,
)
from ssl_tune.tune.budget import Budget
from ssl_tune.tune.results import SweepRecord, TrialRecord, load_sweep
from ssl_tune.tune.space import SearchSpace
from tests.helpers import TINY_FIXED
from tests.tune.test_curves import assert_curves_match_the_trials


def test_spearman_ranks_with_ties():
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    # ties take their average rank: ranks (1.5, 1.5, 3, 4) against (1, 2, 3, 4) -> Pearson of the ranks
    assert spearman([5, 5, 7, 9], [1, 2, 3, 4]) == pytest.approx(0.9486833, abs=1e-6)
    assert math.isnan(spearman([1, 2], [2, 1]))  # too few pairs
    assert math.isnan(spearman([3, 3, 3], [1, 2, 3]))  # a constant has no ranking


def _space(**sections) -> SearchSpace:
    return SearchSpace.model_validate({"fixed": dict(TINY_FIXED), **sections})


def test_asha_rungs_lie_below_the_last_epoch():
    assert asha_rungs(_space(asha={"grace_period": 2, "reduction_factor": 2}), 8) == [2, 4]
    assert asha_rungs(_space(asha={"grace_period": 1, "reduction_factor": 3}), 10) == [1, 3, 9]
    assert asha_rungs(_space(asha={"grace_period": 4, "reduction_factor": 2}), 4) == []


def test_every_strategy_gets_the_same_budget_and_trials_to_spend_it():
    for name, strategy in STRATEGIES.items():
        settings = _sweep_settings(strategy, trials=6, max_epochs=8)
        assert settings["budget_epochs"] == 48 and "budget_seconds" not in settings, name
        assert settings["searcher"] == strategy.searcher and settings["early_stopping"] == strategy.early_stopping
        # every strategy may top up: enough trials to spend the budget if each ended after one epoch
        assert settings["num_samples"] == 48, name
        seconds = _sweep_settings(strategy, trials=6, max_epochs=8, budget_seconds=600.0)
        assert seconds["budget_seconds"] == 600.0 and "budget_epochs" not in seconds and seconds["num_samples"] == 96


def _trial(trial_id: str, values: list[float]) -> TrialRecord:
    rows = [{"epoch": e, "val_knn_acc": v} for e, v in enumerate(values)]
    return TrialRecord(trial_id, f"/x/trial-{trial_id}", {"name": trial_id}, results=rows)


def test_rung_correlation_uses_only_trials_run_to_the_end_without_early_stopping():
    full = _space(asha={"grace_period": 2, "reduction_factor": 2}, sweep={"early_stopping": "none"})
    asha = _space(asha={"grace_period": 2, "reduction_factor": 2})
    # epoch 1 ranks the trials as epoch 4 does; epoch 2 (the only rung) in reverse; epoch 3 ties them all
    trials = [
        _trial("a", [0.1, 0.20, 0.40, 0.5, 0.30]),
        _trial("b", [0.1, 0.30, 0.30, 0.5, 0.40]),
        _trial("c", [0.1, 0.40, 0.20, 0.5, 0.50]),
        _trial("short", [0.1, 0.90, 0.10]),  # stopped at epoch 2: not run to the end, left out
    ]
    twin = _trial("a2", [0.1, 0.20, 0.40, 0.5, 0.30])  # a's config drawn by a second sweep: counted once
    twin.params = trials[0].params
    records = [
        SweepRecord("/x/full", full, None, trials),
        SweepRecord("/x/full2", full, None, [twin]),
        # ASHA's own survivors would bias the measure: its sweep is left out
        SweepRecord("/x/asha", asha, None, [_trial("d", [0.1, 0.9, 0.9, 0.9, 0.1])]),
    ]
    rungs = rung_correlation(records, asha, max_epochs=4)
    assert [r["epoch"] for r in rungs] == [1, 2, 3]  # every epoch before the last, the rungs marked
    assert rungs[0] == {"epoch": 1, "rung": False, "trials": 3, "spearman": pytest.approx(1.0)}
    assert rungs[1] == {"epoch": 2, "rung": True, "trials": 3, "spearman": pytest.approx(-1.0)}
    assert rungs[2] == {"epoch": 3, "rung": False, "trials": 3, "spearman": None}  # all tied: undefined


def _report(default_knn: list[float], asha_knn: list[float], random_knn: list[float]) -> SearchBenchReport:
    seeds, probe = list(range(1, len(default_knn) + 1)), [0.3] * len(default_knn)
    rows = [
        StrategyResult("default", "(a) default recipe", test_knn=default_knn, seeds=seeds, probe_top1=probe),
        StrategyResult("random", "(b) random", 6, 48, 310.0, 0.31, test_knn=random_knn, seeds=seeds, probe_top1=probe),
        StrategyResult(
            "tpe_asha", "(d) TPE + ASHA", 20, 47, 355.4, 0.33, test_knn=asha_knn, seeds=seeds, probe_top1=probe
        ),
    ]
    correlation = [{"epoch": 2, "rung": True, "trials": 6, "spearman": 0.5}]
    return SearchBenchReport("simsiam", "cpu", 48, None, 8, len(seeds), rows, correlation, 60.0)


def test_report_checks_the_targets_on_the_paired_interval():
    """Differences (d) - (a) per seed: 6, 4, 5, 5 points (mean 5.00, sd 0.8165, t(0.975, 3) 3.1824: [+3.70, +6.30]);
    (d) - (b): 0, -1, 1, 0 points ([-1.30, +1.30])."""
    met = format_report(_report([0.25, 0.27, 0.26, 0.24], [0.31, 0.31, 0.31, 0.29], [0.31, 0.32, 0.30, 0.29]))
    paired = "+5.00 points, 95 % CI [+3.70, +6.30] over 4 paired seeds: better"
    assert f"| (d) TPE + ASHA | 20 | 47 | 355 | 33.00 % | 30.50 ± 1.00 % | {paired} |" in met
    assert "Budget per strategy: 48 epochs (8-epoch trials)" in met
    header, rule = [line for line in met.splitlines() if line.startswith("| strategy") or line.startswith("|---")][:2]
    assert header.count("|") == rule.count("|")
    assert f"target (d) >= (a) + 3 points: {paired} -> met" in met
    assert "target (d) not below (b): +0.00 points, 95 % CI [-1.30, +1.30] over 4 paired seeds: within noise" in met
    assert "-> too wide to decide" in met.split("target (d) not below (b)")[1].splitlines()[0]
    assert "too small to separate" not in met
    assert "| 2 | yes | 6 | 0.50 |" in met
    # the same means with seeds that disagree: the gain of 3.5 points no longer meets the target
    noisy = format_report(_report([0.25, 0.27], [0.32, 0.27], [0.29, 0.29]))
    assert "target (d) >= (a) + 3 points: +3.50 points, 95 % CI" in noisy
    assert "within noise -> too wide to decide" in noisy
    assert "The budget is too small to separate the strategies" in noisy
    assert "-> not met" in format_report(_report([0.25, 0.27, 0.26], [0.25, 0.27, 0.26], [0.25, 0.27, 0.26]))


def test_bad_requests_exit_2_with_one_line(tmp_path, capsys, cifar_dir):
    cases = [
        ["--method", "nope"],
        ["--method", "simsiam", "--strategies", "random,grid"],
        ["--method", "simsiam", "--budget-trials", "0"],
        ["--method", "simsiam", "--budget-seconds", "0"],
        ["--method", "simsiam", "--budget-trials", "2", "--budget-seconds", "600"],  # one measure
        ["--method", "simsiam", "--set", "epochs"],
    ]
    for extra in cases:
        assert main(["bench-search", "--out", str(tmp_path / "out"), "--data-dir", str(cifar_dir), *extra]) == 2, extra
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert not (tmp_path / "out").exists()


TINY_SETS = (
    "train_subset=384",
    "val_size=128",
    "test_subset=256",
    "image_size=16",
    "epochs=3",
    "batch_size=64",
    "method_params.proj_hidden_dim=64",
    "method_params.proj_output_dim=64",
    "method_params.pred_hidden_dim=16",
)


@pytest.mark.slow
def test_benchmark_end_to_end_at_equal_budgets(tmp_path, cifar_dir):
    """2 strategies x a budget of 3 trials x 3 epochs on real CIFAR-10 images, ASHA at epochs 1 and 2 keeping a
    third: it prunes, and tops up with more trials. 1 confirm seed. The table is written, and each strategy's spend
    is the budget's within one trial (it fails if ASHA's extra trials went uncounted, or a strategy underspent)."""
    space = yaml.safe_load(Path("search_spaces/cpu/simsiam.yaml").read_text())
    space["asha"] = {"grace_period": 1, "reduction_factor": 3}
    (tmp_path / "simsiam.yaml").write_text(yaml.safe_dump(space))
    request = SearchBenchRequest(
        method="simsiam",
        out=str(tmp_path / "bench"),
        data_dir=str(cifar_dir),
        strategies=("random", "tpe_asha"),
        budget_trials=3,
        seeds=1,
        overrides=TINY_SETS,
        space=str(tmp_path / "simsiam.yaml"),
    )
    report = run_search_bench(request)
    rows = {r.name: r for r in report.rows}
    assert list(rows) == ["default", "random", "tpe_asha"]
    assert report.budget_epochs == 9 and report.max_epochs == 3
    spent = {}
    for name in ("random", "tpe_asha"):
        sweep = load_sweep(str(tmp_path / "bench" / "sweeps" / f"simsiam-{name}"))
        assert rows[name].search_epochs == sweep.trained_epochs
        assert rows[name].search_seconds == sweep.trial_seconds > 0
        assert abs(sweep.trained_epochs - report.budget_epochs) <= report.max_epochs, name
        spent[name] = sweep.trained_epochs

        # the selected trial is the sweep's best on validation, and its confirm ran on the test split
        assert rows[name].best_val == sweep.best().value
        assert len(rows[name].test_knn) == 1 and 0.0 < rows[name].test_knn[0] <= 1.0
        assert sweep.space.sweep.searcher == STRATEGIES[name].searcher
        # a restored budget counts the epochs already in the sweep's files
        assert Budget(report.budget_epochs, None, sweep.sweep_dir).spent == sweep.trained_epochs
        assert_curves_match_the_trials(Path(sweep.sweep_dir), tmp_path / "bench" / "curves.parquet", name)
    asha_dir = tmp_path / "bench" / "sweeps" / "simsiam-tpe_asha"
    pruned = {t: e for t, e in json.loads((asha_dir / "asha_state.json").read_text())["stopped"].items() if e < 3}
    assert pruned, "ASHA stopped no trial before its last epoch: the test cannot tell its extra trials apart"
    assert abs(spent["random"] - spent["tpe_asha"]) <= report.max_epochs
    assert rows["tpe_asha"].trials > 3  # topped up: its pruned trials left budget for more
    assert len(rows["default"].test_knn) == 1
    table = (tmp_path / "bench" / "search_quality.md").read_text()
    asha_row = f"| (d) TPE + ASHA | {rows['tpe_asha'].trials} | {spent['tpe_asha']} | "
    assert "| (a) default recipe |" in table and asha_row in table and "trial-seconds" in table
    saved = json.loads((tmp_path / "bench" / "search_quality.json").read_text())
    assert [r["name"] for r in saved["rows"]] == ["default", "random", "tpe_asha"]

    # run again: every stage is kept (no new trial, no Ray cluster), and the same report comes back
    trial_dirs = sorted(p.name for p in (tmp_path / "bench" / "sweeps").glob("*/trial-*"))
    again = run_search_bench(request)
    assert [r.test_knn for r in again.rows] == [r.test_knn for r in report.rows]
    assert sorted(p.name for p in (tmp_path / "bench" / "sweeps").glob("*/trial-*")) == trial_dirs
    # other settings in the same folder are refused
    other = SearchBenchRequest(**{**request.__dict__, "seeds": 2})
    with pytest.raises(Exception, match="other settings"):
        run_search_bench(other)
    assert Path(request.out).is_dir()


@pytest.mark.slow
def test_the_shifted_preset_runs_end_to_end_and_reports_intervals(tmp_path, cifar_dir):
    """The `shifted` preset (grey 16 px CIFAR-10) in a tiny setting: 2 strategies x 2 one-epoch trials, 2 confirm
    seeds. Its trials train on grey 16 px images, and its table carries the paired intervals against the default."""
    request = SearchBenchRequest(
        method="simclr",
        out=str(tmp_path / "bench"),
        preset="shifted",
        data_dir=str(cifar_dir),
        strategies=("random", "tpe"),
        budget_trials=2,
        seeds=2,
        overrides=(
            "train_subset=384",
            "val_size=128",
            "test_subset=256",
            "epochs=1",
            "batch_size=64",
            "method_params.proj_hidden_dim=64",
            "method_params.proj_output_dim=32",
        ),
    )
    report = run_search_bench(request)
    assert [r.name for r in report.rows] == ["default", "random", "tpe"]
    sweep = load_sweep(str(tmp_path / "bench" / "sweeps" / "simclr-random"))
    assert sweep.space.fixed["grayscale"] is True and sweep.space.fixed["image_size"] == 16
    assert sweep.trained_epochs == 2 and all(len(r.test_knn) == 2 for r in report.rows)
    table = (tmp_path / "bench" / "search_quality.md").read_text()
    assert "# Search quality: simclr, preset shifted" in table
    for label in ("(b) random search", "(c) TPE"):
        row = next(line for line in table.splitlines() if line.startswith(f"| {label} |"))
        assert "95 % CI [" in row and "over 2 paired seeds" in row, row
