"""Sweeps on a real autoscaling cluster (`tests/fake_cluster.py`: Ray's autoscaler with its fake multi-node
provider, in a private network namespace; GPU nodes of 1 CPU and 1 fake GPU, trials on CPU through
`SSL_TUNE_TEST_ONLY_GPU_AS_CPU`, which logs each trial's node)."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from ssl_tune.tune.devices import ASSIGNMENT_FILE, GPU_AS_CPU_ENV
from ssl_tune.tune.results import load_sweep
from tests.helpers import REPO, write_space
from tests.s3_server import BUCKET

pytestmark = pytest.mark.slow  # starts a Ray cluster and its autoscaler


def _on_fake_cluster(
    root: Path, sweep: dict[str, Any], epochs: int, *cluster_args: str, storage: str | None = None
) -> tuple[dict, list[dict]]:
    """Run a sweep of `sweep` settings on a fake cluster with one warm GPU node, kept in `storage` (default:
    root/store): the cluster's report and the trials' node assignments."""
    gpu_log, report = root / "gpus", root / "cluster.json"
    space = write_space(root / "space.yaml", fixed={"epochs": epochs}, sweep=sweep)
    storage = storage or str(root / "store")
    command = [sys.executable, "-m", "ssl_tune", "sweep", "--space", str(space), "--storage", storage]
    command += ["--name", "fake", "--early-stopping", "none"]
    runner = ["unshare", "-n", sys.executable, "-m", "tests.fake_cluster", "--report", str(report)]
    runner += ["--gpu-nodes-up", "1", "--max-gpu-nodes", "3", *cluster_args, "--", *command]
    env = {**os.environ, GPU_AS_CPU_ENV: str(gpu_log), "PYTHONUNBUFFERED": "1"}
    subprocess.run(runner, cwd=REPO, env=env, timeout=1200, check=True)
    cluster = json.loads(report.read_text())
    assert cluster["returncode"] == 0, cluster["stdout"][-3000:] + cluster["stderr"][-3000:]
    assigned = [json.loads(line) for line in (gpu_log / ASSIGNMENT_FILE).read_text().splitlines()]
    return cluster, assigned


def _most_at_once(spans: list[tuple[float, float]]) -> int:
    """The most intervals that overlap at one time."""
    return max(sum(start <= t <= end for start, end in spans) for t, _ in spans)


def test_a_sweep_scales_out_from_a_warm_node_and_back_in(tmp_path):
    """As a GPU node left warm by a previous sweep: 4 one-GPU trials must still ask for more nodes, run more
    trials at once than fitted at the start, on worker nodes only, and the extra nodes go once idle. The sweep
    keeps everything in S3 (moto's server in the cluster's namespace), as a multi-node sweep must."""
    settings = {"num_samples": 4, "gpus_per_trial": 1, "cpus_per_worker": 1}
    # each trial outlasts a node's start (about 10 s here)
    s3 = ["--linger", "25", "--s3-mirror", str(tmp_path / "bucket")]
    cluster, assigned = _on_fake_cluster(tmp_path, settings, 12, *s3, storage=f"s3://{BUCKET}/sweeps")
    samples = cluster["samples"]
    assert len(samples[0]["gpu_nodes"]) == 1, samples[0]  # the warm node, and only it, when the sweep started
    peak = max(len(s["gpu_nodes"]) for s in samples)
    assert peak >= 2, "the autoscaler was never asked for another GPU node"
    assert len(samples[-1]["gpu_nodes"]) < peak, "the idle nodes were not removed"

    trial_nodes = {a["node_id"] for a in assigned}
    assert trial_nodes <= {node for s in samples for node in s["gpu_nodes"]}
    assert cluster["head_node_id"] not in trial_nodes and len(trial_nodes) >= 2

    trials = load_sweep(str(tmp_path / "bucket" / "sweeps" / "fake")).trials  # as read back through S3
    assert len(trials) == 4 and all(t.status == "completed" and t.checkpoint for t in trials)
    spans = [(t.results[0]["timestamp"], t.results[-1]["timestamp"]) for t in trials]
    assert _most_at_once(spans) >= 2, spans  # one fitted when the sweep started


def test_a_trial_survives_the_preemption_of_its_node(tmp_path):
    """Its node's raylet is killed mid-trial: the trial resumes on another node from its last checkpoint in the
    shared storage, every epoch is recorded exactly once, and the sweep exits 0."""
    settings = {"num_samples": 1, "gpus_per_trial": 1, "cpus_per_worker": 1}
    preempt = ["--preempt-at-checkpoint", "3", "--storage", str(tmp_path / "store")]  # epochs 0-3 saved
    cluster, assigned = _on_fake_cluster(tmp_path, settings, 30, *preempt)
    preempted = cluster["preempted"]["node_id"]
    assert assigned[0]["node_id"] == preempted and len(assigned) == 2, assigned
    assert assigned[1]["node_id"] != preempted  # restarted elsewhere

    (trial,) = load_sweep(str(tmp_path / "store" / "fake")).trials
    epochs = [r["epoch"] for r in trial.results]
    assert trial.status == "completed" and epochs == list(range(31)), epochs  # each epoch once, none lost


JOB_SCENARIO = """
set -eu
jobs="$RAY job submit --address http://127.0.0.1:8265 --working-dir $WORKDIR"
$jobs --submission-id first --no-wait -- $SSL_TUNE sweep --space space.yaml --storage $STORE --name jobs
for _ in $(seq 600); do  # until two trials have ended, at most 5 minutes
    [ "$(ls $STORE/jobs/trial-*/trial_end.json 2>/dev/null | wc -l)" -ge 2 ] && break
    sleep 0.5
