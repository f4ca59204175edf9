"""Streamed shards through Ray Data (`ssl_tune.data.streaming`), on real shards written by `ssl-tune data pack` and
a real local Ray cluster: each image reaches at most one rank per epoch, all but less than one global batch are
seen, a (seed, epoch) replays its order, memory stays bounded, and `auto` streams by decoded size."""

from __future__ import annotations

import io
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ssl_tune.cli import main
from ssl_tune.config import build_config
from ssl_tune.data import load_data
from ssl_tune.data.streaming import (
    ShardBatches,
    build_dataset,
    current_rss_mb,
    decode_image,
    eval_subset,
    file_order,
    shard_plan,
    streams_shards,
)
from ssl_tune.engine.run import TrainingRun
from ssl_tune.errors import UsageError
from tests.helpers import SMALL_SIMSIAM

TRAIN, SHARD = 1000, 125  # 8 train shards of 32 px CIFAR-10 images
VAL, EVAL = 100, 300  # validation queries held out of the stream, among the first EVAL images
BATCH = 64  # global: 32 per rank


@pytest.fixture(scope="module")
def packed(cifar_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("stream") / "cifar10"
    args = ["data", "pack", "--source", "cifar10", "--data-dir", str(cifar_dir), "--out", str(out)]
    assert main([*args, "--train-subset", str(TRAIN), "--test-subset", "50", "--shard-size", str(SHARD)]) == 0
    return out


def config(packed: Path, **overrides):
    base = {"dataset": "parquet", "data_dir": str(packed), "monitor": "val", "val_size": VAL, "batch_size": BATCH}
    return build_config({**base, "data_placement": "streamed_shards", "stream_eval_subset": EVAL, **overrides})


@pytest.fixture(scope="module")
def ray_local():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield ray
    ray.shutdown()


def source(plan, *, rank: int = 0, world: int = 1, shard=None, seed: int = 0) -> ShardBatches:
    steps = plan.num_train // BATCH
    return ShardBatches(
        plan, seed=seed, device=torch.device("cpu"), rank=rank, local_batch=BATCH // world, steps=steps, shard=shard
    )


def run_epoch(batches: ShardBatches, epoch: int) -> np.ndarray:
    size = batches.plan.image_size
    for images in batches.epoch_batches(epoch):
        assert images.dtype == torch.uint8 and images.shape == (batches.local_batch, 3, size, size)
    return batches.last_ids


# --- selection (no Ray) -----------------------------------------------------------------------------


def test_auto_streams_by_decoded_size_and_only_parquet_can(packed, capsys):
    decoded_gb = TRAIN * 3 * 32 * 32 / 1e9  # 3.1 MB
    assert streams_shards(config(packed, data_placement="auto", host_data_limit_gb=decoded_gb / 2))
    assert not streams_shards(config(packed, data_placement="auto", host_data_limit_gb=decoded_gb * 2))
    # the run's image size counts, not the packed one: 64 px is 4x the 32 px size
    assert streams_shards(config(packed, data_placement="auto", host_data_limit_gb=decoded_gb * 2, image_size=64))
    assert not streams_shards(config(packed, data_placement="resident", host_data_limit_gb=1e-6))
    assert streams_shards(config(packed))  # forced
    with pytest.raises(UsageError, match="streamed_shards needs dataset 'parquet'"):
        build_config({"dataset": "synthetic", "data_placement": "streamed_shards"})
    code = main(["train", "--dataset", "synthetic", "--set", "data_placement=streamed_shards", "--out", "x"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "needs dataset 'parquet'" in err[0], err
    assert not Path("x").exists()


def test_decoding_png_and_jpeg_matches_pil_and_resizes(cifar_dir):
    image = load_data("cifar10", cifar_dir, train_subset=1, with_test=False).train_images[0]
    hwc = image.permute(1, 2, 0).numpy()
    for fmt in ("PNG", "JPEG"):
        buf = io.BytesIO()
        Image.fromarray(hwc).save(buf, format=fmt)
        expected = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB")).transpose(2, 0, 1)
        assert np.array_equal(decode_image(buf.getvalue(), 32), expected), fmt
        assert decode_image(buf.getvalue(), 48).shape == (3, 48, 48)


# --- Ray Data ---------------------------------------------------------------------------------------


@pytest.mark.slow
def test_two_ranks_see_each_image_at_most_once_and_all_but_one_global_batch(packed, ray_local):
    plan = shard_plan(config(packed))
    assert plan.num_train == TRAIN - VAL and len(plan.held_out) == VAL and max(plan.held_out) < EVAL
    reference = load_data("parquet", str(packed), with_test=False).train_images
    splits = build_dataset(plan, seed=0).streaming_split(2, equal=True)  # what Ray Train does for 2 workers
    ranks = [source(plan, rank=r, world=2, shard=splits[r]) for r in range(2)]
    firsts: dict[tuple[int, int], torch.Tensor] = {}
    for epoch in (1, 2):
        seen: dict[int, np.ndarray] = {}

        def consume(r: int, epoch: int = epoch, seen: dict = seen) -> None:
            for i, images in enumerate(ranks[r].epoch_batches(epoch)):
                if i == 0:
                    firsts[epoch, r] = images
            seen[r] = ranks[r].last_ids

        threads = [threading.Thread(target=consume, args=(r,)) for r in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        assert set(seen) == {0, 1}, "a rank did not finish its epoch"
        both = np.concatenate([seen[0], seen[1]])
        assert len(seen[0]) == len(seen[1]) == (plan.num_train // BATCH) * BATCH // 2
        assert len(np.unique(both)) == len(both), "an image reached two ranks, or one rank twice"
        assert not set(both.tolist()) & set(plan.held_out), "a validation query was trained on"
        assert plan.num_train - len(both) < BATCH
        # the pixels are the packed ones
        ids = torch.from_numpy(seen[0][: BATCH // 2])
        assert torch.equal(firsts[epoch, 0], reference[ids])
    assert not torch.equal(firsts[1, 0], firsts[2, 0]), "epoch 2 repeated epoch 1's order"


@pytest.mark.slow
def test_a_resumed_run_replays_the_epoch_order(packed, ray_local):
    """One process (a single-worker trial): the order is a function of (seed, epoch), so a run restored from its
    epoch-1 checkpoint trains epoch 2 on the same images in the same order as the run that was not stopped."""
    cfg = config(packed, backbone="resnet_tiny", method_params=SMALL_SIMSIAM, epochs=2, knn_k=20)
    plan = shard_plan(cfg)
    first = TrainingRun(cfg, eval_subset(cfg, plan), torch.device("cpu"), stream=plan)
    assert first.placement == "streamed_shards" and first.num_train == TRAIN - VAL
    first.initial_metrics()
    epoch1 = first.train_epoch()
    assert 0 < epoch1.val_knn_acc <= 1  # the bank and the queries: the decoded eval subset
    ids1, state = first.train_source.last_ids, first.state_dict()

    resumed = TrainingRun(cfg, eval_subset(cfg, plan), torch.device("cpu"), stream=plan)
    resumed.load_state_dict(state)
    resumed.train_epoch()
    first.train_epoch()
    assert np.array_equal(resumed.train_source.last_ids, first.train_source.last_ids)
    assert not np.array_equal(ids1, first.train_source.last_ids), "epoch 2 repeated epoch 1's order"
    for ids in (ids1, first.train_source.last_ids):
        assert len(np.unique(ids)) == len(ids) and plan.num_train - len(ids) < BATCH
    # the file order alone differs by seed and epoch too
    assert file_order(8, 0, 2) == file_order(8, 0, 2) != file_order(8, 1, 2) != file_order(8, 0, 3)


@pytest.mark.slow
def test_streaming_holds_far_less_than_the_decoded_split(packed, ray_local):
    """Decoded at 128 px the split is 44 MB; this process's own memory (RssAnon: Ray's object store is shared
    memory, one per node) grows by far less: the shuffle window (128 rows, 6 MB) and a few batches. Holding the
    batches, as an in-memory loader would, makes this fail."""
    plan = shard_plan(config(packed, image_size=128, stream_shuffle_window=128))
    decoded_mb = plan.num_train * 3 * 128 * 128 / 2**20
    bound_mb = decoded_mb / 3
    batches, kept = source(plan), []
    base = None
    for i, images in enumerate(batches.epoch_batches(1)):
        kept.append(images.sum().item())  # touch the batch, keep a number
        if i == 1:  # Ray's iterator threads and buffers are up
            base = current_rss_mb()
    grew = batches.peak_anon_mb - base
    assert grew < bound_mb, f"grew {grew:.0f} MB streaming a {decoded_mb:.0f} MB split"
    assert len(kept) == plan.num_train // BATCH
