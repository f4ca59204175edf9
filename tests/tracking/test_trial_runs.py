"""The Tune tracker callback (`ssl_tune.tune.trackers`) without a sweep: a stand-in trial, a local MLflow file store.
The whole path (a sweep's trials and a resumed confirm, MLflow and W&B) is tested in tests/tune/test_sweep.py."""

from __future__ import annotations

import json
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ssl_tune.tracking import RECORD_FILE, TrackingSettings
from ssl_tune.tune.trackers import tune_callbacks


@dataclass(eq=False)
class StandInTrial:
    """What the callback reads of a Tune `Trial`."""

    trial_id: str
    local_path: str
    config: dict[str, Any]
    last_result: dict[str, Any] = field(default_factory=dict)

    def init_local_path(self) -> None:
        Path(self.local_path).mkdir(parents=True, exist_ok=True)


def test_no_tracker_no_callback():
    assert tune_callbacks(TrackingSettings(), "exp", "sweep", {}, 3) == []


def test_a_trial_is_one_mlflow_run_that_a_resumed_experiment_reopens(tmp_path, monkeypatch):
    from mlflow import MlflowClient

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    settings = TrackingSettings(("mlflow",), str(tmp_path / "mlruns")).checked()
    (callback,) = tune_callbacks(settings, "exp", "sweep", {"method": "simsiam"}, max_epochs=3)
    trial = StandInTrial("abc", str(tmp_path / "trial-abc"), {"lr": 0.1})
    callback.log_trial_result(1, trial, {"epoch": 0, "val_knn_acc": 0.1, "loss": 2.0, "pid": 7})
    callback.log_trial_result(2, trial, {"epoch": 1, "val_knn_acc": 0.2, "loss": 1.5, "pid": 7})
    saved = pickle.dumps(callback)  # Tune's experiment state, as a --resume restores it
    callback.on_experiment_end([trial])  # interrupted: the run is left unfinished

    client = MlflowClient(tracking_uri=settings.mlflow_uri)
    experiment = client.get_experiment_by_name("exp").experiment_id
    (run,) = client.search_runs([experiment])
    assert run.data.tags["end_state"] == "unfinished" and run.info.status == "KILLED"

    resumed = pickle.loads(saved)
    trial.last_result = {"epoch": 3, "val_knn_acc": 0.3, "status": "ok", "eval_probe_top1": 0.4}
    resumed.log_trial_result(3, trial, trial.last_result)
    resumed.log_trial_end(trial)

    (run,) = client.search_runs([experiment])  # the same run, not a second one
    assert run.info.run_name == "trial-abc" and run.data.tags["ssl_tune.trial_id"] == "abc"
    assert run.data.tags["ssl_tune.stage"] == "sweep"
    assert run.info.status == "FINISHED" and run.data.tags["end_state"] == "completed"
    assert run.data.params == {"method": "simsiam", "lr": "0.1"}
    history = client.get_metric_history(run.info.run_id, "val_knn_acc")
    assert [(m.step, m.value) for m in history] == [(0, 0.1), (1, 0.2), (3, 0.3)]
    assert run.data.metrics["eval_probe_top1"] == 0.4 and "pid" not in run.data.metrics
    record = json.loads((Path(trial.local_path) / RECORD_FILE).read_text())
    assert record["mlflow"]["run_id"] == run.info.run_id


def test_a_confirm_run_logs_the_config_at_its_run_index(tmp_path, monkeypatch):
    from mlflow import MlflowClient

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    settings = TrackingSettings(("mlflow",), str(tmp_path / "mlruns")).checked()
    configs = [{"label": "a", "seed": 1}, {"label": "b", "seed": 2}]
    (callback,) = tune_callbacks(settings, "exp", "confirm", {"ignored": 1}, max_epochs=1, configs=configs)
    trial = StandInTrial("run_1", str(tmp_path / "run_1"), {"run": 1}, {"epoch": 1, "status": "ok"})
    callback.log_trial_end(trial)  # ended before any result: the run is opened, then ended

    client = MlflowClient(tracking_uri=settings.mlflow_uri)
    (run,) = client.search_runs([client.get_experiment_by_name("exp").experiment_id])
    assert run.data.params == {"label": "b", "seed": "2"} and run.data.tags["ssl_tune.stage"] == "confirm"
    assert run.data.tags["end_state"] == "completed"
