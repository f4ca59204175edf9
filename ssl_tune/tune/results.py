"""Reading a sweep directory back: the space it ran, and every trial's params, epochs and end state.

Only files are read (no Ray): Tune's params.json / result.json per trial directory, ssl-tune's
sweep.yaml, and the `trial_end.json` marker that `TrialRecorder` writes when a trial ends.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

import yaml

from ssl_tune.errors import UsageError
from ssl_tune.metrics import (
    EPOCH,
    KNN_QUERIES,
    SELECTION_METRIC,
    STATUS,
    TrialStatus,
    finite,
    format_metric,
    is_accuracy,
    scaled,
)
from ssl_tune.storage import check_bucket, exists, filesystem, join, read_text, split
from ssl_tune.tune.space import SearchSpace, is_point

SWEEP_FILE = "sweep.yaml"
END_FILE = "trial_end.json"
SESSIONS_FILE = "sessions.json"  # each run of the sweep driver (a resume adds one): when, and how many trial slots
TRIAL_PREFIX = "trial-"
STARTUP_KEY = "startup_process_s"  # a trial that started its process: the spawn and imports before Tune's clock
TOTAL_KEY = "time_total_s"  # Tune's: the trial's wall time up to a report, from the trainable's start


@dataclass
class TrialRecord:
    trial_id: str
    trial_dir: str
    params: dict[str, Any]
    metric: str = SELECTION_METRIC  # the sweep's selection metric (one of SELECTION_METRICS)
    results: list[dict[str, Any]] = field(default_factory=list)  # Tune's result.json rows
    end_status: TrialStatus | None = None  # None: no end recorded
    times: dict[str, float] = field(default_factory=dict)  # driver clock: started, first_result, ended

    @property
    def status(self) -> TrialStatus:
        return self.end_status or TrialStatus.UNFINISHED

    @property
    def epochs_run(self) -> int:
        return last_epoch(self.results)

    def peak(self) -> tuple[int, float]:
        """The trained epoch with the highest selection metric, and that value (shown beside the trial's value;
        never used to select: a maximum over epochs is biased upward). Raises ValueError if it has none."""
        rows = [
            (int(r[EPOCH]), v)
            for r in self.results
            if int(r.get(EPOCH, 0)) > 0 and (v := finite(r.get(self.metric))) is not None
        ]
        if not rows:
            raise ValueError(f"trial {self.trial_id} has no trained epoch")
        return max(rows, key=lambda row: row[1])

    def value_at(self, epoch: int) -> float | None:
        """The selection metric at `epoch` (0: the random network), None where the trial has no such row."""
        return next((finite(r.get(self.metric)) for r in self.results if int(r.get("epoch", -1)) == epoch), None)

    @property
    def seconds(self) -> float:
        """The trial-seconds it spent: start-up, evaluation and training (`trial_seconds`)."""
        return trial_seconds(self.results)

    @property
    def last_trained(self) -> dict[str, Any] | None:
        """The row of the trial's last trained epoch (epoch 0, the random network, is a baseline, never chosen)."""
        return next((r for r in reversed(self.results) if int(r.get(EPOCH, 0)) > 0), None)

    @property
    def value(self) -> float | None:
        """The trial's value, the one every part of a sweep uses: the selection metric at its last trained epoch
        (None if it has none, or it is not finite). Optuna is told it, ASHA compares it at the rungs, and the
        summary, `export` and `confirm` rank by it; its checkpoint is the trial's last (`checkpoint`). The last
        epoch, not the best one: a recipe's schedule ends there, it is the model `confirm` retrains, and a
        maximum over epochs on the same validation images would be biased upward."""
        row = self.last_trained
        return finite(row.get(self.metric)) if row is not None else None

    def checkpoint_of(self, row: dict[str, Any]) -> str | None:
        """Where a result row's checkpoint was kept: in the trial's folder (a trial that trained in its own
        process) or in its Ray Train run under train/ (a multi-worker trial)."""
        if row.get("checkpoint_dir_name"):
            return join(self.trial_dir, row["checkpoint_dir_name"])
        return row.get("checkpoint_path") or None

    @property
    def checkpoint(self) -> str | None:
        """The checkpoint of the trial's last trained epoch, whose metric is its `value` (the latest two are kept)."""
        row = self.last_trained
        path = self.checkpoint_of(row) if row is not None and self.value is not None else None
        return path if path and exists(path) else None


