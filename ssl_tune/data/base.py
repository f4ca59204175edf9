"""The in-memory dataset type and the registry of dataset loaders."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from ssl_tune.errors import UsageError
from ssl_tune.registry import Registry


@dataclass(frozen=True)
class ImageData:
    """A labelled train/test split as uint8 (N, 3, H, W) images and int64 labels."""

    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    num_classes: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    @property
    def image_size(self) -> int:
        return int(self.train_images.shape[-1])

    def to(self, device: torch.device | str) -> ImageData:
        return replace(
            self,
            train_images=self.train_images.to(device),
            train_labels=self.train_labels.to(device),
            test_images=self.test_images.to(device),
            test_labels=self.test_labels.to(device),
        )

    def subset(self, train: int | None, test: int | None) -> ImageData:
        """The first `train` / `test` images, in the dataset's fixed order."""
        for what, n, have in (("train", train, len(self.train_labels)), ("test", test, len(self.test_labels))):
            if n is not None and n > have:
                raise UsageError(f"{what}_subset {n} is larger than the {what} split ({have} images)")
        return replace(
            self,
            train_images=self.train_images[:train],
            train_labels=self.train_labels[:train],
            test_images=self.test_images[:test],
            test_labels=self.test_labels[:test],
        )


@dataclass(frozen=True)
class DataRequest:
    """What a loader is asked for: where the data lives and the image size (for resizing loaders).

    `location` is `--data-dir` as given (a path or a URI such as s3://bucket/prefix); `data_dir` is it as a
    local Path. `shard` = (rank, world_size) asks a sharded loader for this rank's part of the train split.
    """

    data_dir: Path | None
    download: bool
    image_size: int | None
    train_subset: int | None = None
    test_subset: int | None = None
    location: str | None = None
    shard: tuple[int, int] | None = None


Loader = Callable[[DataRequest], ImageData]
DATASETS = Registry[Loader]("dataset")
SHARDED: set[str] = set()  # loaders that can read one rank's part of the train split


def register_dataset(name: str, *, sharded: bool = False) -> Callable[[Loader], Loader]:
    def add(fn: Loader) -> Loader:
        DATASETS.add(name, fn)
        if sharded:
            SHARDED.add(name)
        return fn

    return add


def load_data(
    name: str,
    data_dir: str | Path | None = None,
    *,
    download: bool = False,
    image_size: int | None = None,
    train_subset: int | None = None,
    test_subset: int | None = None,
    shard: tuple[int, int] | None = None,
) -> ImageData:
    """Load a registered dataset, check it, and take the requested subsets. Raises UsageError.

    With `shard=(rank, world_size)` a sharded loader returns only this rank's part of the (subset) train
    split, and the whole test split.
    """
    loader = DATASETS.get(name)
    if shard is not None:
        rank, world_size = shard
        if name not in SHARDED:
            raise UsageError(f"dataset '{name}' cannot be read per rank (sharded: {', '.join(sorted(SHARDED))})")
        if not 0 <= rank < world_size:
            raise UsageError(f"shard rank {rank} is not in [0, {world_size})")
    request = DataRequest(
        Path(data_dir).expanduser() if data_dir else None,
        download,
        image_size,
        train_subset,
        test_subset,
        location=str(data_dir) if data_dir else None,
        shard=shard,
    )
    # a sharded loader takes train_subset itself, from the global order, before it keeps this rank's part
    return loader(request).subset(None if shard else train_subset, test_subset)


def require_dir(request: DataRequest, dataset: str) -> Path:
    if request.data_dir is None:
        raise UsageError(f"dataset '{dataset}' needs --data-dir")
    return request.data_dir


# the loaders register themselves on import
from ssl_tune.data import cifar, imagefolder, parquet, synthetic  # noqa: E402, F401
