"""SimSiam end to end: the stop-gradient prevents collapse, and kNN accuracy rises on real CIFAR-10."""

from __future__ import annotations

import math

import pytest

from ssl_tune.config import build_config
from ssl_tune.train import load_run_data
from ssl_tune.trainer import TrainingRun

# the settings stated in the README (Methods): weak crops and a high lr, small heads for CPU
LEARNING = {
    "method": "simsiam",
    "backbone": "resnet_tiny",
    "dataset": "cifar10",
    "train_subset": 5000,
    "test_subset": 2000,
    "epochs": 8,
    "batch_size": 64,
    "lr": 0.5,
    "augment": {"crop_min_scale": 0.2},
    "method_params": {"proj_hidden_dim": 512, "proj_output_dim": 512, "pred_hidden_dim": 128},
    "seed": 0,
}


def _std_ratios(stop_gradient: bool) -> list[float]:
    cfg = build_config(
        {
            "method": "simsiam",
            "dataset": "synthetic",
            "train_subset": 512,
            "test_subset": 128,
            "batch_size": 32,
            "epochs": 6,
            "lr": 0.5,
            "method_params": {
                "proj_hidden_dim": 128,
                "proj_output_dim": 128,
                "pred_hidden_dim": 32,
                "stop_gradient": stop_gradient,
            },
        }
    )
    run = TrainingRun(cfg, load_run_data(cfg))
    run.initial_metrics()
    return [run.train_epoch()["embedding_std_ratio"] for _ in range(cfg.epochs)]


def test_without_stop_gradient_simsiam_collapses():
    """std of L2-normalised outputs, as a multiple of 1/sqrt(d): ~1 when healthy, ~0 when collapsed."""
    with_sg, without_sg = _std_ratios(True), _std_ratios(False)
    assert min(with_sg) > 0.5, with_sg
    assert without_sg[-1] < 0.1, without_sg
    assert all(math.isfinite(x) for x in with_sg + without_sg)


@pytest.mark.slow
def test_simsiam_raises_knn_by_5_points_on_cifar10(cifar_dir):
    cfg = build_config({**LEARNING, "data_dir": str(cifar_dir)})
    run = TrainingRun(cfg, load_run_data(cfg))
    start = run.initial_metrics()["knn_acc"]
    while not run.done:
        metrics = run.train_epoch()
    print(f"simsiam kNN: epoch 0 {start:.4f} -> epoch {metrics['epoch']} {metrics['knn_acc']:.4f}")
    assert metrics["knn_acc"] >= start + 0.05, (start, metrics["knn_acc"])