@dataclass
class SweepRecord:
    sweep_dir: str
    space: SearchSpace
    data_dir: str | None
    trials: list[TrialRecord]
    sessions: list[dict[str, float]] = field(default_factory=list)  # SESSIONS_FILE

    @property
    def name(self) -> str:
        """The sweep's name: its folder's (<storage>/<name>)."""
        return split(self.sweep_dir)[1]

    @property
    def trained_epochs(self) -> int:
        """The epochs its trials trained, summed (epoch 0 not counted): the compute `sweep.budget_epochs` caps."""
        return sum(t.epochs_run for t in self.trials)

    @property
    def trial_seconds(self) -> float:
        """The trial-seconds its trials spent, summed: the compute `sweep.budget_seconds` caps."""
        return sum(t.seconds for t in self.trials)

    def finished(self) -> list[TrialRecord]:
        """Trials that ended normally (run to the end or stopped early by ASHA) with a selection metric."""
        return [t for t in self.trials if t.status.finished_normally and t.value is not None]

    def best(self) -> TrialRecord:
        done = self.finished()
        if not done:
            raise UsageError(f"sweep {self.sweep_dir} has no finished trial yet")
        return max(done, key=lambda t: t.value)

    @property
    def metric(self) -> str:
        return self.space.sweep.metric or SELECTION_METRIC

    def default_trial(self) -> TrialRecord | None:
        """The trial that ran the default recipe (`sweep.try_default`), or None."""
        if not self.space.sweep.try_default:
            return None
        point = self.space.default_point(self.data_dir)
        return next((trial for trial in self.trials if is_point(trial.params, point)), None)

    def summary(self) -> list[str]:
        """How the sweep did, in a few lines read from its files: the random network (epoch 0), the default recipe
        (with `try_default`) and the best trial, compared at equal epochs (their last common epoch, and the best
        epoch of each), "within noise" when a gap is below the validation split's binomial standard error, and
        `confirm` named as the unbiased test (the best trial is a maximum over trials on the same images)."""
        best, metric = self.best(), self.metric
        lines = []
        start = best.value_at(0)
        if start is not None:
            lines.append(f"random network (epoch 0): {format_metric(metric, start)}")
        default = self.default_trial()
        gains, comparison = [], []
        if default is not None and default.value is not None:
            note = f"trial {default.trial_id}, {default.status.value} at epoch {default.epochs_run}"
            lines.append(f"default recipe: {format_metric(metric, default.value)} ({note})")
            common = min(best.epochs_run, default.epochs_run)
            best_then, default_then = best.value_at(common), default.value_at(common)
            if best_then is not None and default_then is not None:
                where = "" if common == best.epochs_run == default.epochs_run else f" at epoch {common}"
                gains.append(self._gap(best, best_then, default_then, f"over the default{where}"))
            (best_epoch, best_peak), (default_epoch, default_peak) = best.peak(), default.peak()
            comparison.append(
                f"  best epochs: {format_metric(metric, best_peak)} (epoch {best_epoch}) against the default's "
                f"{format_metric(metric, default_peak)} (epoch {default_epoch}): "
                + self._gap(best, best_peak, default_peak, "")
            )
        if start is not None:
            gains.append(f"{_points(metric, best.value - start)} over epoch 0")
        shown = f"best trial {best.trial_id}: {format_metric(metric, best.value)}"
        lines.append(shown + (f" ({'; '.join(gains)})" if gains else ""))
        lines.append(f"  with {best.params}")
        lines += comparison
        lines.append(
            "  the best trial is the maximum over trials on these validation images, so its gain is biased upward; "
            f"the unbiased test: ssl-tune confirm --sweep {self.sweep_dir} --top 1 --seeds 3 --with-default"
        )
        return lines

    def _gap(self, trial: TrialRecord, value: float, other: float, what: str) -> str:
        """'+1.2 points over the default', then ': within noise (...)' when the gap is below the validation split's
        binomial standard error at their mean accuracy (`trial`'s rows say how many images it has)."""
        gap = " ".join(filter(None, (_points(self.metric, value - other), what)))
        error = binomial_error((value + other) / 2, (trial.last_trained or {}).get(KNN_QUERIES))
        if not is_accuracy(self.metric) or error is None or abs(value - other) >= error:
            return gap
        return f"{gap}: within noise, below the validation split's standard error of {scaled(self.metric, error):.1f}"


