"""What the sweep driver records per trial: TensorBoard scalars, an HParams session, and how it ended.

No experiment summary is written, so TensorBoard's HParams plugin builds it from every trial's
session: conditional parameters of different methods all show up, and its metric columns are the
scalars (the last value of `val_knn_acc` is the trial's final validation kNN).
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

from pyarrow.fs import FileType
from ray.tune.experiment import Trial
from ray.tune.logger import LoggerCallback
from tensorboard.compat.proto.summary_pb2 import Summary, SummaryMetadata
from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2
from torch.utils.tensorboard import SummaryWriter

from ssl_tune.engine.runlog import SCALARS
from ssl_tune.metrics import EPOCH, STATUS, TrialStatus
from ssl_tune.storage import atomic_write
from ssl_tune.tune.results import END_FILE, TRIAL_PREFIX


# how a trial ended -> the HParams plugin's status column
def _session_status(status: TrialStatus) -> int:
    if status is TrialStatus.UNFINISHED:
        return api_pb2.STATUS_UNKNOWN
    return api_pb2.STATUS_SUCCESS if status.finished_normally else api_pb2.STATUS_FAILURE


def _hparams_summary(tag: str, data: plugin_data_pb2.HParamsPluginData) -> Summary:
    data.version = metadata.PLUGIN_DATA_VERSION
    meta = SummaryMetadata(
        plugin_data=SummaryMetadata.PluginData(plugin_name=metadata.PLUGIN_NAME, content=data.SerializeToString())
    )
    return Summary(value=[Summary.Value(tag=tag, metadata=meta)])


def session_start(hparams: dict[str, Any], group: str) -> Summary:
    info = plugin_data_pb2.SessionStartInfo(group_name=group)
    for key, value in hparams.items():
        if isinstance(value, bool):
            info.hparams[key].bool_value = value
        elif isinstance(value, int | float):
            info.hparams[key].number_value = float(value)
        elif value is not None:
            info.hparams[key].string_value = str(value)
    return _hparams_summary(metadata.SESSION_START_INFO_TAG, plugin_data_pb2.HParamsPluginData(session_start_info=info))


def session_end(status: TrialStatus) -> Summary:
    info = plugin_data_pb2.SessionEndInfo(status=_session_status(status))
    return _hparams_summary(metadata.SESSION_END_INFO_TAG, plugin_data_pb2.HParamsPluginData(session_end_info=info))


def scalar_items(result: dict[str, Any]) -> dict[str, float]:
    """The result's finite numeric metrics worth plotting."""
    out = {}
    for key, value in result.items():
        numeric = isinstance(value, int | float) and not isinstance(value, bool)
        if numeric and math.isfinite(value) and (key in SCALARS or key.endswith("_entropy")):
            out[key] = float(value)
    return out


class TrialRecorder(LoggerCallback):
    """Per trial directory: TensorBoard scalars (step = epoch) + HParams session, and `trial_end.json` (how it
    ended, and when, on the driver's clock: `started` (its process began the trial), `first_result`, `ended`)."""

    def __init__(self, max_epochs: int) -> None:
        self.max_epochs = max_epochs
        self._writers: dict[Trial, SummaryWriter] = {}
        self._last: dict[Trial, dict[str, Any]] = {}
        self._times: dict[Trial, dict[str, float]] = {}

    def log_trial_start(self, trial: Trial) -> None:
        self._times.setdefault(trial, {"started": time.time()})
        if trial in self._writers:
            self._writers[trial].close()
        trial.init_local_path()
        last_epoch = (trial.last_result or {}).get("epoch")
        # a resumed trial replays epochs after its checkpoint: drop what was logged past it
        purge = int(last_epoch) + 1 if isinstance(last_epoch, int) else None
        writer = SummaryWriter(trial.local_path, purge_step=purge)
        writer.file_writer.add_summary(session_start(dict(trial.config), group=trial.trial_id))
        self._writers[trial] = writer

    def log_trial_result(self, iteration: int, trial: Trial, result: dict[str, Any]) -> None:
        if trial not in self._writers:
            self.log_trial_start(trial)
        self._times.setdefault(trial, {}).setdefault("first_result", time.time())
        writer = self._writers[trial]
        for key, value in scalar_items(result).items():
            writer.add_scalar(key, value, int(result["epoch"]))
        writer.flush()
        self._last[trial] = result

    def _end_record(self, trial: Trial, failed: bool) -> dict[str, Any]:
        # a resumed trial whose run was already complete reports nothing new: fall back on Tune's last result
        last = self._last.pop(trial, None) or trial.last_result or {}
        status = trial_status(last, failed, self.max_epochs)
        return {STATUS: status.value, **self._times.pop(trial, {}), "ended": time.time()}

    def log_trial_end(self, trial: Trial, failed: bool = False) -> None:
        writer = self._writers.pop(trial, None)
        if writer is None:  # ended before its first result
            writer = SummaryWriter(trial.local_path)
        record = self._end_record(trial, failed)
        writer.file_writer.add_summary(session_end(TrialStatus(record[STATUS])))
        writer.close()
        atomic_write(Path(trial.local_path) / END_FILE, lambda f: f.write(json.dumps(record).encode()))

    def on_experiment_end(self, trials: list[Trial], **info: Any) -> None:
        """Trials Tune stopped with the experiment without telling their end (a sweep's `budget_epochs` stops the
        running trials). The driver's staging folder is synced before this, so their end goes straight to the
        storage. An interrupted sweep leaves its trials unterminated, to be resumed."""
        for trial in trials:
            if trial in self._writers and trial.status == Trial.TERMINATED:
                self._writers.pop(trial).close()
                fs, end_file = trial.storage.storage_filesystem, f"{trial.path}/{END_FILE}"
                if fs.get_file_info(end_file).type != FileType.NotFound:  # ended before a resume: keep its record
                    continue
                with fs.open_output_stream(end_file) as f:
                    f.write(json.dumps(self._end_record(trial, failed=False)).encode())
        super().on_experiment_end(trials, **info)


def trial_status(last_result: dict[str, Any], errored: bool, max_epochs: int) -> TrialStatus:
    """How a trial ended: completed, stopped (early, by ASHA), diverged, collapsed or error."""
    if errored:
        return TrialStatus.ERROR
    status = TrialStatus(last_result.get(STATUS) or TrialStatus.OK)
    if status is not TrialStatus.OK:
        return status
    return TrialStatus.COMPLETED if int(last_result.get(EPOCH, 0)) >= max_epochs else TrialStatus.STOPPED


def trial_dirname(trial: Trial) -> str:
    """trial-<id>: the same name as the trial's Ray Train run under train/, and as its TensorBoard run."""
    return f"{TRIAL_PREFIX}{trial.trial_id}"
