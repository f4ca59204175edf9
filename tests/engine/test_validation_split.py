"""`monitor: val` on real CIFAR-10: the kNN queries are a fixed, stratified hold-out of the train split, the
bank and the SSL training set are the rest, and the test split is not even loaded. No Ray."""

from __future__ import annotations

import pytest
import torch

from ssl_tune.cli import main
from ssl_tune.config import build_config
from ssl_tune.data.splits import validation_split
from ssl_tune.data.training import load_run_data
from ssl_tune.engine.knn import extract_features, knn_accuracy
from ssl_tune.engine.run import TrainingRun

N_TRAIN = 2000
# a small `ssl-tune train` on synthetic data (as tests/cli/test_train_cli.py)
SMALL = ["--method", "simsiam", "--backbone", "resnet_tiny", "--dataset", "synthetic", "--train-subset", "512"]
SMALL += ["--test-subset", "128", "--batch-size", "128", "--no-progress"]


def cifar_layer(cifar_dir, **overrides):
    return {
        "dataset": "cifar10",
        "data_dir": str(cifar_dir),
        "train_subset": N_TRAIN,
        "test_subset": 500,
        "monitor": "val",
        "backbone": "resnet_tiny",
        "batch_size": 128,
        "epochs": 1,
        "device": "cpu",
        **overrides,
    }


@pytest.fixture(scope="module")
def val_data(cifar_dir):
    """The first 2000 CIFAR-10 train images, loaded as a `monitor: val` run loads them (no test split)."""
    return load_run_data(build_config(cifar_layer(cifar_dir)))


@pytest.fixture(scope="module")
def test_data(cifar_dir):
    return load_run_data(build_config(cifar_layer(cifar_dir, monitor="test")))


def test_val_run_does_not_load_the_test_split(val_data):
    assert val_data.test_images is None and val_data.test_labels is None
    assert not val_data.has_test
    assert val_data.num_train == N_TRAIN and val_data.labeled and val_data.num_classes == 10


def test_val_queries_are_the_held_out_train_images_and_the_bank_is_the_rest(cifar_dir, val_data):
    run = TrainingRun(build_config(cifar_layer(cifar_dir)), val_data)
    split = validation_split(val_data.train_labels, N_TRAIN, fraction=0.1)
    val_idx, train_idx = split.val_indices, split.train_indices
    assert len(val_idx) == N_TRAIN // 10 and len(train_idx) == N_TRAIN - N_TRAIN // 10
    # a partition of the 2000 indices: disjoint and covering
    assert not set(val_idx.tolist()) & set(train_idx.tolist())
    assert sorted(val_idx.tolist() + train_idx.tolist()) == list(range(N_TRAIN))

    assert run.knn_metric == "val_knn_acc"
    assert torch.equal(run.query_images.cpu(), val_data.train_images[val_idx])
    assert torch.equal(run.query_labels.cpu(), val_data.train_labels[val_idx])
    assert torch.equal(run.train_source.images.cpu(), val_data.train_images[train_idx])
    assert torch.equal(run.bank_labels.cpu(), val_data.train_labels[train_idx])
    assert run.num_train == len(train_idx)
    assert run.steps_per_epoch == len(train_idx) // 128


def test_held_out_queries_are_stratified(cifar_dir, val_data):
    run = TrainingRun(build_config(cifar_layer(cifar_dir)), val_data)
    labels = val_data.train_labels
    queries = run.query_labels.cpu()
    for c in range(10):
        in_class = int((labels == c).sum())
        held_out = int((queries == c).sum())
        assert abs(held_out - 0.1 * in_class) <= 1, (c, held_out, in_class)
        # the rest of the class is what the bank (and SSL training) sees
        assert int((run.bank_labels.cpu() == c).sum()) == in_class - held_out


def test_split_does_not_depend_on_the_run_seed_or_hyperparameters(cifar_dir, val_data):
    a = TrainingRun(build_config(cifar_layer(cifar_dir, seed=0, lr=0.05)), val_data)
    b = TrainingRun(build_config(cifar_layer(cifar_dir, seed=12345, lr=0.7, weight_decay=1e-3)), val_data)
    assert torch.equal(a.query_images, b.query_images)
    assert torch.equal(a.query_labels, b.query_labels)
    assert torch.equal(a.train_source.images, b.train_source.images)
    assert torch.equal(a.bank_labels, b.bank_labels)
    # the seed does change the network: the two runs are not the same run
    wa, wb = (next(r.method.backbone.parameters()) for r in (a, b))
    assert not torch.equal(wa, wb)


