"""`ssl-tune sweep` and `ssl-tune export` on a real local Ray cluster (2 CPUs), real Optuna, real TensorBoard."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
import yaml
from ray.train.v2.api.callback import UserCallback
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import metadata as hp_metadata
from tensorboard.plugins.hparams import plugin_data_pb2

from ssl_tune.cli import main
from ssl_tune.config import build_config
from ssl_tune.tune.confirm import CONFIRM_DIR, plan_runs
from ssl_tune.tune.confirm import REPORT_FILE as CONFIRM_REPORT
from ssl_tune.tune.confirm import TABLE_FILE as CONFIRM_TABLE
from ssl_tune.tune.results import END_FILE, load_sweep
from tests.helpers import REPO, TINY_FIXED, run_cli, sweep_cmd, write_space
from tests.tune.test_curves import assert_curves_match_the_trials

pytestmark = pytest.mark.slow  # starts a Ray cluster or trains for several epochs

MAX_EPOCHS = 3
WANDB_OFFLINE = {"WANDB_MODE": "offline", "WANDB_SILENT": "true"}


@pytest.fixture(scope="module")
def finished_sweep(tmp_path_factory):
    """Six trials on two one-CPU slots: more trials than slots, ASHA at rungs 1 (and 3). Tracked in a local
    MLflow file store (<root>/mlruns) and in offline W&B runs."""
    root = tmp_path_factory.mktemp("sweep")
    space = write_space(root / "tiny.yaml", sweep={"try_default": True})  # the first trial: the default recipe
    trackers = ("--log", "mlflow", "--log", "wandb", "--mlflow-uri", str(root / "mlruns"))
    args = sweep_cmd("--space", str(space), "--storage", str(root / "store"), "--name", "tiny", *trackers)
    proc = run_cli(args, env=WANDB_OFFLINE)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return root / "store" / "tiny", proc.stdout


def test_sweep_completes_and_asha_stops_some_trials(finished_sweep):
    sweep_dir, stdout = finished_sweep
    sweep = load_sweep(str(sweep_dir))
    assert len(sweep.trials) == 6
    assert all(t.status in ("completed", "stopped") for t in sweep.trials), [t.status for t in sweep.trials]
    stopped = [t for t in sweep.trials if t.epochs_run < MAX_EPOCHS]
    assert stopped and all(t.status == "stopped" for t in stopped)
    assert any(t.epochs_run == MAX_EPOCHS and t.status == "completed" for t in sweep.trials)
    # every trial reports epoch 0 (the random network) then one row per epoch it ran
    for t in sweep.trials:
        assert [r["epoch"] for r in t.results] == list(range(t.epochs_run + 1))
    # the searcher proposed different configurations
    proposals = {(t.params["lr"], t.params["weight_decay"]) for t in sweep.trials}
    assert len(proposals) == 6
    # the summary, read from the sweep's files: epoch 0, the default recipe's trial, the best trial and the gains
    default = sweep.default_trial()
    assert default is not None and default.params == sweep.space.default_point()
    assert default.epochs_run == MAX_EPOCHS and default.status == "completed"  # ASHA never stops the default
    summary = sweep.summary()
    assert summary[1].startswith(f"default recipe: val_knn_acc {100 * default.value:.2f}%")
    best = sweep.best()
    common = min(best.epochs_run, default.epochs_run)  # compared at equal epochs
    gain = 100 * (best.value_at(common) - default.value_at(common))
    assert f"best trial {best.trial_id}: val_knn_acc {100 * best.value:.2f}% ({gain:+.1f} points" in summary[2]
    assert "the unbiased test: ssl-tune confirm" in summary[-1]
    # each epoch says how many validation images its kNN accuracy is measured on (the summary's standard error)
    assert {r["knn_queries"] for t in sweep.trials for r in t.results} == {TINY_FIXED["val_size"]}
    assert_curves_match_the_trials(sweep_dir)  # the sweep's curves.parquet: every epoch of every trial
    assert "\n".join(summary) in stdout
    assert "tensorboard --logdir" in stdout and "ssl-tune export" in stdout and "ssl-tune confirm" in stdout
    # one compact line per trial event, not Ray's status tables
    assert sum(" started  " in line for line in stdout.splitlines()) == 6
    assert " epoch 1 (rung)  val_knn_acc " in stdout  # ASHA's first rung (grace 1)
    assert "Trial status:" not in stdout and "Configuration for experiment" not in stdout


def test_optuna_study_is_in_a_journal_that_optuna_dashboard_can_open(finished_sweep):
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    sweep_dir, _ = finished_sweep
    storage = JournalStorage(JournalFileBackend(str(sweep_dir / "optuna.journal")))
    study = optuna.load_study(study_name="tiny", storage=storage)
    assert len(study.trials) == 6
    assert {t.state for t in study.trials} == {optuna.trial.TrialState.COMPLETE}
    sweep = load_sweep(str(sweep_dir))
    assert sorted(t.params["lr"] for t in study.trials) == sorted(t.params["lr"] for t in sweep.trials)

    # optuna-dashboard's own app on the journal, called in-process through WSGI
    from wsgiref.util import setup_testing_defaults

    import optuna_dashboard

    app = optuna_dashboard.wsgi(storage)

    def get(path: str) -> dict[str, Any]:
        environ: dict[str, Any] = {"PATH_INFO": path, "REQUEST_METHOD": "GET"}
        setup_testing_defaults(environ)
        status: list[str] = []
        body = b"".join(app(environ, lambda s, headers, exc_info=None: status.append(s)))
        assert status == ["200 OK"], (path, status, body[:500])
        return json.loads(body)

    (summary,) = get("/api/studies")["study_summaries"]
    assert summary["study_name"] == "tiny"
    detail = get(f"/api/studies/{summary['study_id']}")
    assert detail["name"] == "tiny" and len(detail["trials"]) == 6
    by_id = {t.trial_id: t for t in sweep.trials}
    for trial in detail["trials"]:
        assert trial["state"] == "Complete"  # completed, or stopped by ASHA: both told COMPLETE
        attrs = {a["key"]: a["value"] for a in trial["user_attrs"]}
        tune_trial = by_id.pop(attrs["tune_trial_id"])  # each Tune trial once: its folder is trial-<id>
        assert attrs["end_state"] == tune_trial.status.value
        params = {p["name"]: p["param_internal_value"] for p in trial["params"]}
        assert math.isclose(params["lr"], tune_trial.params["lr"], rel_tol=1e-9)
    assert not by_id


def test_tensorboard_events_hold_scalars_and_hparams(finished_sweep):
    sweep_dir, _ = finished_sweep
    for trial in load_sweep(str(sweep_dir)).trials:
        acc = EventAccumulator(trial.trial_dir, size_guidance={"scalars": 0, "tensors": 0})
        acc.Reload()
        tags = acc.Tags()["scalars"]
        for tag in ("val_knn_acc", "loss", "lr", "embedding_std"):
            assert tag in tags, (tag, tags)
        knn = {e.step: e.value for e in acc.Scalars("val_knn_acc")}
        assert sorted(knn) == list(range(trial.epochs_run + 1))
        for row in trial.results:
            assert math.isclose(knn[row["epoch"]], row["val_knn_acc"], rel_tol=1e-6)
        # the HParams plugin's session: this trial's sampled values, and how it ended
        content = acc.PluginTagToContent(hp_metadata.PLUGIN_NAME)
        start = plugin_data_pb2.HParamsPluginData.FromString(content[hp_metadata.SESSION_START_INFO_TAG])
        hparams = start.session_start_info.hparams
        assert math.isclose(hparams["lr"].number_value, trial.params["lr"], rel_tol=1e-9)
        assert math.isclose(hparams["weight_decay"].number_value, trial.params["weight_decay"], rel_tol=1e-9)
        end = plugin_data_pb2.HParamsPluginData.FromString(content[hp_metadata.SESSION_END_INFO_TAG])
        assert end.session_end_info.status != 0


def test_export_round_trip(finished_sweep, tmp_path, capsys):
    sweep_dir, _ = finished_sweep
    out = tmp_path / "export"
    assert main(["export", "--sweep", str(sweep_dir), "--out", str(out)]) == 0
    sweep = load_sweep(str(sweep_dir))
    table = pq.read_table(out / "trials.parquet").to_pylist()
    assert len(table) == len(sweep.trials) == 6
    by_id = {row["trial_id"]: row for row in table}
    for t in sweep.trials:
        row = by_id[t.trial_id]
        tune_rows = [
            json.loads(x) for x in (sweep_dir / f"trial-{t.trial_id}" / "result.json").read_text().split("\n") if x
        ]
        assert row["lr"] == t.params["lr"] and row["weight_decay"] == t.params["weight_decay"]
        assert row["metric"] == "val_knn_acc"
        assert row["value"] == tune_rows[-1]["val_knn_acc"]  # a trial's value: its last epoch's
        assert row["epochs_run"] == tune_rows[-1]["epoch"]
        assert row["status"] == t.status
    best_row = max(table, key=lambda r: r["value"])
    checkpoint = (out / "best_checkpoint.txt").read_text().strip()
    # a single-worker trial keeps its checkpoints in its own folder
    assert checkpoint == best_row["checkpoint"]
    assert checkpoint.startswith(str(sweep_dir / f"trial-{best_row['trial_id']}" / "checkpoint_"))

    best = yaml.safe_load((out / "best.yaml").read_text())
    best_trial = next(t for t in sweep.trials if t.trial_id == best_row["trial_id"])
    assert best["lr"] == best_trial.params["lr"] and best["epochs"] == MAX_EPOCHS
    retrain = tmp_path / "retrain"
    assert main(["train", "--config", str(out / "best.yaml"), "--out", str(retrain), "--no-progress"]) == 0
    assert yaml.safe_load((retrain / "config.yaml").read_text()) == {**best, "out": str(retrain)}
    lines = (retrain / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == MAX_EPOCHS + 1


def test_export_refuses_missing_or_unfinished_sweeps(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["export", "--sweep", str(tmp_path / "nope"), "--out", str(out)]) == 2
    assert "does not exist" in capsys.readouterr().err
    started = tmp_path / "started"
    started.mkdir()
    (started / "sweep.yaml").write_text(yaml.safe_dump({"space": {"fixed": {"method": "simsiam"}}}))
    assert main(["export", "--sweep", str(started), "--out", str(out)]) == 2
    assert "no finished trial" in capsys.readouterr().err
    assert not out.exists()


def test_two_worker_ddp_trial_on_streamed_shards(tmp_path, cifar_dir, monkeypatch):
    """A TorchTrainer with 2 CPU workers (gloo) on parquet shards, built as a sweep trial builds it for a
    streamed set (`datasets={"train": ...}`; each rank iterates its `get_dataset_shard`). A Train callback
    records every rank's report: the same kNN and weights on both ranks. $SSL_TUNE_STREAM_LOG gives the ids
    each rank trained on: disjoint, all but less than a global batch, no validation query."""
    import numpy as np
    import ray
    import ray.train
    from ray.train.torch import TorchTrainer

    from ssl_tune.data.streaming import STREAM_LOG_ENV, build_dataset
    from ssl_tune.data.training import open_training_data
    from ssl_tune.tune.worker import train_worker

    pack, batch = tmp_path / "pack", 64
    args = ["--data-dir", str(cifar_dir), "--out", str(pack), "--train-subset", "480", "--test-subset", "50"]
    assert main(["data", "pack", "--source", "cifar10", *args, "--shard-size", "60"]) == 0
    layer = {"dataset": "parquet", "data_dir": str(pack), "train_subset": None, "test_subset": None}
    layer |= {"epochs": 2, "monitor": "val", "batch_size": batch, "val_size": 48}  # as a sweep trial
    cfg = build_config(TINY_FIXED, {**layer, "data_placement": "streamed_shards", "stream_eval_subset": 160})
    data, log, ids_log = open_training_data(cfg), tmp_path / "reports.jsonl", tmp_path / "ids"
    plan = data.stream
    monkeypatch.setenv(STREAM_LOG_ENV, str(ids_log))  # before ray.init: the workers inherit it
    ray.init(num_cpus=2, include_dashboard=True, log_to_driver=False)
    try:
        TorchTrainer(
            train_worker,
            train_loop_config={"config": cfg.to_yaml_dict(), "threads": 1, "data": data},
            datasets={"train": build_dataset(plan, cfg.seed)},
            # half a CPU each: the other CPU decodes (Ray Data's tasks)
            scaling_config=ray.train.ScalingConfig(num_workers=2, resources_per_worker={"CPU": 0.5}),
            run_config=ray.train.RunConfig(
                name="ddp", storage_path=str(tmp_path / "store"), callbacks=[AllRanksRecorder(str(log))]
            ),
        ).fit()
    finally:
        ray.shutdown()
    reports = [json.loads(line) for line in log.read_text().splitlines()]
    assert [r[0]["epoch"] for r in reports] == [0, 1, 2]
    for ranks in reports:
        assert len(ranks) == 2
        assert ranks[0]["val_knn_acc"] == ranks[1]["val_knn_acc"]
        if ranks[0]["epoch"] > 0:
            assert ranks[0]["loss"] == ranks[1]["loss"]
            # each rank saw its own half of the batch; equal weights mean the gradients were all-reduced
            assert ranks[0]["weight_norm"] == ranks[1]["weight_norm"]
    logged = [json.loads(line) for line in (ids_log / "epochs.jsonl").read_text().splitlines()]
    for epoch in (1, 2):
        pids = {e["rank"]: e["pid"] for e in logged if e["epoch"] == epoch}
        assert sorted(pids) == [0, 1] and pids[0] != pids[1], logged
        ids = [np.load(ids_log / f"ids-pid{pids[r]}-rank{r}-epoch{epoch}.npy") for r in (0, 1)]
        both = np.concatenate(ids)
        assert len(ids[0]) == len(ids[1]) == plan.num_train // batch * batch // 2
        assert len(np.unique(both)) == len(both), "an image reached two ranks, or one rank twice"
        assert plan.num_train - len(both) < batch and not set(both.tolist()) & set(plan.held_out)


# --- ssl-tune confirm on the same finished sweep (after the checks above: it adds <sweep>/confirm/) -----------


def _confirm_cmd(sweep_dir: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "ssl_tune", "confirm", "--sweep", str(sweep_dir), *args]


def _confirmed(confirm: Path) -> dict[str, str]:
    """Run folder -> its result.json, for the runs that have ended (trial_end.json) with their test evaluation."""
    ended = [p.parent for p in confirm.glob(f"run-*/{END_FILE}")]
    return {d.name: text for d in ended if "eval_probe_top1" in (text := (d / "result.json").read_text())}


def test_confirm_more_than_the_finished_trials_is_refused(finished_sweep, capsys):
    sweep_dir, _ = finished_sweep
    assert main(["confirm", "--sweep", str(sweep_dir), "--top", "7", "--seeds", "1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--top 7 is more than the sweep's 6 finished trial(s)" in err, err
    assert not (sweep_dir / CONFIRM_DIR).exists()


def test_confirm_plans_the_top_configs_with_fresh_seeds_and_the_default_recipe(finished_sweep):
    sweep_dir, _ = finished_sweep
    sweep = load_sweep(str(sweep_dir))
    runs = plan_runs(sweep, top=2, seeds=3, epochs=None, with_default=True)
    ranked = sorted(sweep.finished(), key=lambda t: t.value, reverse=True)[:2]
    assert [r.label for r in runs] == [ranked[0].trial_id] * 3 + [ranked[1].trial_id] * 3 + ["default"] * 3
    assert [r.seed for r in runs] == [1, 2, 3] * 3  # fresh: the sweep's trials all ran seed 0
    for run in runs:  # the whole train split, judged on the test split, at the sweep's full length
        assert run.config["monitor"] == "test" and run.config["epochs"] == MAX_EPOCHS and not run.config["rankme"]
    assert runs[0].config["lr"] == ranked[0].params["lr"]
    default = runs[-1].config  # nothing searched: the space's fixed settings over the method's recipe
    assert default["lr"] == build_config({"method": "simsiam"}).lr and runs[-1].params == {}


def test_confirm_writes_k_by_s_rows_and_resumes_without_rerunning(finished_sweep):
    sweep_dir, _ = finished_sweep
    args = ["--top", "1", "--seeds", "2", "--epochs", "2", "--max-concurrent", "1"]  # one at a time: a run is left
    args += ["--log", "mlflow", "--mlflow-uri", str(_mlruns(sweep_dir))]
    confirm = sweep_dir / CONFIRM_DIR
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "RAY_AUTH_MODE": "disabled"}
    proc = subprocess.Popen(
        _confirm_cmd(sweep_dir, *args), cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    watchdog = threading.Timer(600, proc.kill)
    watchdog.start()
    try:  # interrupted as the second run starts (keyed on progress: a fast machine cannot finish it first)
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if "run 1 started" in line:
                proc.send_signal(signal.SIGINT)
                break
        output = "".join(lines) + proc.communicate(timeout=180)[0]
    finally:
        watchdog.cancel()
        if proc.poll() is None:
            proc.kill()
    before = _confirmed(confirm)
    assert proc.returncode == 130 and "resume with the same command" in output, output[-3000:]
    assert len(before) == 1

    resumed = run_cli(_confirm_cmd(sweep_dir, *args))
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert "resuming confirm" in resumed.stdout
    after = _confirmed(confirm)
    assert len(after) == 2  # 1 config x 2 seeds
    for name, text in before.items():
        assert after[name] == text, f"{name} ran again"

    rows = pq.read_table(confirm / CONFIRM_TABLE).to_pylist()
    assert len(rows) == 2 and sorted(r["seed"] for r in rows) == [1, 2] and rows[0]["label"] == rows[1]["label"]
    for row in rows:
        assert row["epochs"] == 2
        assert all(math.isfinite(row[k]) and 0 <= row[k] <= 1 for k in ("test_knn_acc", "probe_top1", "probe_top5"))
        assert row["probe_top5"] >= row["probe_top1"]
    table = (confirm / CONFIRM_REPORT).read_text()
    assert f"trial {rows[0]['label']}" in table and " ± " in table and table.count("\n| ") == 2  # header + 1 config
    # each confirm run is an MLflow run (the interrupted one reopened on resume, not doubled), with its config
    # and its test-split numbers, as confirm.parquet has them
    tracked = _mlflow_runs(sweep_dir, "tags.`ssl_tune.stage` = 'confirm'")
    assert len(tracked) == 2
    by_seed = {r["seed"]: r for r in rows}
    for run in tracked:
        row = by_seed[int(run.data.params["seed"])]
        assert run.data.params["label"] == row["label"] and run.data.tags["end_state"] == "completed"
        assert run.data.metrics["eval_test_knn_acc"] == pytest.approx(row["test_knn_acc"])
        assert run.data.metrics["eval_probe_top1"] == pytest.approx(row["probe_top1"])


class AllRanksRecorder(UserCallback):
    """A Ray Train callback that appends every rank's reported metrics (one JSON list per report) to a file."""

    def __init__(self, path: str) -> None:
        self.path = path

    def after_report(self, run_context: Any, metrics: list[dict[str, Any]], checkpoint: Any) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps(metrics) + "\n")


