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
