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
from ssl_tune.metrics import EPOCH, SELECTION_METRIC, STATUS, TrialStatus, finite, format_metric, is_accuracy, scaled
from ssl_tune.storage import check_bucket, exists, filesystem, join, read_text, split
from ssl_tune.tune.space import SearchSpace

SWEEP_FILE = "sweep.yaml"
END_FILE = "trial_end.json"
SESSIONS_FILE = "sessions.json"  # each run of the sweep driver (a resume adds one): when, and how many trial slots
TRIAL_PREFIX = "trial-"


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
        return max((int(r.get("epoch", 0)) for r in self.results), default=0)

    @property
    def last_value(self) -> float | None:
        """The selection metric at the trial's last epoch."""
        return finite(self.results[-1].get(self.metric)) if self.results else None

    def value_at(self, epoch: int) -> float | None:
        """The selection metric at `epoch` (0: the random network), None where the trial has no such row."""
        return next((finite(r.get(self.metric)) for r in self.results if int(r.get("epoch", -1)) == epoch), None)

    def _trained_rows(self) -> list[dict[str, Any]]:
        """Rows of trained epochs: epoch 0 (the random network) is measured as a baseline, never chosen."""
        return [r for r in self.results if int(r.get("epoch", 0)) > 0 and finite(r.get(self.metric)) is not None]

    @property
    def best_value(self) -> float | None:
        """The selection metric at the epoch whose checkpoint the trial keeps (the best two by this metric are
        kept): the validation metric's maximum over trained epochs, never a test number."""
        values = [r[self.metric] for r in self._trained_rows()]
        return max(values) if values else None

    def checkpoint_of(self, row: dict[str, Any]) -> str | None:
        """Where a result row's checkpoint was kept: in the trial's folder (a trial that trained in its own
        process) or in its Ray Train run under train/ (a multi-worker trial)."""
        if row.get("checkpoint_dir_name"):
            return join(self.trial_dir, row["checkpoint_dir_name"])
        return row.get("checkpoint_path") or None

    @property
    def best_checkpoint(self) -> str | None:
        """The retained checkpoint with the best selection metric (the best two are kept)."""
        ranked = sorted(
            (r for r in self._trained_rows() if self.checkpoint_of(r)),
            key=lambda r: r[self.metric],
            reverse=True,
        )
        for row in ranked:
            if exists(path := self.checkpoint_of(row)):
                return path
        return None


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

    def finished(self) -> list[TrialRecord]:
        """Trials that ended normally (run to the end or stopped early by ASHA) with a selection metric."""
        return [t for t in self.trials if t.status.finished_normally and t.best_value is not None]

    def best(self) -> TrialRecord:
        done = self.finished()
        if not done:
            raise UsageError(f"sweep {self.sweep_dir} has no finished trial yet")
        return max(done, key=lambda t: t.best_value)

    @property
    def metric(self) -> str:
        return self.space.sweep.metric or SELECTION_METRIC

    def default_trial(self) -> TrialRecord | None:
        """The trial that ran the default recipe (`sweep.try_default`), or None."""
        if not self.space.sweep.try_default:
            return None
        point = self.space.default_point(self.data_dir)
        for trial in self.trials:
            if all(_same(trial.params.get(k), v) for k, v in point.items()):
                return trial
        return None

    def summary(self) -> list[str]:
        """How the sweep did, in a few lines read from its files: the random network (epoch 0), the default recipe
        (with `try_default`) and the best trial, with the gains between them."""
        best, metric = self.best(), self.metric
        lines = []
        start = best.value_at(0)
        if start is not None:
            lines.append(f"random network (epoch 0): {format_metric(metric, start)}")
        default = self.default_trial()
        gains = []
        if default is not None and default.best_value is not None:
            note = f"trial {default.trial_id}, {default.status.value} at epoch {default.epochs_run}"
            if default.epochs_run < best.epochs_run and (same_epoch := best.value_at(default.epochs_run)) is not None:
                note += f"; the best trial had {format_metric(metric, same_epoch)} then"
            lines.append(f"default recipe: {format_metric(metric, default.best_value)} ({note})")
            gains.append(f"{_points(metric, best.best_value - default.best_value)} over the default")
        if start is not None:
            gains.append(f"{_points(metric, best.best_value - start)} over epoch 0")
        shown = f"best trial {best.trial_id}: {format_metric(metric, best.best_value)}"
        lines.append(shown + (f" ({', '.join(gains)})" if gains else ""))
        lines.append(f"  with {best.params}")
        return lines


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        return isinstance(a, int | float) and isinstance(b, int | float) and math.isclose(a, b, rel_tol=1e-9)
    return a == b


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
