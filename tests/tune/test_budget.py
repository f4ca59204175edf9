"""A sweep's strategy settings: the epoch budget's count and the Optuna sampler each `searcher` picks."""

from __future__ import annotations

import json
import pickle

import optuna
import yaml

from ssl_tune.tune.budget import Budget
from ssl_tune.tune.results import SWEEP_FILE
from ssl_tune.tune.searcher import optuna_sampler
from ssl_tune.tune.space import SearchSpace, SweepSettings
from tests.helpers import TINY_FIXED


def test_budget_counts_each_trials_last_epoch_and_stops_all_at_the_budget(tmp_path):
    budget = Budget(5, None, str(tmp_path / "new-sweep"))  # no sweep files yet: nothing spent
    for epoch in (0, 1, 2):
        assert budget("a", {"epoch": epoch}) is False  # never stops one trial by itself
    assert (budget.spent, budget.stop_all()) == (2, False)
    budget("b", {"epoch": 0})  # epoch 0 (the random network) is not training
    budget("b", {"epoch": 1})
    budget("a", {"epoch": 2})  # a repeated report (a restored trial) counts once
    assert (budget.spent, budget.stop_all()) == (3, False)
    budget("b", {"epoch": 2})
    budget("c", {"epoch": 1})
    assert (budget.spent, budget.stop_all()) == (5, True)
    # pickled with Tune's experiment state: it recounts from the sweep's files on restore, not from memory
    restored = pickle.loads(pickle.dumps(budget))
    assert restored.budget_epochs == 5 and restored.spent == 0


def test_a_restored_budget_counts_a_trial_that_started_but_never_reported_as_nothing_spent(tmp_path):
    """A sweep stopped (or read) while a trial has its folder but no report yet: that trial has spent nothing."""
    lr = {"lr": {"type": "uniform", "low": 0.1, "high": 1.0}}
    space = SearchSpace.model_validate({"fixed": TINY_FIXED, "params": lr})
    (tmp_path / SWEEP_FILE).write_text(yaml.safe_dump({"space": space.model_dump(mode="json"), "name": "s"}))
    for trial_id, rows in {"a": [{"epoch": 0}, {"epoch": 1, "time_total_s": 2.0}], "b": []}.items():
        (tmp_path / f"trial-{trial_id}").mkdir()
        (tmp_path / f"trial-{trial_id}" / "params.json").write_text(json.dumps({"lr": 0.5}))
        (tmp_path / f"trial-{trial_id}" / "result.json").write_text("".join(json.dumps(r) + "\n" for r in rows))
    budget = Budget(4, None, str(tmp_path))
    assert (budget.spent, budget.spent_seconds, budget.stop_all()) == (1, 2.0, False)
    budget("b", {"epoch": 0})  # its first report arrives
    assert budget.spent == 1


def test_budget_in_trial_seconds_counts_start_up_evaluation_and_training(tmp_path):
    """A trial's seconds: its process start-up (first report) and Tune's wall time at its last report."""
    budget = Budget(None, 30.0, str(tmp_path / "new-sweep"))
    budget("a", {"epoch": 0, "startup_process_s": 9.0, "time_total_s": 0.5})  # a new process, then epoch 0
    budget("a", {"epoch": 1, "time_total_s": 4.0})
    budget("b", {"epoch": 0, "time_total_s": 0.0})  # a reused process: its epoch 0 kept, no start-up
    budget("b", {"epoch": 1, "time_total_s": 3.0})
    assert (budget.spent_seconds, budget.stop_all()) == (16.0, False)
    budget("a", {"epoch": 2, "time_total_s": 18.0})
    assert (budget.spent_seconds, budget.spent, budget.stop_all()) == (30.0, 3, True)
    assert Budget(4, 1e6, str(tmp_path / "x")).stop_all() is False
    both = Budget(3, 1e6, str(tmp_path / "y"))  # either measure spent stops the sweep
    both("a", {"epoch": 3, "time_total_s": 1.0})
    assert both.stop_all()


def test_searcher_picks_optunas_sampler():
    random = optuna_sampler(SweepSettings(searcher="random", seed=3))
    tpe = optuna_sampler(SweepSettings(searcher="tpe", seed=3, tpe_startup_trials=4))
    assert isinstance(random, optuna.samplers.RandomSampler)
    assert isinstance(tpe, optuna.samplers.TPESampler) and tpe._n_startup_trials == 4
