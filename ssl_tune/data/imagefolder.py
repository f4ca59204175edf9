"""Any ImageFolder tree (DIR/train/<class>/*.jpg and DIR/val/<class>/*.jpg), resized into memory."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import torch
from torchvision import datasets
from torchvision.transforms import v2

from ssl_tune.data.base import DataRequest, ImageData, register_dataset, require_dir
from ssl_tune.errors import UsageError

IMAGENET_STATS = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
DEFAULT_SIZE = 96


def _read_split(folder: datasets.ImageFolder, size: int, limit: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    resize = v2.Compose([v2.PILToTensor(), v2.Resize(size, antialias=True), v2.CenterCrop(size)])
    # a fixed shuffled order, so that the first N images cover every class
    order = torch.randperm(len(folder.samples), generator=torch.Generator().manual_seed(0)).tolist()
    samples = [folder.samples[i] for i in order][:limit]

    def read(path: str) -> torch.Tensor:
        return resize(folder.loader(path))

    with ThreadPoolExecutor(max_workers=8) as pool:
        images = list(pool.map(read, [p for p, _ in samples]))
    return torch.stack(images), torch.tensor([t for _, t in samples], dtype=torch.int64)


@register_dataset("imagefolder")
def imagefolder(request: DataRequest) -> ImageData:
    root = require_dir(request, "imagefolder")
    test_dir = next((root / s for s in ("val", "test") if (root / s).is_dir()), None)
    if not (root / "train").is_dir() or test_dir is None:
        raise UsageError(f"no ImageFolder tree in {root}: expected {root}/train/<class>/ and {root}/val/<class>/")
    try:
        train = datasets.ImageFolder(str(root / "train"))
        test = datasets.ImageFolder(str(test_dir))
    except (FileNotFoundError, OSError) as err:
        raise UsageError(f"cannot read ImageFolder tree in {root}: {err}") from err
    if train.classes != test.classes:
        raise UsageError(f"{root}: train and {test_dir.name} have different class folders")
    size = request.image_size or DEFAULT_SIZE
    train_x, train_y = _read_split(train, size, request.train_subset)
    test_x, test_y = _read_split(test, size, request.test_subset)
    mean, std = IMAGENET_STATS
    return ImageData(train_x, train_y, test_x, test_y, len(train.classes), mean, std)
