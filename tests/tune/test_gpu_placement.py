"""GPUs as the hardware has them, on a real Ray cluster whose node declares two GPUs (this machine has none, so
`SSL_TUNE_TEST_ONLY_GPU_AS_CPU` lets GPU-reserved trials train on CPU and log the GPU ids Ray gave each rank):
a 2-worker trial's ranks hold different GPUs, two half-GPU trials share one, and without the switch a trial that
reserved a GPU stops with one line instead of training on CPU."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ssl_tune.tune.devices import ASSIGNMENT_FILE, GPU_AS_CPU_ENV
from ssl_tune.tune.results import load_sweep
from tests.helpers import ray_cluster_of, run_cli, sweep_cmd, write_space

pytestmark = pytest.mark.slow  # starts a Ray cluster


@pytest.fixture(scope="module")
def two_gpu_node():
    with ray_cluster_of((2, 2, {"ssl_tune_driver": 1000})) as address:
        yield address


def _sweep(address: str, root: Path, name: str, sweep: dict, log: Path | None, *args: str):
    space = write_space(root / f"{name}.yaml", fixed={"epochs": 1}, sweep=sweep)
    cmd = sweep_cmd("--space", str(space), "--storage", str(root / "store"), "--name", name, "--address", address)
    return run_cli([*cmd, *args], env={GPU_AS_CPU_ENV: str(log)} if log else None)


def _assignments(log: Path) -> list[dict]:
    return [json.loads(line) for line in (log / ASSIGNMENT_FILE).read_text().splitlines()]


def test_the_ranks_of_a_two_worker_trial_hold_different_gpus(two_gpu_node, tmp_path):
    settings = {"num_samples": 1, "workers_per_trial": 2, "gpus_per_trial": 2, "cpus_per_worker": 0.5}
    proc = _sweep(two_gpu_node, tmp_path, "ddp", settings, tmp_path / "gpus")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    ranks = {a["rank"]: a["gpu_ids"] for a in _assignments(tmp_path / "gpus")}
    assert sorted(ranks) == [0, 1] and all(len(ids) == 1 for ids in ranks.values()), ranks
    assert ranks[0] != ranks[1], ranks


def test_two_half_gpu_trials_share_one_gpu(two_gpu_node, tmp_path):
    settings = {"num_samples": 2, "gpus_per_trial": 0.5, "cpus_per_worker": 1, "max_concurrent": 2}
    proc = _sweep(two_gpu_node, tmp_path, "packed", settings, tmp_path / "gpus", "--early-stopping", "none")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assigned = _assignments(tmp_path / "gpus")
    assert len(assigned) == 2 and assigned[0]["gpu_ids"] == assigned[1]["gpu_ids"] and assigned[0]["gpu_ids"]
    assert assigned[0]["pid"] != assigned[1]["pid"]  # two trial processes at once, on one GPU
    trials = load_sweep(str(tmp_path / "store" / "packed")).trials
    spans = [(t.results[0]["timestamp"], t.results[-1]["timestamp"]) for t in trials]
    assert spans[0][0] <= spans[1][1] and spans[1][0] <= spans[0][1], spans  # they ran at the same time


def test_a_trial_that_reserved_a_gpu_and_sees_none_says_so(two_gpu_node, tmp_path):
    settings = {"num_samples": 1, "gpus_per_trial": 1, "max_failures": 0}
    proc = _sweep(two_gpu_node, tmp_path, "nogpu", settings, None)
    assert proc.returncode != 0
    lines = [line for line in proc.stdout.splitlines() if "error at epoch 0" in line]
    assert len(lines) == 1 and "GpuUnavailable: trial" in lines[0] and "sees none" in lines[0], proc.stdout
    assert not (tmp_path / "gpus").exists()
