"""What a sweep prints while it runs: one line per trial event, and a short summary every 30 s.

    [  12s] trial 3f2a9c01 started  lr=0.52 augment.crop_min_scale=0.43
    [  31s] trial 3f2a9c01 epoch 4 (rung)  val_knn_acc 31.25%
    [  33s] trial 3f2a9c01 stopped at epoch 4  best val_knn_acc 31.25%
    [  60s] 2 running, 5 of 8 done, best so far val_knn_acc 41.02% (trial 77b1e0aa)

Ray's own status tables come back with `--verbose`. `ConfirmEvents` does the same for `ssl-tune confirm`'s runs.
"""

from __future__ import annotations

import math
import time
from contextlib import suppress
from typing import Any

import cloudpickle
from ray.tune import Callback
from ray.tune.experiment import Trial

from ssl_tune.errors import first_line
from ssl_tune.metrics import EPOCH, STOP_REASON, format_metric
from ssl_tune.tune.recorder import trial_status


def error_line(trial: Trial) -> str:
    """The first line of the error that ended `trial`, as its code raised it (inside Ray's task and Train
    wrappers, whose own messages carry tracebacks). Read from the trial's local folder, where Tune has just
    written it."""
    err: BaseException | None = None
    with suppress(Exception), open(trial.pickled_error_file, "rb") as f:  # none, or unreadable: no reason
        err = cloudpickle.load(f)
    while err is not None and (inner := getattr(err, "cause", None) or err.__cause__) is not None:
        err = inner
    return f"{type(err).__name__}: {first_line(err)}" if err is not None else "see its error.txt"


def end_reason(trial: Trial, failed: bool, last: dict[str, Any]) -> str:
    """': why' a trial ended, for its end line: its error, or the one line its run stopped with (out of memory)."""
    if failed:
        return f": {error_line(trial)}"
    return f": {last[STOP_REASON]}" if STOP_REASON in last else ""


def _short(params: dict[str, Any]) -> str:
    return " ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items())


class TrialEvents(Callback):
    """Prints trial starts, rung results, ends and errors, and a periodic summary (see the module docstring)."""

    def __init__(self, metric: str, rungs: list[int], max_epochs: int, total: int, every_s: float = 30.0) -> None:
        """`rungs`: the epochs at which ASHA compares trials (`ResumableASHA.rung_epochs`)."""
        self.metric, self.rungs, self.max_epochs, self.total = metric, set(rungs), max_epochs, total
        self.every_s = every_s
        self._start = time.monotonic()
        self._last_summary = self._start
        self._value: dict[str, float] = {}  # trial id -> its value: the selection metric at its latest epoch

    def setup(self, **info: Any) -> None:  # the experiment starts (again, on --resume)
        self._start = self._last_summary = time.monotonic()

    def _print(self, text: str) -> None:
        print(f"[{time.monotonic() - self._start:5.0f}s] {text}", flush=True)

    def on_trial_start(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        self._print(f"trial {trial.trial_id} started  {_short(trial.config)}")

    def on_trial_result(self, iteration: int, trials: list[Trial], trial: Trial, result: dict, **info: Any) -> None:
        epoch, value = result.get(EPOCH), result.get(self.metric)
        if isinstance(value, float) and math.isfinite(value) and isinstance(epoch, int) and epoch > 0:
            self._value[trial.trial_id] = value  # a trial's value is its latest epoch's (TrialRecord.value)
            if epoch in self.rungs and epoch < self.max_epochs:
                self._print(f"trial {trial.trial_id} epoch {epoch} (rung)  {format_metric(self.metric, value)}")
        if time.monotonic() - self._last_summary >= self.every_s:
            self._summary(trials)

    def on_trial_complete(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        self._end(trial, failed=False)

    def on_trial_error(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        self._end(trial, failed=True)

    def _end(self, trial: Trial, failed: bool) -> None:
        last = trial.last_result or {}
        status = trial_status(last, failed, self.max_epochs)
        best = self._value.get(trial.trial_id)
        shown = f"  {format_metric(self.metric, best)}" if best is not None else ""
        why = end_reason(trial, failed, last)
        self._print(f"trial {trial.trial_id} {status.value} at epoch {last.get(EPOCH, 0)}{shown}{why}")

    def _summary(self, trials: list[Trial]) -> None:
        self._last_summary = time.monotonic()
        # counted from Tune's trials, so that trials finished before a --resume count as done
        running = sum(t.status == Trial.RUNNING for t in trials)
        done = sum(t.status in (Trial.TERMINATED, Trial.ERROR) for t in trials)
        text = f"{running} running, {done} of {self.total} done"
        if self._value:
            leader = max(self._value, key=self._value.__getitem__)
            text += f", best so far {format_metric(self.metric, self._value[leader])} (trial {leader})"
        self._print(text)


class ConfirmEvents(TrialEvents):
    """What `ssl-tune confirm` prints: each run's start and end (with its test-split numbers), and a summary.

    [    3s] run 0 started  (trial 3f2a9c01, seed 2)
    [   95s] run 0 completed at epoch 20  test kNN 41.20%, probe top-1 45.10%
    [  120s] 1 running, 1 of 4 done
    """

    def __init__(self, names: list[str], max_epochs: int, every_s: float = 30.0) -> None:
        """`names[i]`: what run i (its trial's `run` config) confirms, e.g. `trial 3f2a9c01, seed 2`."""
        from ssl_tune.tune.worker import EVAL_PREFIX

        super().__init__(metric="", rungs=[], max_epochs=max_epochs, total=len(names), every_s=every_s)
        self.names = names
        self.shown = ((f"{EVAL_PREFIX}test_knn_acc", "test kNN"), (f"{EVAL_PREFIX}probe_top1", "probe top-1"))

    def _name(self, trial: Trial) -> str:
        return f"run {trial.config.get('run')}"

    def on_trial_start(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        run = trial.config.get("run")
        what = f"  ({self.names[run]})" if isinstance(run, int) and 0 <= run < len(self.names) else ""
        self._print(f"{self._name(trial)} started{what}")

    def on_trial_result(self, iteration: int, trials: list[Trial], trial: Trial, result: dict, **info: Any) -> None:
        if time.monotonic() - self._last_summary >= self.every_s:
            self._summary(trials)

    def _end(self, trial: Trial, failed: bool) -> None:
        last = trial.last_result or {}
        status = trial_status(last, failed, self.max_epochs)
        numbers = [f"{label} {100 * v:.2f}%" for key, label in self.shown if isinstance(v := last.get(key), float)]
        shown = f"  {', '.join(numbers)}" if numbers else ""
        why = end_reason(trial, failed, last)
        self._print(f"{self._name(trial)} {status.value} at epoch {last.get(EPOCH, 0)}{shown}{why}")
