"""Failures contained, on a real local Ray cluster: a diverging trial, a collapsing trial, a killed worker."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import optuna
import pyarrow.parquet as pq
import pytest
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import api_pb2, plugin_data_pb2
from tensorboard.plugins.hparams import metadata as hp_metadata

from ssl_tune.cli import main
from ssl_tune.tune.results import load_sweep
from tests.helpers import REPO, run_cli, sweep_cmd, write_space

pytestmark = pytest.mark.slow  # starts a Ray cluster or trains for several epochs


def _session_end(trial_dir) -> int:
    acc = EventAccumulator(str(trial_dir))
    acc.Reload()
    content = acc.PluginTagToContent(hp_metadata.PLUGIN_NAME)[hp_metadata.SESSION_END_INFO_TAG]
    return plugin_data_pb2.HParamsPluginData.FromString(content).session_end_info.status


def test_diverged_and_collapsed_trials_stop_early_and_the_sweep_goes_on(tmp_path):
    """A NaN loss (injected from epoch 2), SimSiam without stop-gradient (collapse), and healthy trials.

    A huge lr does not do: SimSiam's loss is bounded and its BN layers make it scale-invariant, so lr=1000
    only inflates the weights (measured: loss stays finite for 4 epochs).
    """
    nan, healthy_nan = "inject_nan_from_epoch", 1000  # NaN from epoch 2, or never
    sg = "method_params.stop_gradient"
    space = write_space(
        tmp_path / "space.yaml",
        # 14 steps an epoch (461 images after a 10 % validation hold-out); without its stop-gradient SimSiam's
        # std ratio falls from ~1.0 to ~0.6 by epoch 2
        fixed={"epochs": 4, "batch_size": 32, "collapse_std_threshold": 0.7, "val_size": None},
        params={
            nan: {"type": "categorical", "choices": [2, healthy_nan]},
            sg: {"type": "categorical", "choices": [True, False]},
        },
        # the cases first, whatever the sampler draws; ASHA off (grace = max epochs) so it cannot pre-empt them
        points_to_evaluate=[
            {nan: 2, sg: True, "lr": 0.5},
            {nan: healthy_nan, sg: False, "lr": 2.0},
            {nan: healthy_nan, sg: True, "lr": 0.5},
        ],
        asha={"grace_period": 4},
        sweep={"num_samples": 3},  # the three cases
    )
    store = tmp_path / "store"
    proc = run_cli(sweep_cmd("--space", str(space), "--storage", str(store), "--name", "failures"))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    sweep_dir = store / "failures"
    sweep = load_sweep(str(sweep_dir))
    by_status = {}
    for t in sweep.trials:
        by_status.setdefault(t.status, []).append(t)

    diverged = by_status.get("diverged", [])
    assert diverged and all(t.params[nan] == 2 for t in diverged)
    for t in diverged:  # ended in the epoch where the loss went NaN: no epoch after it
        assert t.results[-1]["status"] == "diverged" and t.epochs_run == 2
        assert _session_end(t.trial_dir) == api_pb2.STATUS_FAILURE
    collapsed = by_status.get("collapsed", [])
    assert collapsed and all(t.params[sg] is False for t in collapsed)
    for t in collapsed:
        assert t.results[-1]["embedding_std_ratio"] < 0.7 and t.epochs_run < 4
    healthy = [t for t in sweep.trials if t.params[nan] == healthy_nan and t.params[sg]]
    assert healthy and all(t.status in ("completed", "stopped") for t in healthy)

    study = optuna.load_study(
        study_name="failures", storage=JournalStorage(JournalFileBackend(str(sweep_dir / "optuna.journal")))
    )
    nan_states = {t.state for t in study.trials if t.params[nan] == 2}
    assert nan_states == {optuna.trial.TrialState.FAIL}  # Optuna knows: it steers away

    out = tmp_path / "export"
    assert main(["export", "--sweep", str(sweep_dir), "--out", str(out)]) == 0
    rows = pq.read_table(out / "trials.parquet").to_pylist()
    assert {r["status"] for r in rows} >= {"diverged", "collapsed"}


def _train_worker_pids() -> list[int]:
    """The processes that train: a single-worker trial's own Tune trial process (ImplicitFunc), or Ray Train
    workers."""
    pids = []
    for pid_dir in os.scandir("/proc"):
        if pid_dir.name.isdigit():
            try:
                with open(f"/proc/{pid_dir.name}/cmdline", "rb") as f:
                    cmdline = f.read()
                    if b"RayTrainWorker" in cmdline or b"ImplicitFunc" in cmdline:
                        pids.append(int(pid_dir.name))
            except OSError:
                continue
    return pids


def test_killed_worker_restarts_from_its_checkpoint(tmp_path):
    space = write_space(
        tmp_path / "space.yaml", fixed={"epochs": 5, "train_subset": 1024}, sweep={"num_samples": 1, "max_failures": 2}
    )
    store = tmp_path / "store"
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "RAY_AUTH_MODE": "disabled"}
    args = sweep_cmd("--space", str(space), "--storage", str(store), "--name", "workerloss")
    proc = subprocess.Popen(args, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    killed = None
    try:
        deadline = time.time() + 600
        while killed is None:
            assert proc.poll() is None, proc.stdout.read()[-3000:]
            assert time.time() < deadline, "the trial never reached epoch 2"
            results = list((store / "workerloss").glob("trial-*/result.json"))
            if results:
                epochs = [json.loads(x)["epoch"] for x in results[0].read_text().splitlines() if x.strip()]
                pids = _train_worker_pids()
                if epochs and max(epochs) >= 2 and pids:
                    killed = pids[0]
                    os.kill(killed, signal.SIGKILL)  # mid-epoch 3
            time.sleep(0.2)
        output, _ = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, output[-3000:]
    (trial,) = load_sweep(str(store / "workerloss")).trials
    assert trial.status == "completed"
    epochs = [r["epoch"] for r in trial.results]
    assert epochs == list(range(6)), epochs  # one row per epoch: the restart resumed after the last checkpoint
    assert killed not in _train_worker_pids()
