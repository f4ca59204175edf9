"""The examples a newcomer runs first, at a tiny size: examples/simclr_minimal.py (SimCLR on real CIFAR-10,
no Ray) and examples/api_quickstart.py (the README's Python API example: sweep, export, train, confirm)."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from tests.helpers import REPO


def _run(script: str, args: list[str], cwd, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1", "RAY_AUTH_MODE": "disabled", **(env or {})}
    command = [sys.executable, str(REPO / "examples" / script), *args]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)


@pytest.mark.slow  # trains an epoch
def test_simclr_minimal_trains_on_cifar10_and_prints_knn(tmp_path, cifar_dir):
    args = ["--epochs", "1", "--train-subset", "512", "--test-subset", "256", "--batch-size", "128"]
    done = _run("simclr_minimal.py", [*args, "--proj-dim", "128"], tmp_path, {"SSL_TUNE_DATASETS": str(cifar_dir)})
    assert done.returncode == 0, done.stderr[-3000:]
    knn = [float(v) for v in re.findall(r"^epoch \d.*kNN (\d+\.\d+)%", done.stdout, re.M)]
    assert len(knn) == 2, done.stdout  # epoch 0 (the random network) and epoch 1
    assert all(15 < v <= 100 for v in knn), done.stdout  # 10 classes: chance is 10 %
    assert re.search(r"^epoch 1: loss \d+\.\d+", done.stdout, re.M), done.stdout


def test_simclr_minimal_without_cifar_is_one_line_and_exit_2(tmp_path):
    env = {"SSL_TUNE_DATASETS": "", "XDG_CACHE_HOME": str(tmp_path)}
    done = _run("simclr_minimal.py", ["--epochs", "1"], tmp_path, env)
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert "needs --data-dir" in done.stderr and str(tmp_path) in done.stderr


@pytest.mark.slow  # a sweep on a local Ray cluster, a retrain and a confirm
def test_the_readme_api_example_runs_sweep_export_train_and_confirm(tmp_path):
    args = ["--num-samples", "2", "--epochs", "2", "--grace-period", "1", "--retrain-epochs", "1", "--seeds", "1"]
    done = _run("api_quickstart.py", [*args, "--train-subset", "768"], tmp_path)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert "best trial" in done.stdout and "random network (epoch 0)" in done.stdout, done.stdout
    assert (tmp_path / "runs" / "best" / "best.yaml").is_file()
    assert (tmp_path / "runs" / "retrain" / "backbone.pt").is_file()
    assert (tmp_path / "sweeps" / "quickstart" / "confirm" / "confirm.md").is_file()
