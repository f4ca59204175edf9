"""Streamed shards through Ray Data (`ssl_tune.data.streaming`), on real shards written by `ssl-tune data pack` and
a real local Ray cluster (one for the module): each image reaches at most one rank per epoch, all but less than
one global batch are seen, a (seed, epoch) replays its order, `auto` streams by decoded
size, and bad shards are refused in one line (before Ray Data starts, or by shard and row when decoded)."""

from __future__ import annotations

import io
import itertools
import json
import pickle
import re
import shutil
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image

from ssl_tune.cli import main
from ssl_tune.config import build_config
from ssl_tune.data import load_data, parquet, streaming
from ssl_tune.data.streaming import (
    ShardBatches,
    ShardPlan,
    build_dataset,
    decode_batch,
    eval_subset,
    file_order,
    shard_plan,
    streams_shards,
)
from ssl_tune.data.training import TrainingData, open_training_data
from ssl_tune.engine.collapse import embedding_std
from ssl_tune.engine.run import TrainingRun
from ssl_tune.errors import UsageError
from tests.data.test_parquet_bad_input import refused
from tests.helpers import TINY_FIXED, small_params

TRAIN, SHARD = 480, 60  # 8 train shards of 32 px CIFAR-10 images
VAL, EVAL = 48, 160  # validation queries held out of the stream, among the first EVAL images
BATCH = 64  # global: 32 per rank; 432 streamed images, 6 steps per epoch
TINY = {"backbone": "resnet_tiny", "method_params": TINY_FIXED["method_params"], "knn_k": 10}