def test_val_size_holds_out_exactly_that_many(cifar_dir, val_data):
    run = TrainingRun(build_config(cifar_layer(cifar_dir, val_size=300)), val_data)
    split = validation_split(val_data.train_labels, N_TRAIN, size=300)
    assert len(run.query_images) == len(run.query_labels) == 300
    assert len(run.train_source.images) == len(run.bank_labels) == N_TRAIN - 300
    assert torch.equal(run.query_images.cpu(), val_data.train_images[split.val_indices])


def test_val_split_fraction_is_used(cifar_dir, val_data):
    run = TrainingRun(build_config(cifar_layer(cifar_dir, val_split=0.25)), val_data)
    assert len(run.query_images) == N_TRAIN // 4 and len(run.train_source.images) == N_TRAIN - N_TRAIN // 4


def test_evaluate_reports_val_knn_on_the_held_out_queries(cifar_dir, val_data):
    cfg = build_config(cifar_layer(cifar_dir, knn_k=20))
    run = TrainingRun(cfg, val_data)
    values = run.evaluate()
    assert list(values) == ["val_knn_acc"]
    split = validation_split(val_data.train_labels, N_TRAIN)
    backbone = run.method.backbone
    bank = extract_features(backbone, val_data.train_images[split.train_indices], run.views.plain)
    queries = extract_features(backbone, val_data.train_images[split.val_indices], run.views.plain)
    labels = val_data.train_labels
    expected = knn_accuracy(bank, labels[split.train_indices], queries, labels[split.val_indices], 10, 20, 0.1)
    assert values["val_knn_acc"] == pytest.approx(expected, abs=1e-9)


def test_monitor_test_trains_on_all_train_images_and_queries_the_test_split(cifar_dir, test_data):
    assert test_data.has_test and len(test_data.test_images) == 500
    run = TrainingRun(build_config(cifar_layer(cifar_dir, monitor="test")), test_data)
    assert run.knn_metric == "test_knn_acc"
    assert run.num_train == N_TRAIN
    assert torch.equal(run.train_source.images.cpu(), test_data.train_images)
    assert torch.equal(run.bank_labels.cpu(), test_data.train_labels)
    assert torch.equal(run.query_images.cpu(), test_data.test_images)
    assert torch.equal(run.query_labels.cpu(), test_data.test_labels)


def test_plain_train_monitors_the_test_split_by_default():
    cfg = build_config({})
    assert cfg.monitor == "test" and cfg.val_split == 0.1 and cfg.val_size is None


BAD_VAL_INPUTS = {
    "val_split above 0.5": (["--set", "val_split=0.7"], "config key 'val_split'"),
    "val_split zero": (["--set", "val_split=0"], "config key 'val_split'"),
    "val_split negative": (["--set", "val_split=-0.1"], "config key 'val_split'"),
    "val_size zero": (["--set", "val_size=0"], "config key 'val_size'"),
    "val_size the whole train split": (["--set", "val_size=512"], "validation size must be in [1, 512)"),
    "unknown monitor": (["--set", "monitor=train"], "config key 'monitor'"),
    "batch larger than what is left": (
        ["--set", "val_split=0.5", "--batch-size", "384"],
        "batch_size 384 is larger than the training set (256 images)",
    ),
}


@pytest.mark.parametrize("case", BAD_VAL_INPUTS, ids=list(BAD_VAL_INPUTS))
def test_bad_validation_settings_exit_2_with_one_line_and_write_nothing(case, tmp_path, capsys):
    args, expected = BAD_VAL_INPUTS[case]
    out = tmp_path / "out"
    code = main(["train", *SMALL, "--epochs", "1", "--set", "monitor=val", *args, "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.count("\n") == 1 and expected in err, err
    assert "Traceback" not in err
    assert not out.exists()
