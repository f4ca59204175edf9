"""A sweep's compute budget in epochs: `sweep.budget_epochs` stops the sweep once its trials have trained that many
epochs in all, so that strategies with and without early stopping can be compared at equal compute.

Counted per trial as the last epoch it reported (epoch 0, the random network, is not training). When the sum reaches
the budget, Tune stops every trial and starts no new one; trials running at that moment report at most one more
epoch each, so a sweep overshoots by less than its concurrent trials. A resumed sweep counts what its trials' files
already hold, so the budget spans the interruption.
"""

from __future__ import annotations

from typing import Any

from ray.tune import Stopper

from ssl_tune.errors import UsageError


class EpochBudget(Stopper):
    def __init__(self, budget_epochs: int, sweep_dir: str) -> None:
        self.budget_epochs = budget_epochs
        self.sweep_dir = sweep_dir
        self._epochs: dict[str, int] | None = None  # trial id -> last epoch reported; None: not read yet

    def __getstate__(self) -> dict[str, Any]:  # pickled with the experiment: recount from the files on restore
        return {**self.__dict__, "_epochs": None}

    def _counts(self) -> dict[str, int]:
        if self._epochs is None:
            self._epochs = trained_epochs(self.sweep_dir)
        return self._epochs

    @property
    def spent(self) -> int:
        return sum(self._counts().values())

    def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
        counts = self._counts()
        counts[trial_id] = max(counts.get(trial_id, 0), int(result.get("epoch", 0)))
        return False

    def stop_all(self) -> bool:
        return self.spent >= self.budget_epochs


def trained_epochs(sweep_dir: str) -> dict[str, int]:
    """Each trial's last reported epoch, from its result.json (empty for a new sweep)."""
    from ssl_tune.tune.results import load_sweep

    try:
        return {t.trial_id: t.epochs_run for t in load_sweep(sweep_dir).trials}
    except UsageError:  # no sweep.yaml yet
        return {}
