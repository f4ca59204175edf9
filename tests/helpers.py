"""Helpers shared by the tests (not a test module): paths, small settings, and tiny sweeps on `synthetic` data
that a 2-CPU machine runs in about a minute."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from ssl_tune.methods import METHODS

REPO = Path(__file__).resolve().parents[1]
SHARED_DATASETS = Path(os.environ.get("SSL_TUNE_DATASETS", REPO.parent / "shared" / "datasets"))

# small heads so that CPU tests spend their time in the backbone
SMALL_SIMSIAM = {"proj_hidden_dim": 256, "proj_output_dim": 256, "pred_hidden_dim": 64}
# the same for every method; only the keys a method has are used
SMALL_HEADS = {"proj_hidden_dim": 256, "proj_output_dim": 128, "pred_hidden_dim": 128, "num_prototypes": 256}


def small_params(method: str, **overrides: Any) -> dict[str, Any]:
    fields = METHODS[method].Params.model_fields
    return {k: v for k, v in {**SMALL_HEADS, **overrides}.items() if k in fields}


TINY_FIXED: dict[str, Any] = {
    "method": "simsiam",
    "backbone": "resnet_tiny",
    "dataset": "synthetic",
    "train_subset": 512,
    "test_subset": 128,
    "val_size": 128,  # the validation queries: as many as the test queries, so ASHA sees few ties
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


def run_cli(args: list[str], timeout: float = 900, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "RAY_AUTH_MODE": "disabled", **(env or {})}
    return subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