done
$RAY job stop --address http://127.0.0.1:8265 first  # the driver is killed mid-sweep
$RAY job logs --address http://127.0.0.1:8265 first > $LOGS
cp $STORE/jobs/asha_state.json $ASHA_BEFORE
for end in $STORE/jobs/trial-*/trial_end.json; do  # the trials that had ended: their records
    md5sum $end $(dirname $end)/result.json
done > $ENDED_BEFORE
# the resume reads everything from the storage: no working dir (reusing the first job's package, which Ray
# deletes once that job is stopped, leaves the new driver without a current directory)
$RAY job submit --address http://127.0.0.1:8265 -- $SSL_TUNE sweep --storage $STORE --name jobs --resume
"""


def test_ray_job_submit_runs_a_sweep_and_a_killed_driver_resumes(tmp_path):
    """The documented path: `ray job submit --working-dir . -- ssl-tune sweep ...` on the launched cluster. Its
    logs show the compact trial lines; `ray job stop` kills the driver mid-sweep, and a second job with
    --resume finishes it without rerunning a finished trial or recording an epoch twice, ASHA keeping every
    decision it had made."""
    workdir, store, logs = tmp_path / "job", tmp_path / "store", tmp_path / "first.log"
    asha_before, ended_before = tmp_path / "asha_before.json", tmp_path / "ended_before.txt"
    workdir.mkdir()
    sweep = {"num_samples": 4, "gpus_per_trial": 1, "cpus_per_worker": 1}
    write_space(workdir / "space.yaml", fixed={"epochs": 6}, sweep=sweep)
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, GPU_AS_CPU_ENV: str(tmp_path / "gpus"), "PYTHONUNBUFFERED": "1", "LOGS": str(logs)}
    env |= {"RAY": str(bin_dir / "ray"), "SSL_TUNE": str(bin_dir / "ssl-tune"), "WORKDIR": str(workdir)}
    env |= {"STORE": str(store), "ASHA_BEFORE": str(asha_before), "ENDED_BEFORE": str(ended_before)}
    report = tmp_path / "cluster.json"
    runner = ["unshare", "-n", sys.executable, "-m", "tests.fake_cluster", "--report", str(report)]
    runner += ["--gpu-nodes-up", "1", "--max-gpu-nodes", "3", "--", "bash", "-c", JOB_SCENARIO]
    subprocess.run(runner, cwd=REPO, env=env, timeout=1200, check=True)
    cluster = json.loads(report.read_text())
    assert cluster["returncode"] == 0, cluster["stdout"][-3000:] + cluster["stderr"][-3000:]

    first = logs.read_text()
    assert "sweep jobs: 4 trials" in first and " started  lr=" in first, first[-3000:]
    assert "Trial status" not in first and "╭" not in first  # Tune's tables stay out of the job's log
    ended = len(re.findall(r"(completed|stopped) at epoch", first))
    assert 2 <= ended < 4 and "0 errors" not in first, first[-3000:]  # killed mid-sweep
    resumed = cluster["stdout"]
    assert "resuming sweep" in resumed and "4 trials, 0 errors" in resumed, resumed[-3000:]

    for line in ended_before.read_text().splitlines():  # a trial that had ended was not run again
        digest, name = line.split()
        assert hashlib.md5(Path(name).read_bytes()).hexdigest() == digest, name
    trials = load_sweep(str(store / "jobs")).trials
    assert len(trials) == 4 and all(t.status in ("completed", "stopped") for t in trials)
    for trial in trials:  # each epoch once, none lost (a trial cut short resumed from its last known checkpoint)
        epochs = [r["epoch"] for r in trial.results]
        assert epochs == list(range(len(epochs))), (trial.trial_id, epochs)
        assert (trial.status == "completed") == (epochs[-1] == 6), (trial.trial_id, trial.status, epochs)
    before, after = (json.loads(p.read_text()) for p in (asha_before, store / "jobs" / "asha_state.json"))
    for bracket_before, bracket_after in zip(before["rungs"], after["rungs"], strict=True):
        for (milestone, seen), (milestone_after, seen_after) in zip(bracket_before, bracket_after, strict=True):
            assert milestone == milestone_after and seen.items() <= seen_after.items(), (seen, seen_after)
    assert before["stopped"].items() <= after["stopped"].items()  # ASHA decides as before the kill
