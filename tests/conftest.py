"""Shared fixtures: the real CIFAR-10 batches in ../shared/datasets; torch's thread count restored after each test."""

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


@pytest.fixture(autouse=True)
def _restore_torch_threads():
    """A test (or an in-process trial) that sets torch's thread count must not leave it for the next ones: one
    left at 1 ran every later CPU-bound test single-threaded (the 8-epoch SimSiam test took 148 s in CI)."""
    import torch

    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)
