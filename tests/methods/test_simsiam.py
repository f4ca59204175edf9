"""SimSiam end to end: the stop-gradient prevents collapse, and kNN accuracy rises on real CIFAR-10."""

from __future__ import annotations

import math

import pytest

from ssl_tune.config import build_config
from ssl_tune.data.training import load_run_data
from ssl_tune.engine.run import TrainingRun

# the settings stated in docs/methods/index.md: weak crops and a high lr, small heads for CPU, 12 epochs. Measured on
# the 2-core VM (2026-12-07), points of test kNN gained by epoch 12, seeds 0-3: 9.35, 6.6, 4.35, 6.8; the threshold
# (+2) is 2.35 below the smallest. At 8 epochs seeds 0-3 gained 8.7, 2.0, 2.85, 4.2: too close to any threshold.
LEARNING = {
    "method": "simsiam",
    "backbone": "resnet_tiny",
    "dataset": "cifar10",
    "train_subset": 5000,
    "test_subset": 2000,
    "epochs": 12,
    "batch_size": 64,
    "lr": 0.5,
    "augment": {"crop_min_scale": 0.2},
    "method_params": {"proj_hidden_dim": 512, "proj_output_dim": 256, "pred_hidden_dim": 128},
    "seed": 0,
}


def _collapse_signals(stop_gradient: bool) -> list[dict]:
    cfg = build_config({
        "method": "simsiam", "dataset": "synthetic", "train_subset": 512, "test_subset": 128, "batch_size": 32,
        "epochs": 6, "lr": 0.5, "method_params": {"proj_hidden_dim": 128, "proj_output_dim": 128,
                                                   "pred_hidden_dim": 32, "stop_gradient": stop_gradient},
    })  # fmt: skip
    run = TrainingRun(cfg, load_run_data(cfg))
    run.initial_metrics()
    return [run.train_epoch().to_dict() for _ in range(cfg.epochs)]


def test_without_stop_gradient_simsiam_collapses():
    """Measured here (6 epochs, 128-d, the grey-toned synthetic set): with the stop-gradient the std ratio stays
    ~1.0 and the effective rank ~21; without it the std ratio falls to ~0.65 and the rank to 6-8. The
    projector's output BN keeps every dimension's batch variance, so the collapse is dimensional (a few
    directions), not to a single point."""
    with_sg, without_sg = _collapse_signals(True), _collapse_signals(False)
    assert all(m["embedding_std_ratio"] > 0.9 for m in with_sg), with_sg
    assert without_sg[-1]["embedding_std_ratio"] < 0.75, without_sg
    assert without_sg[-1]["embedding_rank"] < 0.5 * with_sg[-1]["embedding_rank"], (with_sg[-1], without_sg[-1])
    assert all(math.isfinite(m["loss"]) for m in with_sg + without_sg)


@pytest.mark.slow
def test_simsiam_raises_knn_by_2_points_on_cifar10(cifar_dir):
    cfg = build_config({**LEARNING, "data_dir": str(cifar_dir)})
    run = TrainingRun(cfg, load_run_data(cfg))
    start = run.initial_metrics().test_knn_acc
    while not run.done:
        metrics = run.train_epoch()
    print(f"simsiam kNN: epoch 0 {start:.4f} -> epoch {metrics.epoch} {metrics.test_knn_acc:.4f}")
    assert metrics.test_knn_acc >= start + 0.02, (start, metrics.test_knn_acc)
