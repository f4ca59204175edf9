"""A sweep's strategy settings: the epoch budget's count and the Optuna sampler each `searcher` picks."""

from __future__ import annotations

import pickle

import optuna

from ssl_tune.tune.budget import EpochBudget
from ssl_tune.tune.searcher import optuna_sampler
from ssl_tune.tune.space import SweepSettings


def test_budget_counts_each_trials_last_epoch_and_stops_all_at_the_budget(tmp_path):
    budget = EpochBudget(5, str(tmp_path / "new-sweep"))  # no sweep files yet: nothing spent
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


def test_searcher_picks_optunas_sampler():
    random = optuna_sampler(SweepSettings(searcher="random", seed=3))
    tpe = optuna_sampler(SweepSettings(searcher="tpe", seed=3, tpe_startup_trials=4))
    assert isinstance(random, optuna.samplers.RandomSampler)
    assert isinstance(tpe, optuna.samplers.TPESampler) and tpe._n_startup_trials == 4
