"""The in-memory dataset type and the registry of dataset loaders."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol

import torch

from ssl_tune.data.derived import channel_stats, resize, to_grey
from ssl_tune.data.splits import validation_split
from ssl_tune.errors import UsageError
from ssl_tune.registry import Registry

LABELED_QUERY_FRACTION = 0.5  # of a labeled set beside an unlabeled pool: the kNN's queries; the rest its bank


def _to(x: torch.Tensor | None, device: torch.device | str) -> torch.Tensor | None:
    return None if x is None else x.to(device)


def _head(x: torch.Tensor | None, n: int | None) -> torch.Tensor | None:
    return None if x is None else x[:n]


@dataclass(frozen=True)
class ImageData:
    """A train split and, when loaded, a test split: uint8 (N, 3, H, W) images and int64 (N,) labels.

    Unlabeled data has no labels (`train_labels is None`, `num_classes == 0`) and no test split. The test
    split is loaded only when an evaluation asks for it (`load_data(..., with_test=True)`): a sweep never does.

    An unlabeled pool may come with a small labeled set (`labeled_images`, `labeled_labels`, `num_classes` its
    classes): SSL trains on the pool only, and the kNN (and `eval`) read the labeled set, split once into a bank
    and queries (`labeled_splits`).
    """

    train_images: torch.Tensor
    train_labels: torch.Tensor | None
    test_images: torch.Tensor | None
    test_labels: torch.Tensor | None
    num_classes: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    labeled_images: torch.Tensor | None = None
    labeled_labels: torch.Tensor | None = None

    @property
    def image_size(self) -> int:
        return int(self.train_images.shape[-1])

    @property
    def num_train(self) -> int:
        return len(self.train_images)

    @property
    def labeled(self) -> bool:
        return self.train_labels is not None

    @property
    def has_test(self) -> bool:
        return self.test_images is not None and self.test_labels is not None

    @property
    def has_labeled_set(self) -> bool:
        """An unlabeled pool with a labeled set beside it."""
        return self.labeled_images is not None and self.labeled_labels is not None

    def labeled_splits(self) -> ImageData:
        """The labeled set as a labeled dataset: a fixed, seeded, stratified half of it (`LABELED_QUERY_FRACTION`,
        at most 5,000 images) as the test split (the kNN's queries), the rest as the train split (its bank)."""
        if self.labeled_images is None or self.labeled_labels is None:
            raise UsageError("this dataset has no labeled set beside its pool")
        labels = self.labeled_labels
        split = validation_split(labels, len(labels), fraction=LABELED_QUERY_FRACTION)
        bank, queries = split.train_indices, split.val_indices
        images = self.labeled_images
        return replace(
            self,
            train_images=images[bank],
            train_labels=labels[bank],
            test_images=images[queries],
            test_labels=labels[queries],
            labeled_images=None,
            labeled_labels=None,
        )

    def derived(self, image_size: int | None, grayscale: bool) -> ImageData:
        """Every split (train, test, labeled set) resized to `image_size` (None: as loaded) and, with `grayscale`,
        turned grey (`ssl_tune.data.derived`); the normalisation is then the derived train split's own. Unchanged
        data is returned as it is."""
        size = image_size or self.image_size
        if size == self.image_size and not grayscale:
            return self

        def convert(images: torch.Tensor | None) -> torch.Tensor | None:
            if images is None:
                return None
            images = resize(images, size)
            return to_grey(images) if grayscale else images

        train = convert(self.train_images)
        mean, std = channel_stats(train)
        return replace(
            self,
            train_images=train,
            test_images=convert(self.test_images),
            labeled_images=convert(self.labeled_images),
            mean=mean,
            std=std,
        )

    def to(self, device: torch.device | str) -> ImageData:
        return replace(
            self,
            train_images=self.train_images.to(device),
            train_labels=_to(self.train_labels, device),
            test_images=_to(self.test_images, device),
            test_labels=_to(self.test_labels, device),
            labeled_images=_to(self.labeled_images, device),
            labeled_labels=_to(self.labeled_labels, device),
        )

    def subset(self, train: int | None, test: int | None) -> ImageData:
        """The first `train` / `test` images, in the dataset's fixed order."""
        sizes = [("train", train, self.num_train)]
        if self.test_images is not None:
            sizes.append(("test", test, len(self.test_images)))
        for what, n, have in sizes:
            if n is not None and n > have:
                raise UsageError(f"{what}_subset {n} is larger than the {what} split ({have} images)")
        return replace(
            self,
            train_images=self.train_images[:train],
            train_labels=_head(self.train_labels, train),
            test_images=_head(self.test_images, test),
            test_labels=_head(self.test_labels, test),
        )


@dataclass(frozen=True)
class DataRequest:
    """What a loader is asked for: where the data lives and the image size (for resizing loaders).

    `location` is `--data-dir` as given (a path or a URI such as s3://bucket/prefix); `data_dir` is it as a
    local Path.
    """

    data_dir: Path | None
    download: bool
    image_size: int | None
    train_subset: int | None = None
    test_subset: int | None = None
    location: str | None = None
    with_test: bool = True  # False: a loader must not read the test split at all
    skip_corrupt: bool = False  # a loader that decodes stored images leaves out (and counts) those that fail


class DataSettings(Protocol):
    """What a run asks of its data: the data fields of a run config (`ssl_tune.config.TrainConfig`)."""

    dataset: str
    data_dir: str | None
    download: bool
    image_size: int | None
    grayscale: bool
    train_subset: int | None
    test_subset: int | None
    monitor: str
    val_split: float
    val_size: int | None
    skip_corrupt: bool
    data_placement: str
    host_data_limit_gb: float
    stream_decode: str
    stream_eval_subset: int
    stream_shuffle_window: int


Loader = Callable[[DataRequest], ImageData]
DATASETS = Registry[Loader]("dataset")


def register_dataset(name: str) -> Callable[[Loader], Loader]:
    def add(fn: Loader) -> Loader:
        DATASETS.add(name, fn)
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
    with_test: bool = True,
    skip_corrupt: bool = False,
    grayscale: bool = False,
) -> ImageData:
    """Load a registered dataset, check it, derive it (resized to `image_size`, grey with `grayscale`: see
    `ImageData.derived`), and take the requested subsets. Raises UsageError.

    With `with_test=False` the test split is not read at all (its files are not even opened).

    With `skip_corrupt`, a loader of stored images (parquet) leaves out the images that do not decode, and
    says how many, instead of stopping at the first.
    """
    loader = DATASETS.get(name)
    request = DataRequest(
        Path(data_dir).expanduser() if data_dir else None,
        download,
        image_size,
        train_subset,
        test_subset,
        location=str(data_dir) if data_dir else None,
        with_test=with_test,
        skip_corrupt=skip_corrupt,
    )
    return loader(request).derived(image_size, grayscale).subset(train_subset, test_subset)


def require_dir(request: DataRequest, dataset: str) -> Path:
    if request.data_dir is None:
        raise UsageError(f"dataset '{dataset}' needs --data-dir")
    return request.data_dir


# the loaders register themselves on import
from ssl_tune.data import cifar, imagefolder, parquet, synthetic  # noqa: E402, F401
