#!/usr/bin/env python3
"""SimCLR on CIFAR-10 in one file, without Ray: the first file to read in ssl-tune.

    python examples/simclr_minimal.py [--data-dir DIR] [--epochs 10] [--train-subset 5000] [--test-subset 2000]

Everything `ssl-tune train` does for one run, reduced to its core, from three parts of the package:

- `ssl_tune.methods`: SimCLR's recipe (its `Params` defaults: a 2048-256 projector and temperature 0.2) and its
  heads (`SimCLR.projector`), built on a backbone from `ssl_tune.models`;
- `ssl_tune.views`: the augmentation (`AugmentConfig`) and `ViewGenerator`, which makes both views of a uint8
  batch on its device (random resized crop, flip, colour jitter, greyscale) in a few batched tensor ops;
- `ssl_tune.losses`: `nt_xent`, SimCLR's loss, a plain function of the two views' embeddings.

Each epoch prints the weighted kNN accuracy of the frozen backbone (`ssl_tune.engine.knn`): the features of the
un-augmented train images are the bank, the test images the queries. Epoch 0 is the random network.

What the real trainer (`ssl_tune/engine/run.py`) adds: LARS and the lr warm-up and cosine schedule
(`engine/optim.py`), mixed precision, data placement and streaming (`data/placement.py`), collapse signals,
atomic checkpoints and `--resume`, TensorBoard, and DDP across GPUs. This file uses SGD with a constant lr.

CIFAR-10 is read from --data-dir, else found as the tests find it (`$SSL_TUNE_DATASETS`, then the user cache
~/.cache/ssl-tune/datasets); --download fetches it there once (about 170 MB).
"""

from __future__ import annotations

import argparse
import sys
import time

import torch

from ssl_tune.data.base import load_data
from ssl_tune.engine.knn import extract_features, knn_accuracy
from ssl_tune.errors import UsageError
from ssl_tune.losses import nt_xent
from ssl_tune.methods import METHODS
from ssl_tune.models.backbones import build_backbone
from ssl_tune.views.generator import ViewGenerator
from ssl_tune.views.recipes import AugmentConfig

IMAGE_SIZE = 32


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", help="the folder holding cifar-10-batches-py (default: found as the tests do)")
    p.add_argument("--download", action="store_true", help="download CIFAR-10 into the user cache if missing")
    p.add_argument("--backbone", default="resnet_tiny", help="resnet_tiny (CPU), resnet18, ...")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--lr", type=float, default=0.06, help="SGD lr at batch 256, scaled by batch/256")
    p.add_argument("--train-subset", type=int, default=5000, help="train images (50,000 in all)")
    p.add_argument("--test-subset", type=int, default=2000, help="kNN queries (10,000 in all)")
    p.add_argument("--proj-dim", type=int, default=None, help="projector width (default: the recipe's 2048-256)")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def knn(backbone: torch.nn.Module, views: ViewGenerator, data) -> float:
    """Weighted kNN accuracy (%) of the frozen backbone: k = 200, votes exp(cosine / 0.1)."""
    bank = extract_features(backbone, data.train_images, views.plain)
    queries = extract_features(backbone, data.test_images, views.plain)
    return 100 * knn_accuracy(bank, data.train_labels, queries, data.test_labels, data.num_classes)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.manual_seed(args.seed)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        data = load_data("cifar10", args.data_dir, download=args.download, train_subset=args.train_subset,
                         test_subset=args.test_subset)  # fmt: skip
    except UsageError as err:
        print(f"simclr_minimal: error: {err}", file=sys.stderr)
        return 2
    if args.batch_size > data.num_train:
        print(f"simclr_minimal: error: --batch-size {args.batch_size} > {data.num_train} images", file=sys.stderr)
        return 2
    data = data.to(device)  # uint8 (N, 3, 32, 32): the views are made on the device, batch by batch

    # the method: SimCLR's recipe and heads, on a backbone that returns (N, feature_dim) features
    simclr = METHODS.get("simclr")
    dims = {} if args.proj_dim is None else {"proj_hidden_dim": args.proj_dim, "proj_output_dim": args.proj_dim}
    params = simclr.Params(**dims)
    method = simclr(build_backbone(args.backbone, IMAGE_SIZE), params).to(device)

    # the views: two random augmentations of each image, normalised with CIFAR-10's mean and std
    augment = AugmentConfig(**simclr.train_defaults.get("augment", {}))
    views = ViewGenerator(method.view_specs(augment, IMAGE_SIZE), data.mean, data.std)

    lr = args.lr * args.batch_size / 256
    optimizer = torch.optim.SGD(method.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4)
    steps = data.num_train // args.batch_size  # the last partial batch is dropped, as the trainer does
    print(f"SimCLR, {args.backbone}, {data.num_train} CIFAR-10 images, batch {args.batch_size}, on {device}")
    print(f"epoch 0 (random network): kNN {knn(method.backbone, views, data):.2f}%")

    for epoch in range(1, args.epochs + 1):
        started, total = time.perf_counter(), 0.0
        method.train()
        order = torch.randperm(data.num_train, device=device)
        for step in range(steps):
            images = data.train_images[order[step * args.batch_size : (step + 1) * args.batch_size]]
            x1, x2 = views(images)  # two (B, 3, 32, 32) float views
            z1 = method.projector(method.backbone(x1))  # (B, 256) embeddings
            z2 = method.projector(method.backbone(x2))
            loss = nt_xent(z1, z2, temperature=params.temperature)  # each view's positive is its pair
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += loss.item()
        seconds = time.perf_counter() - started
        accuracy = knn(method.backbone, views, data)
        print(f"epoch {epoch}: loss {total / steps:.4f}  kNN {accuracy:.2f}%  ({seconds:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