# --- trackers: MLflow and W&B (offline), read back with their own readers -----------------------------


def _mlruns(sweep_dir: Path) -> Path:
    return sweep_dir.parent.parent / "mlruns"


def _mlflow_runs(sweep_dir: Path, query: str = "") -> list[Any]:
    os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 keeps its file store behind an opt-in
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=_mlruns(sweep_dir).as_uri())
    experiment = client.get_experiment_by_name(sweep_dir.name)  # named after the sweep
    assert experiment is not None
    return client.search_runs([experiment.experiment_id], filter_string=query)


def test_each_trial_is_an_mlflow_run_with_params_metric_history_and_end_state(finished_sweep):
    import mlflow

    sweep_dir, _ = finished_sweep
    trials = {t.trial_id: t for t in load_sweep(str(sweep_dir)).trials}
    sweep_runs = "tags.`ssl_tune.stage` = 'sweep'"  # confirm's runs join the same experiment
    runs = _mlflow_runs(sweep_dir, sweep_runs)
    mlflow.set_tracking_uri(_mlruns(sweep_dir).as_uri())
    assert len(mlflow.search_runs(experiment_names=["tiny"], filter_string=sweep_runs)) == len(trials) == 6
    client = mlflow.MlflowClient()
    for run in runs:
        trial = trials[run.data.tags["ssl_tune.trial_id"]]
        assert run.info.run_name == f"trial-{trial.trial_id}" and run.info.status == "FINISHED"
        assert run.data.tags["end_state"] == trial.status.value
        params = run.data.params  # the sampled ones and the space's fixed settings
        assert float(params["lr"]) == pytest.approx(trial.params["lr"]) and params["method"] == "simsiam"
        history = client.get_metric_history(run.info.run_id, "val_knn_acc")
        assert [m.step for m in history] == [r["epoch"] for r in trial.results]  # step = epoch, 0 included
        assert [m.value for m in history] == pytest.approx([r["val_knn_acc"] for r in trial.results])
        assert {"loss", "lr", "embedding_std_ratio", "images_per_s"} <= set(run.data.metrics)
        assert not any(k.startswith(("pid", "time_", "hostname")) for k in run.data.metrics)  # not Ray's internals


