"""Experiment trackers: MLflow and Weights & Biases, beside the TensorBoard files every run writes.

`--log mlflow` / `--log wandb` (repeatable) on `train`, `sweep`, `confirm` and `eval`. Each trained run or
sweep trial becomes one tracker run with its hyperparameters, a metric history with step = epoch (validation
kNN or RankMe, loss, lr, collapse signals, images/s), its end state (tag / summary `end_state`), and the
test-split numbers when `confirm` or `eval` measures them. Where a run lives is written beside it in
`tracking.json`, so that `eval` adds its numbers to the run that trained the checkpoint.

Neither tracker is a dependency: `pip install 'ssl-tune[mlflow]'` or `'ssl-tune[wandb]'`.
"""

from __future__ import annotations

import importlib
import json
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

from ssl_tune.errors import UsageError

TRACKERS = ("mlflow", "wandb")
INSTALL = {"mlflow": "pip install 'ssl-tune[mlflow]'", "wandb": "pip install 'ssl-tune[wandb]'"}
MODULES = {"mlflow": "mlflow", "wandb": "wandb"}
RECORD_FILE = "tracking.json"  # where a run's tracker runs live: {"mlflow": {...}, "wandb": {...}}
END_STATE = "end_state"  # the MLflow tag / W&B summary key of how a run ended (metrics.TrialStatus)
TRIAL_ID_TAG = "ssl_tune.trial_id"  # MLflow: the Tune trial id (W&B uses it as the run id)
STAGE_TAG = "ssl_tune.stage"  # train, sweep, confirm or eval


@dataclass(frozen=True)
class TrackingSettings:
    """Which trackers to log to, and where. Built from the `--log`, `--mlflow-uri`, `--wandb-*` flags."""

    trackers: tuple[str, ...] = ()
    mlflow_uri: str | None = None  # default $MLFLOW_TRACKING_URI, else the SQLite store ./mlflow.db
    wandb_project: str | None = None  # default $WANDB_PROJECT, else "ssl-tune"
    wandb_entity: str | None = None  # default $WANDB_ENTITY (your default entity)

    def checked(self) -> TrackingSettings:
        """Known trackers whose packages are installed, each once, the MLflow URI resolved. Raises UsageError."""
        names = tuple(dict.fromkeys(self.trackers))
        for name in names:
            if name not in TRACKERS:
                raise UsageError(f"--log {name}: unknown tracker (choose from {', '.join(TRACKERS)})")
            try:
                importlib.import_module(MODULES[name])
            except ImportError:
                raise UsageError(f"--log {name}: the {name} package is not installed: {INSTALL[name]}") from None
        return replace(self, trackers=names, mlflow_uri=mlflow_tracking_uri(self.mlflow_uri) if names else None)

    def __bool__(self) -> bool:
        return bool(self.trackers)

    def to_dict(self) -> dict[str, Any]:
        return {"trackers": list(self.trackers), "mlflow_uri": self.mlflow_uri, "wandb_project": self.wandb_project,
                "wandb_entity": self.wandb_entity}  # fmt: skip


def check_resumed_trackers(saved: dict[str, Any] | None, given: TrackingSettings, what: str) -> None:
    """Tune restores a resumed experiment's callbacks as they were pickled, trackers included: `--log` on a
    resume must ask for what the first run had, or be left out. Raises UsageError."""
    before = TrackingSettings(tuple((saved or {}).get("trackers") or ()), (saved or {}).get("mlflow_uri"))
    if given and (given.trackers, given.mlflow_uri) != (before.trackers, before.mlflow_uri):
        had = ", ".join(before.trackers) or "no tracker"
        raise UsageError(f"--log: {what} keeps the trackers it started with ({had}): leave out --log and --mlflow-uri")


DEFAULT_MLFLOW_DB = "mlflow.db"  # in the working directory: MLflow 3's own default store, so `mlflow ui` finds it


def mlflow_tracking_uri(given: str | None) -> str:
    """A URI MLflow accepts: http(s)://, sqlite:///, databricks, file:// as they are; a plain folder as a file://
    store. Neither given nor $MLFLOW_TRACKING_URI: the SQLite file ./mlflow.db (its absolute path), MLflow 3's
    own default, which it opens without flags. MLflow 3 keeps its file store in maintenance mode behind an
    opt-in, which a folder or file:// URI given here opts into for this process only."""
    uri = given or os.environ.get("MLFLOW_TRACKING_URI")
    if not uri:
        return f"sqlite:///{Path(DEFAULT_MLFLOW_DB).resolve()}"
    if "://" in uri or uri.startswith(("databricks", "sqlite:")):
        if uri.startswith("file://"):
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        return uri
    os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    return Path(uri).expanduser().resolve().as_uri()


class TrackedRun(Protocol):
    """One run in one tracker."""

    tracker: str  # "mlflow" or "wandb"

    def log_metrics(self, values: dict[str, float], step: int) -> None: ...

    def end(self, state: str | None) -> None:
        """Close the run with its end state (a TrialStatus value); None keeps the state it had (`eval`)."""
        ...

    def record(self) -> dict[str, Any]:
        """Where the run lives, to find it again (tracking.json)."""
        ...


@dataclass(frozen=True)
class RunIdentity:
    """What names a run in every tracker: its experiment (MLflow) / group (W&B), name, id and stage."""

    experiment: str
    name: str
    run_id: str  # the W&B run id, and the MLflow trial-id tag
    stage: str


def open_runs(
    settings: TrackingSettings,
    identity: RunIdentity,
    params: dict[str, Any],
    previous: dict[str, Any] | None = None,
    folder: Path | None = None,
    quiet: bool = False,
) -> list[TrackedRun]:
    """Start (or, from a `tracking.json` record, continue) the run in each tracker; W&B's local files go
    to `folder`/wandb. Without a record, MLflow finds the run by its trial id and stage, W&B by its id (a
    resumed trial). `quiet`: no W&B console capture or banners (a sweep's trials, logged from the driver)."""
    runs: list[TrackedRun] = []
    previous = previous or {}
    if "mlflow" in settings.trackers:
        from ssl_tune.tracking.mlflow_runs import MLflowRun

        runs.append(MLflowRun.open(settings.mlflow_uri or mlflow_tracking_uri(None), identity, params, previous))
    if "wandb" in settings.trackers:
        from ssl_tune.tracking.wandb_runs import WandbRun

        runs.append(WandbRun.open(settings, identity, params, previous, folder, quiet))
    return runs


def read_record(folder: str | Path) -> dict[str, Any]:
    """`folder/tracking.json` (a path or a URI), or {} where there is none."""
    from ssl_tune.storage import is_file, join, read_text

    path = join(str(folder), RECORD_FILE)
    return json.loads(read_text(path)) if is_file(path) else {}


def write_record(folder: str | Path, runs: list[TrackedRun]) -> None:
    """Merge the runs' whereabouts into `folder/tracking.json` (atomically on a local disk)."""
    from ssl_tune.storage import join, write_text

    record = read_record(folder) | {run.tracker: run.record() for run in runs}
    write_text(join(str(folder), RECORD_FILE), json.dumps(record, indent=2))


def flat_params(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested settings as dotted keys with plain values (None kept, lists as strings)."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out |= flat_params(value, f"{name}.")
        else:
            out[name] = value if value is None or isinstance(value, bool | int | float | str) else str(value)
    return out


__all__ = [
    "TRACKERS",
    "RunIdentity",
    "TrackedRun",
    "TrackingSettings",
    "open_runs",
    "read_record",
    "write_record",
]
