"""The Tune side of tracking: a callback that makes each trial of a sweep (or run of a confirm) a run in each
tracker of `--log` (`ssl_tune.tracking`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ray.tune.experiment import Trial
from ray.tune.logger import LoggerCallback

from ssl_tune.metrics import EPOCH, TrialStatus, finite
from ssl_tune.tracking import RunIdentity, TrackedRun, TrackingSettings, open_runs, write_record
from ssl_tune.tune.recorder import scalar_items, trial_dirname, trial_status
from ssl_tune.tune.worker import EVAL_PREFIX


def tracked_metrics(result: dict[str, Any]) -> dict[str, float]:
    """What a tracker logs of a Tune result: the per-epoch scalars TensorBoard shows, and the final test-split
    numbers (`eval_*`) of a confirm run."""
    evals = {k: float(v) for k, v in result.items() if k.startswith(EVAL_PREFIX) and finite(v) is not None}
    return scalar_items(result) | evals


class TrialRuns(LoggerCallback):
    """Each trial is a run in each tracker, in the experiment (MLflow) / group (W&B) named after the sweep, whose
    whereabouts go to the trial folder's tracking.json. A resumed trial's runs are found again (`open_runs`).

    Its params are the sweep's `fixed` settings and the trial's sampled ones, or for `confirm` (`configs` given)
    the config at the trial's `run` index; its metrics are `tracked_metrics` at step = epoch; `end_state` says
    how it ended."""

    def __init__(
        self,
        settings: TrackingSettings,
        experiment: str,
        stage: str,
        fixed: dict[str, Any],
        max_epochs: int,
        configs: list[dict[str, Any]] | None = None,
    ) -> None:
        self.settings, self.experiment, self.stage, self.fixed = settings, experiment, stage, fixed
        self.max_epochs, self.configs = max_epochs, configs
        self._runs: dict[Trial, list[TrackedRun]] = {}

    def __getstate__(self) -> dict[str, Any]:  # pickled with the experiment: no open runs
        return {k: v for k, v in self.__dict__.items() if k != "_runs"} | {"_runs": {}}

    def log_trial_start(self, trial: Trial) -> None:
        if trial in self._runs:
            return
        params = self.configs[trial.config["run"]] if self.configs is not None else {**self.fixed, **trial.config}
        trial.init_local_path()
        folder = Path(trial.local_path)
        identity = RunIdentity(self.experiment, trial_dirname(trial), trial.trial_id, self.stage)
        runs = self._runs[trial] = open_runs(self.settings, identity, params, folder=folder, quiet=True)
        write_record(folder, runs)

    def log_trial_result(self, iteration: int, trial: Trial, result: dict[str, Any]) -> None:
        if trial not in self._runs:
            self.log_trial_start(trial)
        values, epoch = tracked_metrics(result), int(result.get(EPOCH, iteration))
        for run in self._runs[trial]:
            run.log_metrics(values, step=epoch)

    def log_trial_end(self, trial: Trial, failed: bool = False) -> None:
        if trial not in self._runs:
            self.log_trial_start(trial)
        state = trial_status(trial.last_result or {}, failed, self.max_epochs).value
        for run in self._runs.pop(trial):
            run.end(state)

    def on_experiment_end(self, trials: list[Trial], **info: Any) -> None:
        for trial in list(self._runs):  # unfinished (an interrupted sweep) until a resume reopens them
            for run in self._runs.pop(trial):
                run.end(TrialStatus.UNFINISHED.value)


def tune_callbacks(settings: TrackingSettings, *args: Any, **kwargs: Any) -> list[TrialRuns]:
    """The Tune callbacks that make each trial a run in each tracker of `settings`: one `TrialRuns(settings,
    *args, **kwargs)`, or none without a tracker."""
    return [TrialRuns(settings, *args, **kwargs)] if settings.trackers else []
