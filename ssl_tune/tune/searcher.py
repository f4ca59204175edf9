"""The sweep's Optuna searcher: Ray's OptunaSearch, with diverged and orphaned trials told to Optuna as failed."""

from __future__ import annotations

import math
from typing import Any

from optuna.trial import TrialState
from ray.tune.search.optuna import OptunaSearch


class SSLOptunaSearch(OptunaSearch):
    """Tells Optuna FAIL for a trial whose last metric is NaN (diverged), so the sampler steers away.

    Ray's OptunaSearch would tell COMPLETE with NaN, which Optuna rejects, leaving the trial RUNNING.
    """

    def on_trial_complete(self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False) -> None:
        value = (result or {}).get(self._metric)
        if isinstance(value, float) and not math.isfinite(value):
            result, error = None, True
        super().on_trial_complete(trial_id, result=result, error=error)

    def restore(self, checkpoint_path: str) -> None:
        """On --resume: an Optuna trial asked for after the killed driver's last snapshot of the sweep belongs to
        no Tune trial and would stay RUNNING in the study forever: tell Optuna it failed."""
        super().restore(checkpoint_path)
        known = {trial.number for trial in self._ot_trials.values()}
        for orphan in self._ot_study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            if orphan.number not in known:
                self._ot_study.tell(orphan.number, state=TrialState.FAIL)
