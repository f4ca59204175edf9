"""The sweep's Optuna searcher: Ray's OptunaSearch, with diverged trials told to Optuna as failed."""

from __future__ import annotations

import math
from typing import Any

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
