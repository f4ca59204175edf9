"""A sweep on a real autoscaling cluster (`tests/fake_cluster.py`: Ray's autoscaler with its fake multi-node
provider, in a private network namespace). One GPU node is up when the sweep starts, as one left warm by a
previous sweep would be; a sweep of 4 one-GPU trials must still ask for more nodes, run more trials at once
than fitted at its start, on worker nodes only, and leave the extra nodes to be removed once idle."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from ssl_tune.tune.devices import ASSIGNMENT_FILE, GPU_AS_CPU_ENV
from ssl_tune.tune.results import load_sweep
from tests.helpers import REPO, write_space

pytestmark = pytest.mark.slow  # starts a Ray cluster and its autoscaler


def _most_at_once(spans: list[tuple[float, float]]) -> int:
    """The most intervals that overlap at one time."""
    return max(sum(start <= t <= end for start, end in spans) for t, _ in spans)


def test_a_sweep_scales_out_from_a_warm_node_and_back_in(tmp_path):
    gpu_log, report = tmp_path / "gpus", tmp_path / "cluster.json"
    space = write_space(
        tmp_path / "space.yaml",
        fixed={"epochs": 12},  # each trial outlasts a node's start (about 10 s here)
        sweep={"num_samples": 4, "gpus_per_trial": 1, "cpus_per_worker": 1},
    )
    sweep = [sys.executable, "-m", "ssl_tune", "sweep", "--space", str(space), "--storage", str(tmp_path / "store")]
    sweep += ["--name", "autoscaled", "--early-stopping", "none"]
    runner = ["unshare", "-n", sys.executable, "-m", "tests.fake_cluster", "--report", str(report)]
    runner += ["--gpu-nodes-up", "1", "--max-gpu-nodes", "3", "--linger", "25", "--", *sweep]
    env = {**os.environ, GPU_AS_CPU_ENV: str(gpu_log), "PYTHONUNBUFFERED": "1"}
    subprocess.run(runner, cwd=REPO, env=env, timeout=1200, check=True)
    cluster = json.loads(report.read_text())
    assert cluster["returncode"] == 0, cluster["stdout"][-3000:] + cluster["stderr"][-3000:]

    samples = cluster["samples"]
    assert len(samples[0]["gpu_nodes"]) == 1, samples[0]  # the warm node, and only it, when the sweep started
    peak = max(len(s["gpu_nodes"]) for s in samples)
    assert peak >= 2, "the autoscaler was never asked for another GPU node"
    assert len(samples[-1]["gpu_nodes"]) < peak, "the idle nodes were not removed"

    trial_nodes = {json.loads(line)["node_id"] for line in (gpu_log / ASSIGNMENT_FILE).read_text().splitlines()}
    gpu_nodes = {node for s in samples for node in s["gpu_nodes"]}
    assert trial_nodes <= gpu_nodes and cluster["head_node_id"] not in trial_nodes
    assert len(trial_nodes) >= 2

    trials = load_sweep(str(tmp_path / "store" / "autoscaled")).trials
    assert len(trials) == 4 and all(t.status == "completed" for t in trials)
    spans = [(t.results[0]["timestamp"], t.results[-1]["timestamp"]) for t in trials]
    assert _most_at_once(spans) >= 2, spans  # one fitted when the sweep started
