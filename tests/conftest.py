"""Shared fixtures: the real CIFAR-10 batches in ../shared/datasets, and small run settings."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATASETS = Path(os.environ.get("SSL_TUNE_DATASETS", REPO.parent / "shared" / "datasets"))

# small heads so that CPU tests spend their time in the backbone
SMALL_SIMSIAM = {"proj_hidden_dim": 256, "proj_output_dim": 256, "pred_hidden_dim": 64}


@pytest.fixture(scope="session")
def cifar_dir() -> Path:
    """The official CIFAR-10 python batches; the tests fail (not skip) without them."""
    folder = SHARED_DATASETS / "cifar-10-batches-py"
    assert (folder / "data_batch_1").is_file(), f"CIFAR-10 batches not found in {folder}"
    return SHARED_DATASETS
