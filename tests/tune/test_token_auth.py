"""A sweep against a real token-protected Ray cluster (`ray start` with RAY_AUTH_MODE=token, Ray 2.60's way):
without the token it is refused in one line that says how to supply it, with nothing written; with the token
(RAY_AUTH_MODE=token and the cluster's token in ~/.ray/auth_token) it runs; `confirm --address` likewise."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.helpers import free_port, run_cli, stop_cluster, sweep_cmd, write_space

pytestmark = pytest.mark.slow  # starts a Ray cluster


@pytest.fixture(scope="module")
def token_cluster():
    """(address, a HOME whose ~/.ray/auth_token holds the cluster's token)."""
    temp_dir, home = tempfile.mkdtemp(prefix="rtok", dir="/tmp"), tempfile.mkdtemp(prefix="rtokhome")
    env = {**os.environ, "HOME": home, "RAY_AUTH_MODE": "token", "RAY_TMPDIR": temp_dir}
    ray = str(Path(sys.executable).with_name("ray"))
    port = free_port()
    try:
        for args in (
            ["get-auth-token", "--generate"],
            ["start", "--head", f"--port={port}", "--node-ip-address=127.0.0.1", "--num-cpus=1", "--num-gpus=0",
             '--resources={"ssl_tune_driver": 1000}', "--include-dashboard=true", f"--dashboard-port={free_port()}",
             f"--temp-dir={temp_dir}"],
        ):  # fmt: skip
            proc = subprocess.run([ray, *args], env=env, capture_output=True, text=True, timeout=180)
            assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
        assert (Path(home) / ".ray" / "auth_token").is_file()
        yield f"127.0.0.1:{port}", home
    finally:
        stop_cluster(temp_dir)
        shutil.rmtree(temp_dir, ignore_errors=True)
        shutil.rmtree(home, ignore_errors=True)


def _sweep(address: str, root: Path, env: dict[str, str]):
    space = write_space(root / "space.yaml", fixed={"epochs": 1}, sweep={"num_samples": 1})
    store = root / "store"
    return run_cli(sweep_cmd("--space", str(space), "--storage", str(store), "--address", address), env=env), store


def test_without_the_token_the_sweep_is_refused_in_one_line(token_cluster, tmp_path):
    address, _ = token_cluster
    proc, store = _sweep(address, tmp_path, {"RAY_AUTH_MODE": "disabled", "HOME": str(tmp_path)})
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "RAY_AUTH_MODE=token" in lines[0] and "auth_token" in lines[0], proc.stderr
    assert not store.exists()


def test_with_the_token_the_sweep_and_confirm_run(token_cluster, tmp_path):
    """...and `confirm --address` is refused in one line without it, with nothing written, and runs with it."""
    address, home = token_cluster
    with_token = {"RAY_AUTH_MODE": "token", "HOME": home}
    proc, store = _sweep(address, tmp_path, with_token)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert (store / "space" / "sweep.yaml").is_file()

    confirm = [sys.executable, "-m", "ssl_tune", "confirm", "--sweep", str(store / "space"), "--address", address]
    confirm += ["--top", "1", "--seeds", "1", "--epochs", "1"]
    refused = run_cli(confirm, env={"RAY_AUTH_MODE": "disabled", "HOME": str(tmp_path)})
    lines = refused.stderr.strip().splitlines()
    assert refused.returncode == 2 and len(lines) == 1 and "RAY_AUTH_MODE=token" in lines[0], refused.stderr
    assert not (store / "space" / "confirm").exists()
    confirmed = run_cli(confirm, env=with_token)
    assert confirmed.returncode == 0, confirmed.stdout[-3000:] + confirmed.stderr[-3000:]
    assert (store / "space" / "confirm" / "confirm.parquet").is_file()
