"""A trial that can never fit the local cluster a sweep starts is refused in one line before any trial starts,
and nothing is written; a streamed trial keeps a CPU free for its Ray Data decode tasks, which otherwise wait
for CPUs the trial holds (a streamed 2-worker trial holding every CPU printed its start line and then hung)."""

from __future__ import annotations

import os

import pytest

from ssl_tune.cli import main
from tests.helpers import write_space

pytestmark = pytest.mark.slow  # starts a local Ray cluster


@pytest.fixture(autouse=True)
def _no_token_warning(monkeypatch):
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")  # else Ray's local cluster warns that it asks for a token


def _refused(capsys, store, expected: str) -> None:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and expected in err, err
    assert not store.exists()


def test_a_trial_larger_than_the_machine_is_refused(tmp_path, capsys):
    space, store = write_space(tmp_path / "space.yaml", sweep={"num_samples": 1}), tmp_path / "store"
    code = main(["sweep", "--space", str(space), "--storage", str(store), "--cpus-per-worker", "512"])
    assert code == 2
    _refused(capsys, store, "one trial needs {'CPU': 512.0} and this machine's Ray cluster has")


def test_a_streamed_trial_that_would_hold_every_cpu_is_refused(tmp_path, capsys):
    pack = tmp_path / "pack"
    args = ["--train-subset", "512", "--test-subset", "128", "--image-size", "16"]
    assert main(["data", "pack", "--source", "synthetic", "--out", str(pack), *args]) == 0
    half = len(os.sched_getaffinity(0)) / 2  # of the CPUs Ray's local cluster gets: this process's
    fixed = {"dataset": "parquet", "data_dir": str(pack), "data_placement": "streamed_shards", "train_subset": None}
    fixed |= {"test_subset": None, "stream_eval_subset": 256}
    sweep = {"num_samples": 1, "workers_per_trial": 2, "cpus_per_worker": half}
    space, store = write_space(tmp_path / "space.yaml", fixed=fixed, sweep=sweep), tmp_path / "store"
    capsys.readouterr()
    assert main(["sweep", "--space", str(space), "--storage", str(store)]) == 2
    _refused(capsys, store, "(a streamed trial keeps 1 CPU free for its decode tasks)")


def test_trials_packed_on_a_gpu_share_its_host_memory(tmp_path, monkeypatch):
    """At gpus_per_trial 0.25 each trial's share of host_data_limit_gb is a quarter: a pack that one trial would
    hold in memory streams when four share the node; at one GPU per trial it stays resident."""
    from ssl_tune.data.streaming import decoded_gb
    from ssl_tune.tune.checks import SweepRequest, check_sweep

    pack = tmp_path / "pack"
    assert main(["data", "pack", "--source", "synthetic", "--out", str(pack), "--train-subset", "512"]) == 0
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:6379")  # a GPU cluster elsewhere: no GPU needed on this machine
    limit = 2 * decoded_gb(512, 32)  # one resident copy fits, a quarter of it does not
    fixed = {"dataset": "parquet", "data_dir": str(pack), "train_subset": None, "host_data_limit_gb": limit}
    for gpus, share, streamed in ((1, limit, False), (0.25, limit / 4, True)):
        space = write_space(tmp_path / f"{gpus}.yaml", fixed=fixed, sweep={"gpus_per_trial": gpus})
        checked = check_sweep(SweepRequest(str(space), str(tmp_path / "store"), name=f"g{gpus}"))
        assert checked.base.host_data_limit_gb == pytest.approx(share) and checked.streamed is streamed
        assert checked.space.fixed["host_data_limit_gb"] == pytest.approx(share)  # what the trials are given
