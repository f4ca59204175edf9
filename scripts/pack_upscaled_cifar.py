"""Pack a CIFAR-10 subset upscaled to SIZE px with the parquet writer: a set large on disk and decoded, for the
streaming acceptance run (README, "Datasets larger than memory").

    python scripts/pack_upscaled_cifar.py --data-dir ../shared/datasets --out /tmp/cifar160 --size 160
"""

import argparse
import time
from dataclasses import replace

import torch
from torchvision.transforms.v2 import functional as TF

from ssl_tune.data import load_data
from ssl_tune.data.parquet import write_dataset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", required=True, help="the folder holding cifar-10-batches-py")
    parser.add_argument("--out", required=True, help="where the packed set goes (replaced)")
    parser.add_argument("--size", type=int, default=160, help="image size in px (default 160)")
    parser.add_argument("--train", type=int, default=20000, help="train images (default 20,000)")
    parser.add_argument("--test", type=int, default=1000, help="test images (default 1,000)")
    args = parser.parse_args()
    started = time.time()
    data = load_data("cifar10", args.data_dir, train_subset=args.train, test_subset=args.test)

    def upscale(images: torch.Tensor) -> torch.Tensor:
        return torch.cat([TF.resize(chunk, [args.size], antialias=True) for chunk in images.split(1000)])

    data = replace(data, train_images=upscale(data.train_images), test_images=upscale(data.test_images))
    write_dataset(data, args.out, source="cifar10", shard_size=1000, force=True)
    print(f"packed in {time.time() - started:.1f} s")


if __name__ == "__main__":
    main()
