"""A sweep's compute budget: `sweep.budget_epochs` (epochs trained) and/or `sweep.budget_seconds` (trial-seconds)
stop the sweep once its trials have spent that much in all, so that strategies with and without early stopping
can be compared at equal compute.

Epochs are counted per trial as the last epoch it reported (epoch 0, the random network, is not training).
Trial-seconds count everything a trial costs: its process start-up when it starts one (`startup_process_s`), data
loading and model building, the epoch-0 and every later evaluation, and training: its first report's
`startup_process_s` plus its last report's `time_total_s` (Tune's wall time of the trial, from the trainable's
start). When a sum reaches its budget, Tune stops every trial and starts no new one; trials running at that
moment report at most one more epoch each, so a sweep overshoots by less than an epoch per concurrent trial.
A resumed sweep counts what its trials' files already hold, so the budget spans the interruption.
"""

from __future__ import annotations

from typing import Any

from ray.tune import Stopper

from ssl_tune.errors import UsageError
from ssl_tune.metrics import EPOCH
from ssl_tune.tune.results import STARTUP_KEY, TOTAL_KEY, last_epoch, load_sweep, trial_seconds


class Budget(Stopper):
    """Stops the whole sweep once `budget_epochs` epochs or `budget_seconds` trial-seconds are spent (either)."""

    budget_seconds: float | None = None  # defaults for a budget pickled before seconds were counted
    _rows: dict[str, list[dict[str, Any]]] | None = None

    def __init__(self, budget_epochs: int | None, budget_seconds: float | None, sweep_dir: str) -> None:
        self.budget_epochs = budget_epochs
        self.budget_seconds = budget_seconds
        self.sweep_dir = sweep_dir
        self._rows: dict[str, list[dict[str, Any]]] | None = None  # trial id -> [first, last] report; None: unread

    def __getstate__(self) -> dict[str, Any]:  # pickled with the experiment: recount from the files on restore
        return {**self.__dict__, "_rows": None}

    def _reports(self) -> dict[str, list[dict[str, Any]]]:
        if self._rows is None:
            self._rows = spent_reports(self.sweep_dir)
        return self._rows

    @property
    def spent(self) -> int:
        """Epochs trained, summed over the trials."""
        return sum(last_epoch(rows) for rows in self._reports().values())

    @property
    def spent_seconds(self) -> float:
        """Trial-seconds, summed over the trials."""
        return sum(trial_seconds(rows) for rows in self._reports().values())

    def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
        rows = self._reports().setdefault(trial_id, [])
        fields = {k: result[k] for k in (EPOCH, STARTUP_KEY, TOTAL_KEY) if k in result}
        if not rows:
            rows.append(fields)
        elif int(fields.get(EPOCH, 0)) >= last_epoch(rows):
            rows[1:] = [fields]  # the first report (its start-up) and the latest
        return False

    def stop_all(self) -> bool:
        epochs_spent = self.budget_epochs is not None and self.spent >= self.budget_epochs
        return epochs_spent or (self.budget_seconds is not None and self.spent_seconds >= self.budget_seconds)


EpochBudget = Budget  # the name a sweep pickled before trial-seconds were counted


def spent_reports(sweep_dir: str) -> dict[str, list[dict[str, Any]]]:
    """Each trial's reports from its result.json (empty for a new sweep)."""
    try:
        return {t.trial_id: list(t.results) for t in load_sweep(sweep_dir).trials}
    except UsageError:  # no sweep.yaml yet
        return {}