def binomial_error(accuracy: float, images: int | None) -> float | None:
    """The binomial standard error √(p(1−p)/n) of an accuracy p measured on n images (None without n).

    >>> round(binomial_error(0.25, 1000), 4)
    0.0137
    """
    if not images:
        return None
    return math.sqrt(accuracy * (1 - accuracy) / images)


def last_epoch(rows: list[dict[str, Any]]) -> int:
    """The last epoch a trial reported (rows: its reports); 0 for a trial that started but has not reported yet.

    >>> last_epoch([{"epoch": 0}, {"epoch": 2}]), last_epoch([])
    (2, 0)
    """
    return max((int(r.get(EPOCH, 0)) for r in rows), default=0)


def trial_seconds(rows: list[dict[str, Any]]) -> float:
    """A trial's trial-seconds from its reports in order (result.json): start-up, evaluation and training.

    >>> trial_seconds([{"epoch": 0, "startup_process_s": 9.0, "time_total_s": 0.5}, {"epoch": 1, "time_total_s": 3.0}])
    12.0
    """
    if not rows:
        return 0.0
    return float(rows[0].get(STARTUP_KEY) or 0.0) + float(rows[-1].get(TOTAL_KEY) or 0.0)


def _points(metric: str, delta: float) -> str:
    """+12.3 points (an accuracy) or +4.5 (another metric)."""
    return f"{scaled(metric, delta):+.1f} points" if is_accuracy(metric) else f"{delta:+.1f}"


def latest_attempt(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A trial's rows with each epoch once, as its latest attempt reported it. A trial restarted from an earlier
    checkpoint than its last report (its driver killed before the experiment snapshot recorded the newer one)
    reports those epochs again, and Tune appends them to result.json: a row replaces every kept row from its
    epoch on.

    >>> [r["epoch"] for r in latest_attempt([{"epoch": e} for e in (0, 1, 2, 1, 2, 3)])]
    [0, 1, 2, 3]
    """
    kept: list[dict[str, Any]] = []
    for row in rows:
        epoch = int(row.get(EPOCH, 0))
        while kept and int(kept[-1].get(EPOCH, 0)) >= epoch:
            kept.pop()
        kept.append(row)
    return kept


def _json_lines(text: str) -> list[dict[str, Any]]:
    rows = []
    for line in text.splitlines():
        line = line.strip()
        if line:
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a line cut short by a kill
    return rows


def load_sweep(sweep_dir: str) -> SweepRecord:
    """Read a sweep directory (local or cloud URI). Raises UsageError if it is not one."""
    check_bucket(sweep_dir)
    if not exists(join(sweep_dir, SWEEP_FILE)):
        what = "does not exist" if not exists(sweep_dir) else f"has no {SWEEP_FILE} (not an ssl-tune sweep)"
        raise UsageError(f"sweep {sweep_dir} {what}")
    saved = yaml.safe_load(read_text(join(sweep_dir, SWEEP_FILE)))
    space = SearchSpace.model_validate(saved["space"])
    fs, root = filesystem(sweep_dir)
    from pyarrow.fs import FileSelector, FileType

    trials = []
    for info in fs.get_file_info(FileSelector(root)):
        if info.type != FileType.Directory or not info.base_name.startswith(TRIAL_PREFIX):
            continue
        trial_dir = join(sweep_dir, info.base_name)
        params_file = join(trial_dir, "params.json")
        if not exists(params_file):
            continue
        record = TrialRecord(
            trial_id=info.base_name.removeprefix(TRIAL_PREFIX),
            trial_dir=trial_dir,
            params=json.loads(read_text(params_file)),
            metric=space.sweep.metric or SELECTION_METRIC,
        )
        if exists(join(trial_dir, "result.json")):
            record.results = latest_attempt(_json_lines(read_text(join(trial_dir, "result.json"))))
        if exists(join(trial_dir, END_FILE)):
            end = json.loads(read_text(join(trial_dir, END_FILE)))
            record.end_status = TrialStatus(end[STATUS])
            record.times = {k: float(end[k]) for k in ("started", "first_result", "ended") if k in end}
        trials.append(record)
    trials.sort(key=lambda t: t.trial_id)
    sessions = json.loads(read_text(join(sweep_dir, SESSIONS_FILE))) if exists(join(sweep_dir, SESSIONS_FILE)) else []
    return SweepRecord(sweep_dir, space, saved.get("data_dir"), trials, sessions)
