"""CIFAR-10 and CIFAR-100 through torchvision.datasets, with md5 checks and no implicit download."""

from __future__ import annotations

import numpy as np
import torch
from torchvision import datasets
from torchvision.datasets.utils import check_integrity

from ssl_tune.data.base import DataRequest, ImageData, register_dataset, require_dir
from ssl_tune.errors import UsageError

STATS = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
}


def _load(name: str, cls: type[datasets.CIFAR10], request: DataRequest) -> ImageData:
    root = require_dir(request, name)
    folder = root / cls.base_folder
    files = [f for f, _ in cls.train_list + cls.test_list]
    if not request.download:
        missing = [f for f in files if not (folder / f).is_file()]
        if missing:
            raise UsageError(f"no {name} in {root}: {folder / missing[0]} is missing (pass --download to fetch it)")
    try:
        train = cls(root=str(root), train=True, download=request.download)
        test = cls(root=str(root), train=False, download=request.download)
    except RuntimeError as err:
        bad = [f for f, md5 in cls.train_list + cls.test_list if not check_integrity(str(folder / f), md5)]
        if bad:
            raise UsageError(f"{folder / bad[0]}: md5 mismatch (corrupt or not the official file)") from err
        raise UsageError(f"cannot read {name} from {root}: {err}") from err
    mean, std = STATS[name]

    def images(ds: datasets.CIFAR10) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(ds.data.transpose(0, 3, 1, 2)))

    return ImageData(
        train_images=images(train),
        train_labels=torch.tensor(train.targets, dtype=torch.int64),
        test_images=images(test),
        test_labels=torch.tensor(test.targets, dtype=torch.int64),
        num_classes=len(train.classes),
        mean=mean,
        std=std,
    )


@register_dataset("cifar10")
def cifar10(request: DataRequest) -> ImageData:
    return _load("cifar10", datasets.CIFAR10, request)


@register_dataset("cifar100")
def cifar100(request: DataRequest) -> ImageData:
    return _load("cifar100", datasets.CIFAR100, request)
