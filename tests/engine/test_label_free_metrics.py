"""LiDAR and α-ReQ as per-epoch metrics of a real run: measured when asked for, on the same seeded images and
views in every run (so two runs with one backbone agree), and in the epoch's log line."""

from __future__ import annotations

import math

import pytest
import torch

from ssl_tune.config import build_config
from ssl_tune.data import load_data
from ssl_tune.engine.alpha_req import band_score
from ssl_tune.engine.run import TrainingRun
from ssl_tune.engine.runlog import format_epoch
from tests.helpers import small_params

SIZE, N_TRAIN = 16, 96


def _run(seed: int = 0, **overrides) -> TrainingRun:
    cfg = build_config(
        {"method": "simsiam", "batch_size": 32, "epochs": 1, "device": "cpu", "image_size": SIZE,
         "train_subset": N_TRAIN, "test_subset": 32, "method_params": small_params("simsiam"), "seed": seed,
         "lidar": True, "lidar_images": 40, "lidar_views": 3, "alpha_req": True, "alpha_req_images": 64,
         **overrides}
    )  # fmt: skip
    return TrainingRun(cfg, load_data("synthetic", image_size=SIZE, train_subset=N_TRAIN, test_subset=32))


def test_each_epoch_measures_lidar_and_alpha_req():
    run = _run()
    start = run.initial_metrics()
    epoch = run.train_epoch()
    feature_dim = run.method.backbone.feature_dim
    for metrics in (start, epoch):
        assert 1.0 <= metrics.lidar <= min(40 - 1, feature_dim) + 1e-3, metrics
        assert math.isfinite(metrics.alpha_req_alpha) and metrics.alpha_req_alpha > 0, metrics
        assert metrics.alpha_req == band_score(metrics.alpha_req_alpha, (0.9, 1.1))
        assert metrics.rankme is None  # only what was asked for
    line = format_epoch(epoch, 1)
    assert "lidar" in line and "alpha_req" in line and "alpha_req_alpha" in line
    assert {"lidar", "alpha_req", "alpha_req_alpha"} <= set(epoch.to_dict())


def test_same_backbone_same_values_whatever_the_run_seed():
    # the images and LiDAR's views are drawn with a fixed seed, not the run's: epoch 0 of two runs whose initial
    # weights are equal reads equal values
    a, b = _run(seed=0), _run(seed=0, lr=0.5)
    first, second = a.initial_metrics(), b.initial_metrics()
    assert (first.lidar, first.alpha_req_alpha) == (second.lidar, second.alpha_req_alpha)


def test_lidar_views_are_augmented_and_fixed():
    # the views of an image differ from one another, and are the same at every evaluation
    run = _run()
    features = run._view_features(run._label_free_images(40))
    assert features.shape == (40, 3, run.method.backbone.feature_dim)
    assert not torch.allclose(features[:, 0], features[:, 1])
    assert torch.equal(features, run._view_features(run._label_free_images(40)))


def test_not_asked_for_not_measured():
    run = _run(lidar=False, alpha_req=False)
    metrics = run.initial_metrics()
    assert metrics.lidar is None and metrics.alpha_req is None
    assert "lidar" not in metrics.to_dict() and "alpha_req_alpha" not in metrics.to_dict()


@pytest.mark.parametrize("band", [(1.2, 1.1), (-1.0, 1.0)])
def test_bad_band_is_refused(band):
    from ssl_tune.errors import UsageError

    with pytest.raises((UsageError, ValueError), match="alpha_req_band"):
        _run(alpha_req_band=band)


def test_lidar_views_and_features_read_no_device_value(monkeypatch):
    # the views are made and the features extracted on the device without a host read; the one read is LiDAR's
    # scalar at the end
    from tests.engine.test_no_host_sync import host_reads_forbidden

    run = _run()
    images = run._label_free_images(40)
    with host_reads_forbidden(monkeypatch, to_cpu=False) as arm:  # the images move to the run's device
        arm(True)
        features = run._view_features(images)
        arm(False)
    assert features.shape[:2] == (40, 3)
