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
from ssl_tune.storage import exists, filesystem, join, read_text
from ssl_tune.tune.space import SearchSpace

SWEEP_FILE = "sweep.yaml"
END_FILE = "trial_end.json"
TRIAL_PREFIX = "trial-"


@dataclass
class TrialRecord:
    trial_id: str
    trial_dir: str
    params: dict[str, Any]
    results: list[dict[str, Any]] = field(default_factory=list)
    end_status: str | None = None  # completed | stopped | diverged | collapsed | error; None = unfinished

    @property
    def status(self) -> str:
        return self.end_status or "unfinished"

    @property
    def epochs_run(self) -> int:
        return max((int(r.get("epoch", 0)) for r in self.results), default=0)

    @property
    def last_knn(self) -> float | None:
        return _finite(self.results[-1].get("knn_acc")) if self.results else None

    @property
    def best_knn(self) -> float | None:
        values = [v for r in self.results if (v := _finite(r.get("knn_acc"))) is not None]
        return max(values) if values else None

    @property
    def best_checkpoint(self) -> str | None:
        """The retained checkpoint with the highest kNN accuracy (Ray Train keeps the best two)."""
        ranked = sorted(
            (r for r in self.results if r.get("checkpoint_path") and _finite(r.get("knn_acc")) is not None),
            key=lambda r: r["knn_acc"],
            reverse=True,
        )
        for row in ranked:
            if exists(row["checkpoint_path"]):
                return row["checkpoint_path"]
        return None


@dataclass
class SweepRecord:
    sweep_dir: str
    space: SearchSpace
    data_dir: str | None
    trials: list[TrialRecord]

    def finished(self) -> list[TrialRecord]:
        """Trials that ended normally (run to the end or stopped early by ASHA) with a kNN accuracy."""
        return [t for t in self.trials if t.end_status in ("completed", "stopped") and t.best_knn is not None]

    def best(self) -> TrialRecord:
        done = self.finished()
        if not done:
            raise UsageError(f"sweep {self.sweep_dir} has no finished trial yet")
        return max(done, key=lambda t: t.best_knn)


def _finite(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


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
        )
        if exists(join(trial_dir, "result.json")):
            record.results = _json_lines(read_text(join(trial_dir, "result.json")))
        if exists(join(trial_dir, END_FILE)):
            record.end_status = json.loads(read_text(join(trial_dir, END_FILE))).get("status")
        trials.append(record)
    trials.sort(key=lambda t: t.trial_id)
    return SweepRecord(sweep_dir, space, saved.get("data_dir"), trials)
