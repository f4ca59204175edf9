"""Image folders, resized into memory.

- Labeled: `DIR/train/<class>/*.jpg` and `DIR/val/<class>/*.jpg` (or `test/`), as torchvision's ImageFolder.
- An unlabeled pool with a labeled set: `DIR/train/` (any tree, read without labels) and `DIR/labeled/<class>/*.jpg`
  beside it. SSL trains on the pool only; the labeled images never enter training. The kNN's bank and queries are
  a fixed, seeded, stratified split of the labeled set (`ImageData.labeled_splits`), so a sweep selects on
  val_knn_acc with few labels.
- Unlabeled: any other tree, e.g. a flat folder of images, or `train/` without a `val/` beside it. Every
  image under DIR is a training image; there are no labels and no test split, so a sweep selects on RankMe.

`list_folder` gives the files and labels in the loader's fixed order; `ssl-tune data pack` packs from it
without decoding the whole folder into memory.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image
from torchvision import datasets
from torchvision.transforms import v2

from ssl_tune.data.base import DataRequest, ImageData, register_dataset, require_dir
from ssl_tune.errors import UsageError

IMAGENET_STATS = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
DEFAULT_SIZE = 96
UNLABELED = -1  # the label of every image of an unlabeled folder
LABELED_DIR = "labeled"  # beside an unlabeled train/ pool: the labeled set, one folder per class

Sample = tuple[str, int]  # (path, label)


@dataclass(frozen=True)
class FolderListing:
    """An image folder's files in the loader's fixed order; `test` is None when not asked for or unlabeled."""

    train: list[Sample]
    test: list[Sample] | None
    num_classes: int  # 0: unlabeled; with a labeled set beside the pool, its classes
    labeled_set: list[Sample] | None = None  # beside an unlabeled train/ pool

    @property
    def labeled(self) -> bool:
        return self.num_classes > 0 and self.labeled_set is None


def fit_image(img: Image.Image, size: int) -> torch.Tensor:
    """An open image as uint8 (3, size, size): RGB, shorter side resized to `size`, centre-cropped."""
    return fit_tensor(v2.functional.pil_to_tensor(img.convert("RGB")), size)


def fit_tensor(x: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 (..., 3, H, W) -> (..., 3, size, size) on its device: shorter side resized to `size` (bilinear,
    antialiased), centre-cropped; unchanged when it is size x size already."""
    if tuple(x.shape[-2:]) != (size, size):
        x = v2.functional.center_crop(v2.functional.resize(x, [size], antialias=True), [size])
    return x


def _read_images(paths: list[str], size: int) -> torch.Tensor:
    def read(path: str) -> torch.Tensor:
        try:
            with Image.open(path) as img:
                return fit_image(img, size)
        except (OSError, ValueError) as err:
            raise UsageError(f"cannot read image {path}: {err}") from None

    with ThreadPoolExecutor(max_workers=8) as pool:
        return torch.stack(list(pool.map(read, paths)))


def _ordered(samples: list[Sample], limit: int | None) -> list[Sample]:
    # a fixed shuffled order, so that the first N images cover every class
    order = torch.randperm(len(samples), generator=torch.Generator().manual_seed(0)).tolist()
    return [samples[i] for i in order][:limit]


def _image_files(root: Path) -> list[str]:
    """Every image file below `root` (the extensions torchvision's ImageFolder reads), in a fixed order."""
    return sorted(str(p) for p in root.rglob("*") if p.is_file() and p.suffix.lower() in datasets.folder.IMG_EXTENSIONS)


def list_folder(
    root: Path, *, train_subset: int | None = None, test_subset: int | None = None, with_test: bool = True
) -> FolderListing:
    """The images of a labeled or unlabeled folder (see the module docstring), the first N of each split."""
    if not root.is_dir():
        raise UsageError(f"--data-dir {root} is not a directory")
    if (root / LABELED_DIR).is_dir():
        return _pool_with_labeled_set(root, train_subset)
    test_dir = next((root / s for s in ("val", "test") if (root / s).is_dir()), None)
    if not (root / "train").is_dir() or test_dir is None:
        paths = _image_files(root)
        if not paths:
            raise UsageError(f"no images in {root} (looked for {', '.join(datasets.folder.IMG_EXTENSIONS)})")
        return FolderListing(_ordered([(p, UNLABELED) for p in paths], train_subset), None, 0)
    try:
        train = datasets.ImageFolder(str(root / "train"))
        test = datasets.ImageFolder(str(test_dir)) if with_test else None
    except (FileNotFoundError, OSError) as err:
        raise UsageError(f"cannot read ImageFolder tree in {root}: {err}") from err
    if test is not None and train.classes != test.classes:
        raise UsageError(f"{root}: train and {test_dir.name} have different class folders")
    return FolderListing(
        _ordered(train.samples, train_subset),
        None if test is None else _ordered(test.samples, test_subset),
        len(train.classes),
    )


def _pool_with_labeled_set(root: Path, train_subset: int | None) -> FolderListing:
    """`train/` as an unlabeled pool and `labeled/<class>/` as the labeled set; each bad layout is one line."""
    labeled = root / LABELED_DIR
    if not (root / "train").is_dir():
        raise UsageError(f"{labeled} is a labeled set beside an unlabeled pool, but {root / 'train'} is missing")
    pool = _image_files(root / "train")
    if not pool:
        raise UsageError(f"no images in the pool {root / 'train'}")
    classes = sorted(d.name for d in labeled.iterdir() if d.is_dir())
    if len(classes) < 2:
        raise UsageError(f"{labeled} has {len(classes)} class folder(s): a labeled set needs at least 2 classes")
    samples: list[Sample] = []
    for label, name in enumerate(classes):
        files = _image_files(labeled / name)
        if not files:
            raise UsageError(f"class folder {labeled / name} has no images")
        samples += [(p, label) for p in files]
    return FolderListing(_ordered([(p, UNLABELED) for p in pool], train_subset), None, len(classes), samples)


def _read_split(samples: list[Sample], size: int) -> tuple[torch.Tensor, torch.Tensor]:
    return _read_images([p for p, _ in samples], size), torch.tensor([t for _, t in samples], dtype=torch.int64)


@register_dataset("imagefolder")
def imagefolder(request: DataRequest) -> ImageData:
    root = require_dir(request, "imagefolder")
    size = request.image_size or DEFAULT_SIZE
    listing = list_folder(
        root, train_subset=request.train_subset, test_subset=request.test_subset, with_test=request.with_test
    )
    mean, std = IMAGENET_STATS
    if listing.labeled_set is not None:
        labeled_x, labeled_y = _read_split(listing.labeled_set, size)
        pool = _read_images([p for p, _ in listing.train], size)
        return ImageData(pool, None, None, None, listing.num_classes, mean, std, labeled_x, labeled_y)
    if not listing.labeled:
        return ImageData(_read_images([p for p, _ in listing.train], size), None, None, None, 0, mean, std)
    train_x, train_y = _read_split(listing.train, size)
    test_x = test_y = None
    if listing.test is not None:
        test_x, test_y = _read_split(listing.test, size)
    return ImageData(train_x, train_y, test_x, test_y, listing.num_classes, mean, std)
