"""Image folders, resized into memory.

- Labeled: `DIR/train/<class>/*.jpg` and `DIR/val/<class>/*.jpg` (or `test/`), as torchvision's ImageFolder.
- Unlabeled: any other tree, e.g. a flat folder of images, or `train/` without a `val/` beside it. Every
  image under DIR is a training image; there are no labels and no test split, so a sweep selects on RankMe.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch
from PIL import Image
from torchvision import datasets
from torchvision.transforms import v2

from ssl_tune.data.base import DataRequest, ImageData, register_dataset, require_dir
from ssl_tune.errors import UsageError

IMAGENET_STATS = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
DEFAULT_SIZE = 96


def _read_images(paths: list[str], size: int) -> torch.Tensor:
    resize = v2.Compose([v2.PILToTensor(), v2.Resize(size, antialias=True), v2.CenterCrop(size)])

    def read(path: str) -> torch.Tensor:
        try:
            with Image.open(path) as img:
                return resize(img.convert("RGB"))
        except (OSError, ValueError) as err:
            raise UsageError(f"cannot read image {path}: {err}") from None

    with ThreadPoolExecutor(max_workers=8) as pool:
        return torch.stack(list(pool.map(read, paths)))


def _read_split(folder: datasets.ImageFolder, size: int, limit: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    # a fixed shuffled order, so that the first N images cover every class
    order = torch.randperm(len(folder.samples), generator=torch.Generator().manual_seed(0)).tolist()
    samples = [folder.samples[i] for i in order][:limit]
    return _read_images([p for p, _ in samples], size), torch.tensor([t for _, t in samples], dtype=torch.int64)


def _image_files(root: Path) -> list[str]:
    """Every image file below `root` (the extensions torchvision's ImageFolder reads), in a fixed order."""
    return sorted(str(p) for p in root.rglob("*") if p.is_file() and p.suffix.lower() in datasets.folder.IMG_EXTENSIONS)


def _unlabeled(root: Path, size: int, limit: int | None) -> ImageData:
    paths = _image_files(root)
    if not paths:
        raise UsageError(f"no images in {root} (looked for {', '.join(datasets.folder.IMG_EXTENSIONS)})")
    order = torch.randperm(len(paths), generator=torch.Generator().manual_seed(0)).tolist()
    images = _read_images([paths[i] for i in order][:limit], size)
    mean, std = IMAGENET_STATS
    return ImageData(images, None, None, None, 0, mean, std)


@register_dataset("imagefolder")
def imagefolder(request: DataRequest) -> ImageData:
    root = require_dir(request, "imagefolder")
    if not root.is_dir():
        raise UsageError(f"--data-dir {root} is not a directory")
    size = request.image_size or DEFAULT_SIZE
    test_dir = next((root / s for s in ("val", "test") if (root / s).is_dir()), None)
    if not (root / "train").is_dir() or test_dir is None:
        return _unlabeled(root, size, request.train_subset)
    try:
        train = datasets.ImageFolder(str(root / "train"))
        test = datasets.ImageFolder(str(test_dir)) if request.with_test else None
    except (FileNotFoundError, OSError) as err:
        raise UsageError(f"cannot read ImageFolder tree in {root}: {err}") from err
    if test is not None and train.classes != test.classes:
        raise UsageError(f"{root}: train and {test_dir.name} have different class folders")
    train_x, train_y = _read_split(train, size, request.train_subset)
    test_x = test_y = None
    if test is not None:
        test_x, test_y = _read_split(test, size, request.test_subset)
    mean, std = IMAGENET_STATS
    return ImageData(train_x, train_y, test_x, test_y, len(train.classes), mean, std)
