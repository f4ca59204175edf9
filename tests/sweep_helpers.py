"""Small sweeps for the tests: a tiny space on `synthetic` data that a 2-CPU machine runs in about a minute."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml
from ray.train.v2.api.callback import UserCallback

from tests.conftest import REPO

TINY_FIXED: dict[str, Any] = {
    "method": "simsiam",
    "backbone": "resnet_tiny",
    "dataset": "synthetic",
    "train_subset": 512,
    "test_subset": 128,
    "epochs": 3,
    "batch_size": 128,
    "method_params": {"proj_hidden_dim": 64, "proj_output_dim": 64, "pred_hidden_dim": 16},
}


def write_space(path: Path, **sections: Any) -> Path:
    space = {
        "fixed": dict(TINY_FIXED),
        "params": {
            "lr": {"type": "loguniform", "low": 1e-3, "high": 2.0},
            "weight_decay": {"type": "loguniform", "low": 1e-6, "high": 1e-3},
        },
        "asha": {"grace_period": 1, "reduction_factor": 3},
        "sweep": {"num_samples": 6, "cpus_per_worker": 1},
    }
    for key, value in sections.items():
        space[key] = {**space.get(key, {}), **value} if isinstance(value, dict) else value
    path.write_text(yaml.safe_dump(space))
    return path


def sweep_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "ssl_tune", "sweep", *args]


def run_cli(args: list[str], timeout: float = 900) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "RAY_AUTH_MODE": "disabled"}
    return subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)


class AllRanksRecorder(UserCallback):
    """A Ray Train callback that appends every rank's reported metrics (one JSON list per report) to a file."""

    def __init__(self, path: str) -> None:
        self.path = path

    def after_report(self, run_context: Any, metrics: list[dict[str, Any]], checkpoint: Any) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps(metrics) + "\n")