def _wandb_records(path: Path) -> list[Any]:
    """The records of an offline W&B run file (LevelDB-style log: 32 KiB blocks of CRC'd chunks)."""
    import struct

    from wandb.proto import wandb_internal_pb2

    data, records, chunk, pos = path.read_bytes(), [], b"", 7  # a 7-byte W&B header
    while pos + 7 <= len(data):
        left = 32768 - pos % 32768
        if left < 7:
            pos += left
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        if length == 0 and kind == 0:  # block padding
            pos += left
            continue
        chunk += data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # a full record, or the last chunk of one
            record = wandb_internal_pb2.Record()
            record.ParseFromString(chunk)
            records.append(record)
            chunk = b""
    return records


def test_each_trial_is_an_offline_wandb_run_with_config_history_and_end_state(finished_sweep):
    sweep_dir, _ = finished_sweep
    for trial in load_sweep(str(sweep_dir)).trials:
        files = sorted(Path(trial.trial_dir).glob(f"wandb/offline-run-*-{trial.trial_id}/run-{trial.trial_id}.wandb"))
        assert len(files) == 1, trial.trial_id
        records = _wandb_records(files[0])
        run = next(r.run for r in records if r.WhichOneof("record_type") == "run")
        config = {item.key: json.loads(item.value_json) for item in run.config.update}
        assert run.run_id == trial.trial_id and run.run_group == "tiny"
        assert config["lr"] == pytest.approx(trial.params["lr"]) and config["method"] == "simsiam"
        rows = [
            {item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in r.history.item}
            for r in records
            if r.WhichOneof("record_type") == "history"
        ]
        assert [row["epoch"] for row in rows] == [r["epoch"] for r in trial.results]
        assert [row["val_knn_acc"] for row in rows] == pytest.approx([r["val_knn_acc"] for r in trial.results])
        summary = {
            item.key or "/".join(item.nested_key): json.loads(item.value_json)
            for r in records
            if r.WhichOneof("record_type") == "summary"
            for item in r.summary.update
        }
        assert summary["end_state"] == trial.status.value


def test_eval_adds_the_test_numbers_to_the_best_trials_mlflow_run(finished_sweep, capsys):
    sweep_dir, _ = finished_sweep
    best = load_sweep(str(sweep_dir)).best()
    assert main(["eval", "--sweep", str(sweep_dir), "--log", "mlflow", "--mlflow-uri", str(_mlruns(sweep_dir))]) == 0
    result = json.loads((Path(best.trial_dir) / "eval.json").read_text())
    (run,) = _mlflow_runs(sweep_dir, f"tags.`ssl_tune.trial_id` = '{best.trial_id}'")
    assert run.data.metrics["eval_test_knn_acc"] == pytest.approx(result["test_knn_acc"])
    assert run.data.metrics["eval_probe_top1"] == pytest.approx(result["probe_top1"])
    assert run.info.status == "FINISHED" and run.data.tags["end_state"] == best.status.value  # kept
