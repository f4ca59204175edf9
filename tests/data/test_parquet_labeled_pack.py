"""A Parquet pool with a labeled pack beside it (`POOL/labeled/`, both made by `write_dataset`): the pool trains
unlabeled, resident or streamed, and the labeled pack is the labeled set of the kNN; a bad labeled pack is one
line."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ssl_tune.config import build_config
from ssl_tune.data import ImageData, load_data
from ssl_tune.data.parquet import write_dataset
from ssl_tune.data.streaming import eval_subset, shard_plan
from ssl_tune.data.synthetic import generate
from ssl_tune.engine.run import TrainingRun
from ssl_tune.errors import UsageError
from tests.helpers import small_params

SIZE, POOL = 16, 96
STATS = ((0.5, 0.5, 0.5), (0.25, 0.25, 0.25))


def _pack(location: Path, images: torch.Tensor, labels: torch.Tensor | None, num_classes: int) -> None:
    write_dataset(ImageData(images, labels, None, None, num_classes, *STATS), str(location), source="synthetic")


def pool_pack(root: Path, labels: torch.Tensor | None = None, num_classes: int = 3) -> Path:
    pool, _ = generate(POOL, SIZE, seed=1)
    _pack(root, pool, None, 0)
    labeled, classes = generate(60, SIZE, seed=2)
    labels = classes % num_classes if labels is None else labels
    _pack(root / "labeled", labeled, labels, num_classes)
    return root


def test_the_pool_trains_and_the_knn_reads_the_labeled_pack(tmp_path):
    root = pool_pack(tmp_path / "pack")
    data = load_data("parquet", root)
    assert data.has_labeled_set and not data.labeled and data.num_train == POOL and data.num_classes == 3
    cfg = build_config(
        {"dataset": "parquet", "data_dir": str(root), "batch_size": 32, "epochs": 1, "device": "cpu",
         "monitor": "val", "knn_k": 5, "data_placement": "resident", "method_params": small_params("simsiam")}
    )  # fmt: skip
    run = TrainingRun(cfg, data)
    assert run.num_train == POOL and len(run.bank_labels) + len(run.query_labels) == 60
    run.initial_metrics()
    assert 0.0 <= run.train_epoch().val_knn_acc <= 1.0


@pytest.mark.parametrize(
    ("labels", "num_classes", "message"),
    [
        (torch.zeros(60, dtype=torch.int64), 1, "at least 2 classes"),
        (torch.arange(60) % 2, 3, "class 2 of 3 has no images"),
    ],
)
def test_a_bad_labeled_pack_is_one_line(tmp_path, labels, num_classes, message):
    root = pool_pack(tmp_path / "pack", labels, num_classes)
    with pytest.raises(UsageError, match=message) as err:
        load_data("parquet", root)
    assert "\n" not in str(err.value)


def test_an_unlabeled_pack_as_the_labeled_set_is_one_line(tmp_path):
    root = tmp_path / "pack"
    pool, _ = generate(POOL, SIZE, seed=1)
    _pack(root, pool, None, 0)
    _pack(root / "labeled", pool[:20], None, 0)
    with pytest.raises(UsageError, match="is unlabeled: the pack beside a pool must be a labeled one"):
        load_data("parquet", root)


def test_a_streamed_pool_trains_and_the_knn_reads_the_labeled_pack(tmp_path, ray_local):
    """The pool streams through Ray Data (the "2 million images and 5,000 labels" case); the labeled pack is read
    whole, once, and is the kNN's bank and queries, as on the resident path."""
    root = pool_pack(tmp_path / "pack")
    cfg = build_config({"dataset": "parquet", "data_dir": str(root), "data_placement": "streamed_shards",
                        "batch_size": 32, "epochs": 1, "device": "cpu", "monitor": "val", "knn_k": 5,
                        "method_params": small_params("simsiam")})  # fmt: skip
    plan = shard_plan(cfg)
    assert plan.num_train == POOL and plan.held_out == ()  # the pool: no validation queries held out of it
    data = eval_subset(cfg, plan)
    assert data.has_labeled_set and not data.labeled and len(data.labeled_labels) == 60
    resident = load_data("parquet", root)
    assert torch.equal(data.labeled_images, resident.labeled_images)
    run = TrainingRun(cfg, data, torch.device("cpu"), stream=plan)
    assert run.num_train == POOL and len(run.bank_labels) + len(run.query_labels) == 60
    run.initial_metrics()
    assert 0.0 <= run.train_epoch().val_knn_acc <= 1.0
