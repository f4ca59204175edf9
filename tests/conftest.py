"""Shared fixtures: the real CIFAR-10 batches in ../shared/datasets."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import SHARED_DATASETS


@pytest.fixture(scope="session")
def cifar_dir() -> Path:
    """The official CIFAR-10 python batches; the tests fail (not skip) without them."""
    folder = SHARED_DATASETS / "cifar-10-batches-py"
    assert (folder / "data_batch_1").is_file(), f"CIFAR-10 batches not found in {folder}"
    return SHARED_DATASETS
