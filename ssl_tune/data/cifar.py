"""CIFAR-10 and CIFAR-100 from torchvision's python batches, md5-checked, with no implicit download.

The batches are read here rather than through `torchvision.datasets.CIFAR10`, whose constructor checks the
md5 of every file of both splits: a run that evaluates on validation images must not open the test batch.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import torch
from torchvision import datasets
from torchvision.datasets.utils import check_integrity

from ssl_tune.data.base import DataRequest, ImageData, register_dataset
from ssl_tune.data.locate import find_datasets, torchvision_fetch
from ssl_tune.errors import UsageError

STATS = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
}
CLASSES = {"cifar10": 10, "cifar100": 100}


def _read_batches(folder: Path, files: list[list[str]], name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 (N, 3, 32, 32) images and int64 labels from the named batches, each md5-checked first."""
    images, labels = [], []
    for file, md5 in files:
        path = folder / file
        if not check_integrity(str(path), md5):
            raise UsageError(f"{path}: md5 mismatch (corrupt or not the official file)")
        try:
            with open(path, "rb") as f:
                entry = pickle.load(f, encoding="latin1")
            images.append(np.asarray(entry["data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
            labels.extend(entry["labels"] if "labels" in entry else entry["fine_labels"])
        except (OSError, pickle.UnpicklingError, KeyError, ValueError) as err:
            raise UsageError(f"cannot read {name} batch {path}: {err}") from err
    return torch.from_numpy(np.concatenate(images)), torch.tensor(labels, dtype=torch.int64)


def _root(name: str, cls: type[datasets.CIFAR10], request: DataRequest) -> Path:
    """`--data-dir`, else the folder `ssl_tune.data.locate` finds (with `--download`: the user cache, filled)."""
    if request.data_dir is not None:
        if request.download:
            cls(root=str(request.data_dir), train=True, download=True)  # fetches and checks both splits
        return request.data_dir
    fetch = torchvision_fetch(cls.__name__) if request.download else None
    marker = f"{cls.base_folder}/{cls.train_list[0][0]}"
    return find_datasets(marker, fetch=fetch, what=f"dataset '{name}' needs --data-dir: ")


def _load(name: str, cls: type[datasets.CIFAR10], request: DataRequest) -> ImageData:
    root = _root(name, cls, request)
    folder = root / cls.base_folder
    wanted = cls.train_list + (cls.test_list if request.with_test else [])
    missing = [f for f, _ in wanted if not (folder / f).is_file()]
    if missing:
        raise UsageError(f"no {name} in {root}: {folder / missing[0]} is missing (pass --download to fetch it)")
    train_x, train_y = _read_batches(folder, cls.train_list, name)
    test_x = test_y = None
    if request.with_test:
        test_x, test_y = _read_batches(folder, cls.test_list, name)
    mean, std = STATS[name]
    return ImageData(train_x, train_y, test_x, test_y, CLASSES[name], mean, std)


@register_dataset("cifar10")
def cifar10(request: DataRequest) -> ImageData:
    return _load("cifar10", datasets.CIFAR10, request)


@register_dataset("cifar100")
def cifar100(request: DataRequest) -> ImageData:
    return _load("cifar100", datasets.CIFAR100, request)