@pytest.fixture(scope="module")
def packed(cifar_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("stream") / "cifar10"
    args = ["data", "pack", "--source", "cifar10", "--data-dir", str(cifar_dir), "--out", str(out)]
    assert main([*args, "--train-subset", str(TRAIN), "--test-subset", "50", "--shard-size", str(SHARD)]) == 0
    return out


@pytest.fixture
def copy(packed, tmp_path) -> Path:
    shutil.copytree(packed, tmp_path / "set")
    return tmp_path / "set"


def config(packed: Path, **overrides):
    base = {"dataset": "parquet", "data_dir": str(packed), "monitor": "val", "val_size": VAL, "batch_size": BATCH}
    return build_config({**base, "data_placement": "streamed_shards", "stream_eval_subset": EVAL, **overrides})


def source(plan, *, rank: int = 0, world: int = 1, shard=None, seed: int = 0, batch: int = BATCH) -> ShardBatches:
    steps, local = plan.num_train // batch, batch // world
    return ShardBatches(
        plan, seed=seed, device=torch.device("cpu"), rank=rank, local_batch=local, steps=steps, shard=shard, world=world
    )


def run_epoch(batches: ShardBatches, epoch: int) -> np.ndarray:
    size = batches.plan.image_size
    for images in batches.epoch_batches(epoch):
        assert images.dtype == torch.uint8 and images.shape == (batches.local_batch, 3, size, size)
    return batches.last_ids


def train_args(location: Path, out: Path, *extra: str) -> list[str]:
    """`ssl-tune train` streaming one tiny epoch of `location`."""
    args = ["train", "--dataset", "parquet", "--data-dir", str(location), "--epochs", "1", "--out", str(out)]
    sets = ["data_placement=streamed_shards", f"stream_eval_subset={EVAL}", f"val_size={VAL}", f"batch_size={BATCH}"]
    sets += ["backbone=resnet_tiny", "image_size=16", "knn_k=10", "stream_shuffle_window=0", *extra]
    sets += [f"method_params.{k}={v}" for k, v in TINY["method_params"].items()]
    return [*args, "--no-progress", *[a for kv in sets for a in ("--set", kv)]]


def corrupt_rows(shard: Path, rows: tuple[int, ...]) -> None:
    """Rewrite a packed shard with the images at `rows` truncated."""
    table = pq.read_table(shard)
    images = table.column("image").to_pylist()
    for r in rows:
        images[r] = images[r][: len(images[r]) // 2]
    pq.write_table(table.set_column(2, "image", pa.array(images, pa.binary())), shard)


# --- selection (no Ray) -----------------------------------------------------------------------------


def test_auto_streams_by_decoded_size_and_only_parquet_can(packed, capsys):
    decoded_gb = TRAIN * 3 * 32 * 32 / 1e9  # 1.5 MB
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


def test_decoding_png_and_jpeg_matches_pil_filters_and_names_a_corrupt_image(cifar_dir):
    """`decode_batch`, as Ray Data calls it (no Ray here): PIL's pixels, resized to the run's size; rows past
    train_subset and held-out ones dropped; a corrupt image named by its shard file and row."""
    images = load_data("cifar10", cifar_dir, train_subset=4, with_test=False).train_images
    stored, expected = [], []
    for i, fmt in enumerate(("PNG", "JPEG", "PNG", "JPEG")):
        buf = io.BytesIO()
        Image.fromarray(images[i].permute(1, 2, 0).numpy()).save(buf, format=fmt)
        stored.append(buf.getvalue())
        expected.append(np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB")).transpose(2, 0, 1))
    plan = ShardPlan("/d", ("/d/a", "/d/b"), 32, 3, (1,), 4, 0, ("/d/a", "/d/b"), (0, 2))
    batch = {"index": np.arange(4), "image": np.array(stored, dtype=object)}
    out = decode_batch(batch, plan)
    assert out["index"].tolist() == [0, 2]  # 1 held out, 3 past rows_used
    assert np.array_equal(out["image"], np.stack([expected[0], expected[2]]))
    assert decode_batch(batch, ShardPlan("/d", (), 48, 4, (), 4, 0))["image"].shape == (4, 3, 48, 48)
    stored[2] = stored[2][:40]
    with pytest.raises(UsageError, match=r"^/d/b row 0 \(index 2\): corrupt image: .*skip_corrupt: true"):
        decode_batch({"index": np.arange(4), "image": np.array(stored, dtype=object)}, plan)


def test_an_epoch_shortened_by_skipped_images_reports_the_means_of_the_steps_it_took(monkeypatch):
    """Images skipped as corrupt can leave a streamed epoch a batch short (on every rank alike): its loss and
    embedding std are means over the steps it took, not over steps_per_epoch (low, and read as a collapse)."""
    cfg = build_config(
        {"method": "simsiam", "backbone": "resnet_tiny", "batch_size": 16, "epochs": 1, "device": "cpu",
         "image_size": 16, "train_subset": 80, "test_subset": 16, "method_params": small_params("simsiam")}
    )  # fmt: skip
    run = TrainingRun(cfg, load_data("synthetic", image_size=16, train_subset=80, test_subset=16))
    run.initial_metrics()
    full, step, taken = run.train_source.batches, run.train_step, []
    monkeypatch.setattr(run.train_source, "batches", lambda order: itertools.islice(full(order), 3))

    def recorded(views, progress):
        out = step(views, progress)
        taken.append((float(out.loss), float(embedding_std(out.embedding))))
        return out

    monkeypatch.setattr(run, "train_step", recorded)
    metrics = run.train_epoch()
    assert len(taken) == 3 < run.steps_per_epoch
    assert metrics.loss == pytest.approx(np.mean([t[0] for t in taken]), rel=1e-5)
    assert metrics.embedding_std == pytest.approx(np.mean([t[1] for t in taken]), rel=1e-5)


@pytest.mark.parametrize("damage", ["missing", "schema"])
def test_a_bad_shard_is_refused_in_one_line_before_ray_data_starts(copy, tmp_path, capsys, monkeypatch, damage):
    ray_data = pytest.importorskip("ray.data")

    def no_ray_data(*args, **kwargs):
        raise AssertionError("Ray Data started")

    monkeypatch.setattr(ray_data, "read_parquet", no_ray_data)
    shard = copy / "train" / "part-00005.parquet"
    if damage == "missing":
        shard.unlink()
        message = f"{copy}/train/part-00005.parquet is missing"
    else:
        pq.write_table(pq.read_table(shard).rename_columns(["index", "label", "jpeg"]), shard)
        message = f"{copy}/train/part-00005.parquet has columns (index int64, label int64, jpeg binary)"
    refused(capsys, train_args(copy, tmp_path / "run"), message)
    assert not (tmp_path / "run").exists()


# --- the training-data plan (no Ray) ---------------------------------------------------------------

DECODED_GB = TRAIN * 3 * 32 * 32 / 1e9


@pytest.fixture
def manifest_reads(monkeypatch) -> list[str]:
    """Every read of a pack's manifest from now on."""
    reads: list[str] = []

    def counted(fs, root, location):
        reads.append(location)
        return parquet.read_manifest(fs, root, location)

    monkeypatch.setattr(streaming, "read_manifest", counted)
    return reads


def test_a_streamed_plan_reads_the_manifest_once(packed, manifest_reads):
    cfg = config(packed, data_placement="auto", host_data_limit_gb=DECODED_GB / 2)
    data = open_training_data(cfg)
    assert data.streamed and data.stream.num_train == TRAIN - VAL and data.manifest.labeled
    shipped = pickle.loads(pickle.dumps(data))  # as a trial hands it to its Ray Train workers
    images = shipped.load(cfg)  # what each worker process holds: the eval subset
    assert images.train_images.shape[0] == EVAL and images.labeled
    assert manifest_reads == [str(packed)], "the manifest was read again after the plan was made"


def test_a_resident_plan_loads_the_whole_split(packed, manifest_reads):
    cfg = config(packed, data_placement="auto", host_data_limit_gb=DECODED_GB * 2)
    data = open_training_data(cfg)
    assert data == TrainingData() and not data.streamed
    assert data.load(cfg).train_images.shape[0] == TRAIN
    assert len(manifest_reads) == 1  # the decision (the resident loader reads its own copy, through parquet)


def test_other_placements_never_open_a_manifest(packed, manifest_reads):
    assert open_training_data(config(packed, data_placement="resident")) == TrainingData()
    assert manifest_reads == []


# --- Ray Data ---------------------------------------------------------------------------------------


@pytest.mark.slow
def test_two_ranks_see_each_image_at_most_once_and_all_but_one_global_batch(packed, copy, ray_local, capsys):
    """Two ranks as Ray Train runs them, on shards with corrupt images. With skip_corrupt they are left out and
    counted for all ranks, printed once per epoch; they shorten the epoch by a batch, equally on both ranks.
    Without it both ranks stop at one, named by shard and row."""
    subset = TRAIN - 47  # 385 streamed images: 6 global batches and 1 spare, so skipping 3 shortens the epoch
    corrupt = {"part-00003": (20,), "part-00005": (5,), "part-00007": (0, 30)}  # indices 200, 305, 420; 450
    for name, rows in corrupt.items():
        corrupt_rows(copy / "train" / f"{name}.parquet", rows)
    bad = {200, 305, 420}  # 450 is past train_subset: not streamed, not counted
    plan = shard_plan(config(copy, train_subset=subset, skip_corrupt=True))
    assert plan.num_train == subset - VAL and len(plan.held_out) == VAL and max(plan.held_out) < EVAL
    assert (plan.num_train - len(bad)) // BATCH < plan.num_train // BATCH
    reference = load_data("parquet", str(packed), with_test=False).train_images  # the packed pixels, undamaged
    splits = build_dataset(plan, seed=0).streaming_split(2, equal=True)  # what Ray Train does for 2 workers
    ranks = [source(plan, rank=r, world=2, shard=splits[r]) for r in range(2)]
    firsts: dict[tuple[int, int], torch.Tensor] = {}
    for epoch in (1, 2):
        seen = consume_in_threads(ranks, epoch, firsts)
        assert all(isinstance(seen.get(r), np.ndarray) for r in range(2)), f"a rank did not finish its epoch: {seen}"
        both = np.concatenate([seen[0], seen[1]])
        assert not set(both.tolist()) & bad, "a corrupt image was trained on"
        assert len(seen[0]) == len(seen[1]) == ((plan.num_train - len(bad)) // BATCH) * BATCH // 2
        assert len(np.unique(both)) == len(both), "an image reached two ranks, or one rank twice"
        assert not set(both.tolist()) & set(plan.held_out), "a validation query was trained on"
        assert plan.num_train - len(bad) - len(both) < BATCH
        # the epoch's skips, counted once for all ranks: each rank knows them, rank 0 prints them
        assert [r.skipped for r in ranks] == [len(bad)] * 2
        err = [line for line in capsys.readouterr().err.splitlines() if "corrupt" in line]
        assert err == [f"ssl-tune: epoch {epoch}: skipped {len(bad)} corrupt image(s) in {copy} (skip_corrupt)"]
        # the pixels are the packed ones
        ids = torch.from_numpy(seen[0][: BATCH // 2])
        assert torch.equal(firsts[epoch, 0], reference[ids])
    assert not torch.equal(firsts[1, 0], firsts[2, 0]), "epoch 2 repeated epoch 1's order"

    plan = shard_plan(config(copy, train_subset=subset))
    splits = build_dataset(plan, seed=0).streaming_split(2, equal=True)
    errors = consume_in_threads([source(plan, rank=r, world=2, shard=splits[r]) for r in range(2)], 1, {})
    where = ["part-00003.parquet row 20 (index 200)", "part-00005.parquet row 5 (index 305)"]
    where.append("part-00007.parquet row 0 (index 420)")
    named = "|".join(re.escape(f"{copy}/train/{row}: corrupt image:") for row in where)
    assert sorted(errors) == [0, 1] and all(re.match(named, str(e)) for e in errors.values()), errors
    assert all(type(e) is UsageError and "\n" not in str(e) for e in errors.values()), errors


def consume_in_threads(ranks: list[ShardBatches], epoch: int, firsts: dict) -> dict[int, Any]:
    """Run an epoch on each rank at once (Ray Train's workers): rank -> its ids, or the error it raised.
    Keeps each rank's first batch in `firsts[epoch, rank]`."""
    out: dict[int, Any] = {}

    def consume(r: int) -> None:
        try:
            for i, images in enumerate(ranks[r].epoch_batches(epoch)):
                if i == 0:
                    firsts[epoch, r] = images
            out[r] = ranks[r].last_ids
        except Exception as err:
            out[r] = err

    threads = [threading.Thread(target=consume, args=(r,)) for r in range(len(ranks))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    return out


@pytest.mark.slow
def test_a_resumed_run_replays_the_epoch_order(packed, ray_local):
    """One process (a single-worker trial): the order is a function of (seed, epoch), so a run restored from its
    epoch-1 checkpoint trains epoch 2 on the same images in the same order as the run that was not stopped."""
    cfg = config(packed, **TINY, epochs=2, train_subset=TRAIN // 2, image_size=16)  # 3 steps of 16 px images
    plan = shard_plan(cfg)
    first = TrainingRun(cfg, eval_subset(cfg, plan), torch.device("cpu"), stream=plan)
    assert first.placement == "streamed_shards" and first.num_train == TRAIN // 2 - VAL
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
def test_ssl_tune_train_streams_stops_at_a_corrupt_image_by_shard_and_row_or_skips_and_counts(
    copy, tmp_path, capsys, ray_local
):
    """`ssl-tune train --set data_placement=streamed_shards` end to end. A corrupt image past the eval subset
    is met by a decode task: exit 2, one line naming the shard file and row, the new run dir removed. With
    skip_corrupt the epoch trains without it, and the count is printed once per epoch."""
    corrupt_rows(copy / "train" / "part-00005.parquet", (3, 7))  # indices 303 and 307
    where = f"{copy}/train/part-00005.parquet row 3 (index 303): corrupt image:"
    refused(capsys, train_args(copy, tmp_path / "run"), where)
    assert not (tmp_path / "run").exists()

    assert main(train_args(copy, tmp_path / "skip", "skip_corrupt=true")) == 0
    captured = capsys.readouterr()
    skipped = [line for line in captured.err.splitlines() if "corrupt" in line]
    assert skipped == [f"ssl-tune: epoch 1: skipped 2 corrupt image(s) in {copy} (skip_corrupt)"], captured.err
    assert (tmp_path / "skip" / "backbone.pt").is_file() and "done:" in captured.out
    # the count is also a metric: metrics.jsonl, TensorBoard, and a sweep's trial results
    logged = [json.loads(line) for line in (tmp_path / "skip" / "metrics.jsonl").read_text().splitlines()]
    assert [row.get("skipped_images") for row in logged] == [None, 2]
