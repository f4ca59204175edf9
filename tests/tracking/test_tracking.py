"""`--log mlflow|wandb` on `train` and `eval`, with the real packages: a local MLflow file store and W&B in
offline mode. The sweep and confirm trackers are tested on the sweep of tests/tune/test_sweep.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from ssl_tune.cli import main
from ssl_tune.errors import UsageError
from ssl_tune.tracking import RECORD_FILE, TrackingSettings, check_resumed_trackers, mlflow_tracking_uri
from tests.helpers import REPO

TINY_TRAIN = [
    "train", "--method", "simclr", "--backbone", "resnet_tiny", "--dataset", "synthetic", "--epochs", "2",
    "--train-subset", "256", "--test-subset", "64", "--batch-size", "64", "--image-size", "16",
]  # fmt: skip


@pytest.fixture
def offline_wandb(monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")


@pytest.mark.slow  # trains two epochs
def test_a_tracked_train_run_and_its_eval_are_one_mlflow_run_and_a_wandb_run(tmp_path, offline_wandb, capsys):
    from mlflow import MlflowClient

    out, mlruns = tmp_path / "run", tmp_path / "mlruns"
    trackers = ["--log", "mlflow", "--log", "wandb", "--mlflow-uri", str(mlruns), "--experiment", "exp"]
    assert main([*TINY_TRAIN, "--out", str(out), *trackers]) == 0
    record = json.loads((out / RECORD_FILE).read_text())
    assert record["mlflow"]["uri"] == mlruns.resolve().as_uri() and record["wandb"]["group"] == "exp"
    assert main(["eval", "--run", str(out), *trackers[:-2]]) == 0
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    evaluation = json.loads((out / "eval.json").read_text())

    client = MlflowClient(tracking_uri=mlruns.as_uri())
    (run,) = client.search_runs([client.get_experiment_by_name("exp").experiment_id])
    assert run.info.run_id == record["mlflow"]["run_id"] and run.info.run_name == "run"
    assert run.info.status == "FINISHED" and run.data.tags["end_state"] == "completed"
    assert run.data.params["method"] == "simclr" and run.data.params["method_params.temperature"]
    history = client.get_metric_history(run.info.run_id, "test_knn_acc")
    assert [(m.step, m.value) for m in history] == [(m["epoch"], pytest.approx(m["test_knn_acc"])) for m in metrics]
    assert run.data.metrics["eval_probe_top1"] == pytest.approx(evaluation["probe_top1"])  # eval joined the run

    offline = sorted((out / "wandb").glob(f"offline-run-*-{record['wandb']['id']}"))
    assert len(offline) == 2  # the training run, and eval's resumption of it (`wandb sync` merges them)


def _blocked(module: str, argv: list[str]) -> subprocess.CompletedProcess:
    """The CLI in a process where `module` cannot be imported, as if it were not installed."""
    code = f"import sys; sys.modules[{module!r}] = None; from ssl_tune.cli import main; sys.exit(main({argv!r}))"
    return subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("tracker", ["mlflow", "wandb"])
def test_a_missing_tracker_package_is_one_line_and_exit_2_before_anything_is_written(tmp_path, tracker):
    out = tmp_path / "run"
    proc = _blocked(tracker, [*TINY_TRAIN, "--out", str(out), "--log", tracker])
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.count("\n") == 1, proc.stderr
    assert f"pip install 'ssl-tune[{tracker}]'" in proc.stderr
    assert not out.exists()


def test_an_unknown_tracker_is_one_line_and_exit_2(tmp_path, capsys):
    space = str(REPO / "search_spaces" / "quickstart.yaml")
    assert main(["sweep", "--space", space, "--storage", str(tmp_path), "--log", "neptune"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--log neptune: unknown tracker (choose from mlflow, wandb)" in err
    assert not any(tmp_path.iterdir())


def test_mlflow_uris_and_folders(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)  # so that the opt-in below is ours
    monkeypatch.chdir(tmp_path)
    assert mlflow_tracking_uri(None) == f"sqlite:///{tmp_path / 'mlflow.db'}"  # the default: MLflow 3's own
    assert "MLFLOW_ALLOW_FILE_STORE" not in os.environ  # it needs no opt-in
    assert mlflow_tracking_uri("runs/ml") == (tmp_path / "runs" / "ml").as_uri()
    assert os.environ["MLFLOW_ALLOW_FILE_STORE"] == "true"  # a folder asked for: a file store, opted into
    assert mlflow_tracking_uri("http://mlflow:5000") == "http://mlflow:5000"
    assert mlflow_tracking_uri("sqlite:///mlflow.db") == "sqlite:///mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://tracking:5000")
    assert mlflow_tracking_uri(None) == "http://tracking:5000"
    assert TrackingSettings(("mlflow", "mlflow")).checked().trackers == ("mlflow",)
    assert not TrackingSettings()


def test_a_resume_keeps_the_trackers_it_started_with():
    started = TrackingSettings(("mlflow",), "file:///runs/mlruns").to_dict()
    check_resumed_trackers(started, TrackingSettings(), "--resume")  # no --log: the saved trackers apply
    check_resumed_trackers(started, TrackingSettings(("mlflow",), "file:///runs/mlruns"), "--resume")  # the same
    for other in (TrackingSettings(("wandb",)), TrackingSettings(("mlflow",), "file:///elsewhere")):
        with pytest.raises(UsageError, match=r"keeps the trackers it started with \(mlflow\)"):
            check_resumed_trackers(started, other, "--resume")
    with pytest.raises(UsageError, match=r"\(no tracker\)"):
        check_resumed_trackers(None, TrackingSettings(("mlflow",), "file:///runs/mlruns"), "--resume")


@pytest.mark.slow  # trains one epoch
def test_the_default_store_opens_with_plain_mlflow_and_no_environment_variable(tmp_path):
    """`ssl-tune train --log mlflow` with no --mlflow-uri, then the README's `mlflow.search_runs()` in a fresh
    process in the same folder, with neither MLFLOW_TRACKING_URI nor MLFLOW_ALLOW_FILE_STORE set."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env["PYTHONPATH"] = str(REPO)
    train = [sys.executable, "-m", "ssl_tune", *TINY_TRAIN, "--epochs", "1", "--out", "run", "--log", "mlflow"]
    done = subprocess.run(train, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "mlflow.db").is_file() and not (tmp_path / "mlruns").exists()
    code = "import mlflow; mlflow.search_runs(); runs = mlflow.search_runs(search_all_experiments=True); "
    code += "print(len(runs), runs['status'][0])"  # the first: the acceptance's literal call (Default experiment)
    read = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert read.returncode == 0, read.stderr
    assert read.stdout.split() == ["1", "FINISHED"], read.stdout
