"""`stream_decode: device` (`ssl_tune.data.device_decode`): a JPEG pack's bytes pass through the Ray Data tasks
and the training process decodes each batch with torchvision on its device. Here the device is the CPU (CI has
no GPU): the same ids in the same order as `stream_decode: workers`, the same pixels, the same reports of a
corrupt image; a PNG pack, or a placement that does not stream, refused in one line."""

from __future__ import annotations

import io
import shutil
import threading
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image
from torchvision.io import ImageReadMode, decode_jpeg

from ssl_tune.config import build_config
from ssl_tune.data.device_decode import decode_jpegs
from ssl_tune.data.parquet import decode_image
from ssl_tune.data.streaming import ShardBatches, build_dataset, file_order, shard_plan, streams_shards
from ssl_tune.data.synthetic import generate
from ssl_tune.errors import UsageError
from tests.data.test_parquet_bad_input import refused
from tests.data.test_parquet_folders import pack, write_images
from tests.data.test_streaming import corrupt_rows

SIZE, RUN_SIZE = 32, 24  # packed at 32 px; the run resizes every image (32x32 and 48x40 ones) to 24
TRAIN, SHARD = 48, 12  # 4 train shards
VAL, EVAL, BATCH = 8, 16, 8  # 40 streamed images: 5 steps of 8 (4 per rank with 2)


def jpeg_tree(root: Path) -> Path:
    """train/{a,b}: 48 JPEGs, a third of them 48x40 and one greyscale; val/{a,b}: 8."""
    images, _ = generate(TRAIN + 8, SIZE, seed=15)
    write_images(root / "train" / "a", images[:16], "a")
    write_images(root / "train" / "a", images[16:24], "big", size=(48, 40))
    write_images(root / "train" / "b", images[24:39], "b")
    write_images(root / "train" / "b", images[39:47], "big", size=(48, 40))
    Image.fromarray(images[47, 0].numpy()).save(root / "train" / "b" / "gray.jpg", quality=90)
    write_images(root / "val" / "a", images[48:52], "a")
    write_images(root / "val" / "b", images[52:], "b")
    return root


