"""A real 2-node Ray cluster on loopback: a 2-worker trial whose workers land on different nodes."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from ssl_tune.tune.results import load_sweep
from tests.helpers import run_cli, sweep_cmd, write_space

pytestmark = pytest.mark.slow  # starts a Ray cluster or trains for several epochs


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ray(*args: str, temp_dir: str) -> None:
    cmd = [str(Path(sys.executable).with_name("ray")), *args]
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_TMPDIR": temp_dir}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]


def _stop_cluster(temp_dir: str) -> None:
    """Kill only this cluster's processes (their command lines name its temp dir), not other Ray users'."""
    for pid_dir in Path("/proc").iterdir():
        if not pid_dir.name.isdigit():
            continue
        try:
            cmdline = (pid_dir / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="ignore")
        except OSError:
            continue
        if temp_dir in cmdline:
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid_dir.name), signal.SIGKILL)


@pytest.fixture
def two_node_cluster():
    temp_dir = tempfile.mkdtemp(prefix="rmn", dir="/tmp")  # short: Ray's socket paths must fit 107 chars
    port = _free_port()
    try:
        _ray(
            "start",
            "--head",
            f"--port={port}",
            "--node-ip-address=127.0.0.1",
            "--num-cpus=1",
            "--num-gpus=0",
            '--resources={"ssl_tune_driver": 1000, "head_node": 1}',
            "--include-dashboard=true",
            f"--dashboard-port={_free_port()}",
            f"--temp-dir={temp_dir}",
            temp_dir=temp_dir,
        )
        _ray(
            "start",
            f"--address=127.0.0.1:{port}",
            "--node-ip-address=127.0.0.1",
            "--num-cpus=1",
            "--num-gpus=0",
            '--resources={"second_node": 1}',
            temp_dir=temp_dir,
        )
        yield f"127.0.0.1:{port}"
    finally:
        _stop_cluster(temp_dir)
        shutil.rmtree(temp_dir, ignore_errors=True)


def test_two_worker_trial_spans_two_nodes_with_shared_storage(two_node_cluster, tmp_path):
    import ray
    from ray.util.state import list_actors

    shared = tmp_path / "shared-storage"
    space = write_space(tmp_path / "space.yaml", fixed={"epochs": 2}, sweep={"num_samples": 1})
    proc = run_cli(
        sweep_cmd(
            "--space",
            str(space),
            "--storage",
            str(shared),
            "--name",
            "multinode",
            "--address",
            two_node_cluster,
            "--workers-per-trial",
            "2",
            "--cpus-per-worker",
            "1",
        )
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    (trial,) = load_sweep(str(shared / "multinode")).trials
    assert trial.status == "completed" and trial.epochs_run == 2
    assert [r["epoch"] for r in trial.results] == [0, 1, 2]  # one kNN accuracy per epoch for the trial
    assert all(0.0 <= r["val_knn_acc"] <= 1.0 for r in trial.results)

    ray.init(address=two_node_cluster, log_to_driver=False)
    try:
        deadline = time.time() + 60
        while True:
            workers = list_actors(filters=[("class_name", "=", "RayTrainWorker")], detail=True, limit=100)
            if len(workers) >= 2 or time.time() > deadline:
                break
            time.sleep(1)
        nodes = {w.node_id for w in workers}
        all_nodes = {n["NodeID"] for n in ray.nodes() if n["Alive"]}
    finally:
        ray.shutdown()
    assert len(workers) == 2, json.dumps([w.node_id for w in workers])
    assert nodes == all_nodes and len(nodes) == 2
