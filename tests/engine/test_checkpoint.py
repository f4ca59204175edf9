"""Checkpoints are atomic (a kill during a write never corrupts the latest one) and never run code on load."""

from __future__ import annotations

import pickle
import signal
import subprocess
import sys
import time

import pytest
import torch

from ssl_tune.engine.checkpoint import load_checkpoint, save_checkpoint
from ssl_tune.storage import atomic_write
from tests.helpers import REPO

WRITER = """
import sys, torch
from ssl_tune.engine.checkpoint import save_checkpoint
path = sys.argv[1]
i = 0
while True:
    i += 1
    save_checkpoint({"step": i, "weights": torch.full((4_000_000,), float(i))}, path)  # 16 MB per write
    print(i, flush=True)
"""


def test_kills_during_writes_never_leave_a_corrupt_checkpoint(tmp_path):
    path = tmp_path / "last.pt"
    for delay in (0.3, 0.55, 0.8, 1.1, 1.45):
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], cwd=REPO, stdout=subprocess.PIPE, text=True)
        proc.stdout.readline()  # at least one complete write
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        state = load_checkpoint(path)
        assert torch.equal(state["weights"], torch.full((4_000_000,), float(state["step"])))
    leftovers = [p.name for p in tmp_path.iterdir() if p.name != "last.pt"]
    assert all(name.endswith(".tmp") for name in leftovers)  # only orphaned temp files, never the target


def test_failed_write_keeps_the_previous_file_and_cleans_up(tmp_path):
    path = tmp_path / "last.pt"
    save_checkpoint({"step": 1}, path)

    def broken(f):
        f.write(b"partial")
        raise OSError("disk full")

    with pytest.raises(OSError):
        atomic_write(path, broken)
    assert load_checkpoint(path) == {"step": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


class _Payload:
    def __reduce__(self):
        return (open, (str(MARKER), "w"))


MARKER = None


def test_loading_never_runs_code(tmp_path):
    global MARKER
    MARKER = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    with open(path, "wb") as f:
        torch.save({"model": _Payload()}, f, pickle_module=pickle)
    assert not MARKER.exists()
    with pytest.raises(pickle.UnpicklingError):
        load_checkpoint(path)
    assert not MARKER.exists()