@pytest.fixture(scope="module")
def jpeg_pack(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("decode")
    pack(jpeg_tree(root / "tree"), root / "packed", "--image-size", str(SIZE), "--shard-size", str(SHARD))
    return root / "packed"


def config(location: Path, **overrides):
    base = {"dataset": "parquet", "data_dir": str(location), "data_placement": "streamed_shards"}
    base |= {"monitor": "val", "val_size": VAL, "stream_eval_subset": EVAL, "batch_size": BATCH}
    return build_config({**base, "image_size": RUN_SIZE, "stream_shuffle_window": 0, **overrides})


def source(plan, *, rank: int = 0, world: int = 1, shard=None) -> ShardBatches:
    steps = plan.num_train // BATCH
    device = torch.device("cpu")
    return ShardBatches(plan, seed=0, device=device, rank=rank, local_batch=BATCH // world, steps=steps, shard=shard)


def epoch(batches: ShardBatches, n: int = 1) -> tuple[np.ndarray, torch.Tensor]:
    """One epoch: the ids trained on, in order, and their images; every batch full."""
    images = list(batches.epoch_batches(n))
    assert all(x.dtype == torch.uint8 and x.shape == (batches.local_batch, 3, RUN_SIZE, RUN_SIZE) for x in images)
    return batches.last_ids, torch.cat(images)


def pil_reference(location: Path) -> dict[int, np.ndarray]:
    """Every packed train image as `stream_decode: workers` decodes it (PIL), by index, (3, RUN_SIZE, RUN_SIZE)."""
    out = {}
    for shard in sorted((location / "train").glob("*.parquet")):
        for row in pq.read_table(shard).to_pylist():
            out[row["index"]] = decode_image(row["image"], RUN_SIZE).transpose(2, 0, 1)
    return out


# --- no Ray -----------------------------------------------------------------------------------------


def test_decode_jpegs_matches_pil_and_finds_the_bad_images_of_a_batch():
    """One batched call when every image decodes; with a truncated or empty one among them, each image alone:
    the others still decode, the bad ones are named by their position."""
    images, _ = generate(6, SIZE, seed=3)
    data = []
    for i, img in enumerate(images):
        buf = io.BytesIO()
        pil = Image.fromarray(img.permute(1, 2, 0).numpy())
        (pil.resize((48, 40)) if i % 2 else pil).save(buf, format="JPEG", quality=90)
        data.append(buf.getvalue())
    # 32: the 32x32 ones as decoded, the others resized; 24: all resized, one by one or (one shape) together
    for some, size in ((data, SIZE), (data, RUN_SIZE), (data[::2], RUN_SIZE)):
        expected = np.stack([decode_image(d, size).transpose(2, 0, 1) for d in some])
        decoded, bad = decode_jpegs(some, size, torch.device("cpu"))
        # measured on CPU (torch 2.14.1, torchvision 0.29.1): max and mean abs difference 0, equal to PIL's
        assert bad == [] and np.array_equal(decoded.numpy(), expected)
    broken = [data[0], data[1][: len(data[1]) // 2], data[2], b"", data[3]]
    decoded, bad = decode_jpegs(broken, SIZE, torch.device("cpu"))
    assert [position for position, _ in bad] == [1, 3]
    assert bad[0][1] == "Image is incomplete or truncated" and bad[1][1] == "no image bytes"
    kept = [decode_image(d, SIZE).transpose(2, 0, 1) for d in (data[0], data[2], data[3])]
    assert np.array_equal(decoded.numpy(), np.stack(kept))
    assert decode_jpegs([b"\xff\xd8\xffjunk"], SIZE, torch.device("cpu"))[0].shape == (0, 3, SIZE, SIZE)


def _jpegs(n: int) -> list[bytes]:
    images, _ = generate(n, SIZE, seed=4)
    out = []
    for img in images:
        buf = io.BytesIO()
        Image.fromarray(img.permute(1, 2, 0).numpy()).save(buf, format="JPEG", quality=90)
        out.append(buf.getvalue())
    return out


@pytest.mark.parametrize("failure", ["nvjpegDecodeBatched failed: 5", "CUDA error: out of memory"])
def test_a_device_decoders_memory_failure_is_out_of_memory_never_a_corrupt_image(failure, monkeypatch):
    """nvJPEG reports an allocation failure as a plain RuntimeError (torchvision wraps its status). Simulated on
    the meta device, as no GPU is here: the batch raises torch.OutOfMemoryError, with no image called bad."""
    import ssl_tune.data.device_decode as device_decode

    def device_out_of_memory(encoded, device):
        raise RuntimeError(failure)

    monkeypatch.setattr(device_decode, "_decode", device_out_of_memory)
    with pytest.raises(torch.OutOfMemoryError, match="decoding JPEGs on meta"):
        decode_jpegs(_jpegs(3), SIZE, torch.device("meta"))


def test_an_image_the_device_cannot_decode_is_decoded_on_the_cpu_and_only_a_cpu_failure_is_corrupt(monkeypatch):
    """nvJPEG refuses some valid JPEGs (NVJPEG_STATUS_JPEG_NOT_SUPPORTED, status 4): libjpeg decodes those,
    and only what libjpeg cannot decode is reported bad."""
    import ssl_tune.data.device_decode as device_decode

    data = _jpegs(3)
    unsupported = data[1]
    truncated = data[2][: len(data[2]) // 2]

    def device_decoder(encoded, device):
        if any(bytes(e.numpy()) in (unsupported, truncated) for e in encoded):
            raise RuntimeError("nvjpegDecode failed: 4")
        return [decode_jpeg(e, mode=ImageReadMode.RGB).to(device) for e in encoded]

    monkeypatch.setattr(device_decode, "_decode", device_decoder)
    decoded, bad = decode_jpegs([data[0], unsupported, truncated], SIZE, torch.device("meta"))
    assert decoded.shape == (2, 3, SIZE, SIZE) and decoded.device.type == "meta"
    assert bad == [(2, "Image is incomplete or truncated")]


def test_a_png_pack_or_a_placement_that_does_not_stream_is_refused_in_one_line(jpeg_pack, tmp_path, capsys):
    images, _ = generate(12, SIZE, seed=4)
    write_images(tmp_path / "png", images, "p", fmt="PNG")
    pack(tmp_path / "png", tmp_path / "png-pack", "--image-size", str(SIZE))
    capsys.readouterr()
    location, out = tmp_path / "png-pack", tmp_path / "run"
    args = ["train", "--dataset", "parquet", "--data-dir", str(location), "--epochs", "1", "--out", str(out)]
    sets = ["data_placement=streamed_shards", "stream_decode=device", "monitor=val", "batch_size=4"]
    message = f"stream_decode device needs a JPEG pack ({location} train images are png); use workers"
    refused(capsys, [*args, "--no-progress", *[a for kv in sets for a in ("--set", kv)]], message)
    assert not out.exists()
    with pytest.raises(UsageError, match="needs a JPEG pack"):
        shard_plan(config(location, stream_decode="device"))

    with pytest.raises(UsageError, match="stream_decode device needs streamed shards"):
        config(jpeg_pack, stream_decode="device", data_placement="resident")
    with pytest.raises(UsageError, match="not data_placement auto on dataset 'synthetic'"):
        build_config({"dataset": "synthetic", "stream_decode": "device"})
    # auto streams by decoded size: a split it keeps in memory is refused, one it streams is not
    with pytest.raises(UsageError, match="data_placement auto keeps this train split in memory"):
        streams_shards(config(jpeg_pack, stream_decode="device", data_placement="auto"))
    assert streams_shards(config(jpeg_pack, stream_decode="device", data_placement="auto", host_data_limit_gb=1e-5))
    assert shard_plan(config(jpeg_pack, stream_decode="device")).on_device


# --- Ray Data ---------------------------------------------------------------------------------------


@pytest.mark.slow
def test_device_decoding_streams_the_same_ids_in_the_same_order_and_the_same_pixels(jpeg_pack, ray_local):
    """One process (`build_dataset(plan, seed, epoch)`), then two ranks (`streaming_split`, as Ray Train)."""
    workers, device = shard_plan(config(jpeg_pack)), shard_plan(config(jpeg_pack, stream_decode="device"))
    assert not workers.on_device and device.on_device and device.num_train == TRAIN - VAL
    ids, images = epoch(source(workers))
    device_ids, device_images = epoch(source(device))
    assert len(ids) == device.num_train and np.array_equal(device_ids, ids)
    # measured on CPU (torchvision's libjpeg against PIL's): max and mean abs difference 0
    assert torch.equal(device_images, images)
    reference = pil_reference(jpeg_pack)
    assert np.array_equal(images.numpy(), np.stack([reference[i] for i in ids]))

    splits = build_dataset(device, seed=0).streaming_split(2, equal=True)
    ranks = [source(device, rank=r, world=2, shard=splits[r]) for r in range(2)]
    seen: dict[int, tuple[np.ndarray, torch.Tensor]] = {}
    threads = [threading.Thread(target=lambda r=r: seen.__setitem__(r, epoch(ranks[r]))) for r in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert set(seen) == {0, 1}, "a rank did not finish its epoch"
    both = np.concatenate([seen[0][0], seen[1][0]])
    assert len(both) == len(np.unique(both)) and device.num_train - len(both) < BATCH
    assert not set(both.tolist()) & set(device.held_out)
    for rank_ids, rank_images in seen.values():
        assert np.array_equal(rank_images.numpy(), np.stack([reference[i] for i in rank_ids]))


@pytest.mark.slow
def test_a_corrupt_jpeg_is_named_by_shard_and_row_or_skipped_and_counted(jpeg_pack, tmp_path, ray_local):
    """Decoded in the training process: the batched call fails, each image alone finds the bad one; without
    skip_corrupt it stops the epoch naming its shard file and row, with it the batches are refilled from the
    next ones and the epoch trains on what the decode tasks would have kept, counting as they would."""
    location = tmp_path / "set"
    shutil.copytree(jpeg_pack, location)
    corrupt_rows(location / "train" / "part-00002.parquet", (3, 7))  # indices 27 and 31, past the eval subset
    cfg = config(location, stream_decode="device")
    with pytest.raises(UsageError, match=r"/train/part-00002\.parquet row 3 \(index 27\): corrupt image: .*truncated"):
        epoch(source(shard_plan(cfg)))

    plan = shard_plan(config(location, stream_decode="device", skip_corrupt=True))
    batches = source(plan)
    ids, _ = epoch(batches)
    assert batches.skipped == 2 and not {27, 31} & set(ids.tolist())
    # the order the decode tasks would have kept (files in file_order, rows in order), less the two bad ones
    expected = [i for i in ordered_ids(plan, epoch=1) if i not in (27, 31)]
    assert ids.tolist() == expected[: (plan.num_train - 2) // BATCH * BATCH]


def ordered_ids(plan, epoch: int) -> list[int]:
    """The streamed ids of one process's epoch without shuffle window, in order, computed without Ray."""
    out = []
    for f in file_order(len(plan.files), 0, epoch):
        index = pq.read_table(plan.files[f], columns=["index"]).column("index").to_numpy()
        out += [int(i) for i in index if i < plan.rows_used and i not in plan.held_out]
    return out
