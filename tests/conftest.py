"""Shared fixtures: the real CIFAR-10 batches (found as `ssl_tune.data.locate` says); torch's thread count
restored after each test."""

from __future__ import annotations

from pathlib import Path

import pytest

from ssl_tune.data.locate import fetch_cifar10, find_datasets
from ssl_tune.errors import UsageError
from tests.helpers import SHARED_DATASETS

CIFAR10_MARKER = "cifar-10-batches-py/data_batch_1"


@pytest.fixture(scope="session")
def cifar_dir() -> Path:
    """The folder holding the official CIFAR-10 python batches: $SSL_TUNE_DATASETS, ../shared/datasets, else the
    user cache (downloaded there once when the network allows). The tests fail (not skip) without them."""
    try:
        return find_datasets(CIFAR10_MARKER, candidates=[SHARED_DATASETS], fetch=fetch_cifar10)
    except UsageError as err:
        missing = str(err)
    pytest.fail(missing, pytrace=False)  # one line, outside the except: no chained traceback


@pytest.fixture(autouse=True)
def _restore_torch_threads():
    """A test (or an in-process trial) that sets torch's thread count must not leave it for the next ones: one
    left at 1 ran every later CPU-bound test single-threaded (the 8-epoch SimSiam test took 148 s in CI)."""
    import torch

    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)
