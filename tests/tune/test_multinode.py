"""A real 2-node Ray cluster on loopback: a 2-worker trial whose workers land on different nodes."""

from __future__ import annotations

import json
import time

import pytest

from ssl_tune.tune.results import load_sweep
from tests.helpers import ray_cluster_of, run_cli, sweep_cmd, write_space

pytestmark = pytest.mark.slow  # starts a Ray cluster or trains for several epochs


@pytest.fixture
def two_node_cluster():
    head = (1, 0, {"ssl_tune_driver": 1000, "head_node": 1})
    with ray_cluster_of(head, (1, 0, {"second_node": 1})) as address:
        yield address


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
