"""Streamed data (host memory, batches copied ahead by a thread) trains exactly as resident data."""

from __future__ import annotations

import threading

import pytest
import torch

from ssl_tune.config import build_config
from ssl_tune.data import load_data
from ssl_tune.data.placement import ResidentBatches, StreamedBatches, choose_placement, place_images
from ssl_tune.engine.run import TrainingRun


def test_both_sources_yield_the_same_batches_in_order():
    images = torch.randint(0, 256, (50, 3, 8, 8), dtype=torch.uint8)
    order = torch.randperm(50)[:48].view(6, 8)
    resident = list(ResidentBatches(images, torch.device("cpu")).batches(order))
    streamed = list(StreamedBatches(images, torch.device("cpu"), prefetch=2).batches(order))
    assert len(streamed) == 6
    for r, s, idx in zip(resident, streamed, order, strict=True):
        assert torch.equal(r, images[idx]) and torch.equal(s, images[idx]) and s.dtype == torch.uint8


def test_a_streamed_iterator_closed_early_stops_its_thread():
    images = torch.zeros(400, 3, 4, 4, dtype=torch.uint8)
    before = threading.active_count()
    it = StreamedBatches(images, torch.device("cpu"), prefetch=1).batches(torch.arange(400).view(100, 4))
    next(it)
    assert threading.active_count() == before + 1
    it.close()
    assert threading.active_count() == before


def test_a_failing_gather_is_raised_in_the_consumer():
    images = torch.zeros(10, 3, 4, 4, dtype=torch.uint8)
    bad_order = torch.tensor([[0, 1], [2, 99]])  # index 99 is out of range
    it = StreamedBatches(images, torch.device("cpu")).batches(bad_order)
    next(it)
    with pytest.raises(IndexError):
        next(it)


def test_auto_streams_only_what_exceeds_the_limit_on_a_gpu():
    images = torch.zeros(1000, 3, 32, 32, dtype=torch.uint8)  # 3.07 MB
    assert choose_placement("auto", images, torch.device("cuda"), limit_gb=0.01) == "resident"
    assert choose_placement("auto", images, torch.device("cuda"), limit_gb=0.001) == "streamed"
    assert choose_placement("auto", images, torch.device("cpu"), limit_gb=0.001) == "resident"
    assert choose_placement("streamed", images, torch.device("cpu"), limit_gb=1) == "streamed"
    assert isinstance(place_images(images, torch.device("cpu"), "streamed", 1), StreamedBatches)


@pytest.mark.slow
def test_streamed_training_matches_resident_training():
    data = load_data("synthetic", image_size=16, train_subset=96, test_subset=32)
    runs = {}
    for placement in ("resident", "streamed"):
        sizes = {"image_size": 16, "train_subset": 96, "test_subset": 32}
        cfg = build_config(
            {"method": "simsiam", "batch_size": 32, "epochs": 2, "device": "cpu", "data_placement": placement, **sizes}
        )
        run = TrainingRun(cfg, data)
        assert run.placement == placement
        run.initial_metrics()
        runs[placement] = [run.train_epoch() for _ in range(2)]
    for a, b in zip(runs["resident"], runs["streamed"], strict=True):
        assert a.loss == b.loss and a.test_knn_acc == b.test_knn_acc
