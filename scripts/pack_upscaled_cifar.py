"""Pack a CIFAR-10 subset upscaled to SIZE px with the parquet writer (PNG), or write it as JPEG files in an
imagefolder tree (`--jpeg-quality`; train/classK/N.jpg, test/...) for `ssl-tune data pack --source imagefolder`,
which keeps the files' own bytes: sets large on disk and decoded, for the streaming acceptance runs
(docs/design/streaming.md).

    python scripts/pack_upscaled_cifar.py --data-dir ../shared/datasets --out /tmp/cifar160 --size 160
    python scripts/pack_upscaled_cifar.py --data-dir ../shared/datasets --out /tmp/jpg320 --size 320 \
        --train 25000 --jpeg-quality 95
"""

import argparse
import time
from dataclasses import replace
from pathlib import Path

import torch
from PIL import Image
from torchvision.transforms.v2 import functional as TF

from ssl_tune.data import load_data
from ssl_tune.data.base import ImageData
from ssl_tune.data.parquet import write_dataset


def upscale(images: torch.Tensor, size: int) -> torch.Tensor:
    return torch.cat([TF.resize(chunk, [size], antialias=True) for chunk in images.split(500)])


def write_jpeg_tree(data: ImageData, out: Path, size: int, quality: int) -> None:
    """Upscaled 500 at a time: 25,000 images at 320 px would take 7.7 GB at once."""
    splits = (("train", data.train_images, data.train_labels), ("test", data.test_images, data.test_labels))
    for split, images, labels in splits:
        for start in range(0, len(images), 500):
            chunk = upscale(images[start : start + 500], size)
            for i, (image, label) in enumerate(zip(chunk, labels[start : start + 500], strict=True)):
                folder = out / split / f"class{int(label)}"
                folder.mkdir(parents=True, exist_ok=True)
                path = folder / f"{start + i:06d}.jpg"
                Image.fromarray(image.permute(1, 2, 0).numpy()).save(path, quality=quality)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", required=True, help="the folder holding cifar-10-batches-py")
    parser.add_argument("--out", required=True, help="where the packed set (or the JPEG tree) goes (replaced)")
    parser.add_argument("--size", type=int, default=160, help="image size in px (default 160)")
    parser.add_argument("--train", type=int, default=20000, help="train images (default 20,000)")
    parser.add_argument("--test", type=int, default=1000, help="test images (default 1,000)")
    parser.add_argument("--jpeg-quality", type=int, help="write JPEG files of this quality, not a PNG pack")
    args = parser.parse_args()
    started = time.time()
    data = load_data("cifar10", args.data_dir, train_subset=args.train, test_subset=args.test)

    if args.jpeg_quality is not None:
        write_jpeg_tree(data, Path(args.out), args.size, args.jpeg_quality)
    else:
        data = replace(data, train_images=upscale(data.train_images, args.size))
        data = replace(data, test_images=upscale(data.test_images, args.size))
        write_dataset(data, args.out, source="cifar10", shard_size=1000, force=True)
    print(f"done in {time.time() - started:.1f} s")


if __name__ == "__main__":
    main()
