"""Helpers shared by the tests (not a test module): paths, small settings, and tiny sweeps on `synthetic` data
that a 2-CPU machine runs in about a minute."""

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
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from ssl_tune.methods import METHODS

REPO = Path(__file__).resolve().parents[1]
SHARED_DATASETS = REPO.parent / "shared" / "datasets"  # our CI's copy, beside the clone (see ssl_tune.data.locate)

# small heads so that CPU tests spend their time in the backbone
SMALL_SIMSIAM = {"proj_hidden_dim": 256, "proj_output_dim": 256, "pred_hidden_dim": 64}
# the same for every method; only the keys a method has are used
SMALL_HEADS = {"proj_hidden_dim": 256, "proj_output_dim": 128, "pred_hidden_dim": 128, "num_prototypes": 256}


def small_params(method: str, **overrides: Any) -> dict[str, Any]:
    fields = METHODS[method].Params.model_fields
    return {k: v for k, v in {**SMALL_HEADS, **overrides}.items() if k in fields}


TINY_FIXED: dict[str, Any] = {
    "method": "simsiam",
    "backbone": "resnet_tiny",
    "dataset": "synthetic",
    "train_subset": 512,
    "test_subset": 128,
    "val_size": 128,  # the validation queries: as many as the test queries, so ASHA sees few ties
    "epochs": 3,
    "batch_size": 128,
    "method_params": {"proj_hidden_dim": 64, "proj_output_dim": 64, "pred_hidden_dim": 16},
}


def write_space(path: Path, **sections: Any) -> Path:
    space = {
        "fixed": dict(TINY_FIXED),
        "params": {
            "lr": {"type": "loguniform", "low": 1e-3, "high": 2.0},
            "weight_decay": {"type": "loguniform", "low": 1e-6, "high": 1e-3},
        },
        "asha": {"grace_period": 1, "reduction_factor": 3},
        "sweep": {"num_samples": 6, "cpus_per_worker": 1},
    }
    for key, value in sections.items():
        space[key] = {**space.get(key, {}), **value} if isinstance(value, dict) else value
    path.write_text(yaml.safe_dump(space))
    return path


def sweep_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "ssl_tune", "sweep", *args]


def run_cli(args: list[str], timeout: float = 900, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "RAY_AUTH_MODE": "disabled", **(env or {})}
    return subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ray_cli(*args: str, temp_dir: str) -> None:
    """`ray ARGS` for a test's own cluster in `temp_dir` (token authentication off)."""
    cmd = [str(Path(sys.executable).with_name("ray")), *args]
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_TMPDIR": temp_dir}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]


def stop_cluster(temp_dir: str) -> None:
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


@contextlib.contextmanager
def ray_cluster_of(*nodes: tuple[int, int, dict[str, float]]) -> Iterator[str]:
    """A test's own Ray cluster on loopback, one `ray start` per (CPUs, GPUs, custom resources) node, the first the
    head (with its dashboard); yields its address, and kills its processes after."""
    temp_dir = tempfile.mkdtemp(prefix="rtc", dir="/tmp")  # short: Ray's socket paths must fit 107 chars
    port = free_port()
    try:
        for i, (cpus, gpus, resources) in enumerate(nodes):
            where = ["--head", f"--port={port}", "--include-dashboard=true", f"--dashboard-port={free_port()}"]
            where = where if i == 0 else [f"--address=127.0.0.1:{port}"]
            sizes = [f"--num-cpus={cpus}", f"--num-gpus={gpus}", f"--resources={json.dumps(resources)}"]
            ray_cli("start", *where, "--node-ip-address=127.0.0.1", *sizes, f"--temp-dir={temp_dir}", temp_dir=temp_dir)
        yield f"127.0.0.1:{port}"
    finally:
        stop_cluster(temp_dir)
        shutil.rmtree(temp_dir, ignore_errors=True)
