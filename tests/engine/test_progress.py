"""`ssl-tune train`'s progress bar: on a terminal a per-epoch bar (images/s, last loss and kNN); in logs, one line
per epoch and no bar. Real processes, with stderr on a pseudo-terminal or a pipe."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest

from tests.helpers import REPO, SMALL_SIMSIAM

ARGS = [
    *("--method", "simsiam", "--backbone", "resnet_tiny", "--dataset", "synthetic"),
    *("--train-subset", "512", "--test-subset", "128", "--batch-size", "128", "--epochs", "2"),
    *(arg for k, v in SMALL_SIMSIAM.items() for arg in ("--set", f"method_params.{k}={v}")),
]
EPOCH_LINE = re.compile(r"^epoch +(\d+)/2  ")


def _train(out: Path, stderr: int) -> subprocess.Popen:
    command = [sys.executable, "-m", "ssl_tune", "train", *ARGS, "--out", str(out)]
    env = {**os.environ, "COLUMNS": "160"}
    return subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=stderr)


@pytest.mark.slow
def test_a_terminal_gets_a_bar_with_images_per_second_loss_and_knn(tmp_path):
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 160, 0, 0))  # a 160-column terminal
    proc = _train(tmp_path / "tty", slave)
    os.close(slave)
    chunks = []
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        try:
            data = os.read(master, 65536)
        except OSError:  # the child closed its end
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    stdout, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0
    bar = b"".join(chunks).decode(errors="replace")
    assert "\r" in bar and "img/s" in bar, bar[-2000:]
    assert re.search(r"epoch 1/2.*last knn \d+\.\d%", bar), bar[-2000:]
    assert re.search(r"epoch 2/2.*last loss -?\d+\.\d{4}, last knn \d+\.\d%", bar), bar[-2000:]
    # the per-epoch lines still go to stdout
    assert [int(m.group(1)) for line in stdout.decode().splitlines() if (m := EPOCH_LINE.match(line))] == [0, 1, 2]


@pytest.mark.slow
def test_a_log_gets_one_line_per_epoch_and_no_bar(tmp_path):
    proc = _train(tmp_path / "log", subprocess.PIPE)
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr.decode()[-2000:]
    assert b"\r" not in stdout + stderr and b"img/s" not in stderr
    lines = stdout.decode().splitlines()
    epochs = [line for line in lines if EPOCH_LINE.match(line)]
    assert [int(EPOCH_LINE.match(line).group(1)) for line in epochs] == [0, 1, 2]
    assert all(len(line) < 120 for line in epochs)
    assert all("loss" in line and "knn" in line and "img/s" in line for line in epochs[1:])
    assert len(lines) == len(epochs) + 1 and lines[-1].startswith("done: test_knn_acc")
