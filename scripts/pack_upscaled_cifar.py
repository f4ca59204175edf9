"""Pack CIFAR-10 train (first 20,000) and test (first 1,000) upscaled to 160 px with the parquet writer."""

import sys
import time
from dataclasses import replace

import torch
from torchvision.transforms.v2 import functional as TF

from ssl_tune.data import load_data
from ssl_tune.data.parquet import write_dataset

SIZE = int(sys.argv[2])
t = time.time()
d = load_data("cifar10", "/work/shared/datasets", train_subset=20000, test_subset=1000)


def up(x: torch.Tensor) -> torch.Tensor:
    return torch.cat([TF.resize(c, [SIZE], antialias=True) for c in x.split(1000)])


d = replace(d, train_images=up(d.train_images), test_images=up(d.test_images))
write_dataset(d, sys.argv[1], source="cifar10", shard_size=1000, force=True)
print("packed in", time.time() - t)
