"""Parquet shards: `ssl-tune data pack` -> `--dataset parquet` gives back the same pixels and labels, from a
directory or a URI through pyarrow.fs."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest
import torch

from ssl_tune.cli import main
from ssl_tune.data import load_data, parquet
from ssl_tune.data.parquet import decode_image, read_dataset, resolve_location, write_dataset
from ssl_tune.errors import UsageError
from tests.helpers import SMALL_SIMSIAM

TRAIN, TEST, SHARD = 600, 200, 200  # 3 train shards, 1 test shard


@pytest.fixture(scope="module")
def cifar_subset(cifar_dir):
    return load_data("cifar10", cifar_dir, train_subset=TRAIN, test_subset=TEST)


@pytest.fixture(scope="module")
def packed(cifar_dir, tmp_path_factory) -> Path:
    """A CIFAR-10 subset packed by the CLI."""
    out = tmp_path_factory.mktemp("shards") / "cifar10"
    args = ["data", "pack", "--source", "cifar10", "--data-dir", str(cifar_dir), "--out", str(out)]
    args += ["--train-subset", str(TRAIN), "--test-subset", str(TEST), "--shard-size", str(SHARD)]
    assert main(args) == 0
    return out


def assert_same(a, b) -> None:
    for field in ("train_images", "train_labels", "test_images", "test_labels"):
        x, y = getattr(a, field), getattr(b, field)
        assert x.dtype == y.dtype and torch.equal(x, y), field
    assert (a.num_classes, a.mean, a.std) == (b.num_classes, b.mean, b.std)


def test_pack_then_read_gives_identical_pixels_and_labels(packed, cifar_subset, capsys):
    manifest = json.loads((packed / "dataset.json").read_text())
    assert [s["rows"] for s in manifest["splits"]["train"]] == [SHARD] * 3
    assert [s["rows"] for s in manifest["splits"]["test"]] == [TEST]
    assert sorted(p.name for p in (packed / "train").iterdir()) == [f"part-0000{i}.parquet" for i in range(3)]
    data = load_data("parquet", str(packed))
    assert_same(data, cifar_subset)
    assert data.train_images.shape == (TRAIN, 3, 32, 32) and data.train_labels.unique().numel() == 10
    # the first N of the packed order are the first N of the source
    small = load_data("parquet", str(packed), train_subset=250, test_subset=50)
    assert torch.equal(small.train_images, cifar_subset.train_images[:250])
    assert torch.equal(small.test_labels, cifar_subset.test_labels[:50])


def test_a_smaller_image_size_decodes_each_image_straight_to_it(packed, monkeypatch):
    """As the stream decodes (one resize from the stored bytes): never the whole split at the packed size first
    (2,000 eval images of a 320 px pack, decoded at 320 px before resizing, took a rank's RSS to 2.8 GiB)."""
    table = pq.read_table(packed / "train" / "part-00000.parquet")
    expected = [decode_image(data, 20) for data in table.column("image").to_pylist()[:30]]
    sizes = []
    monkeypatch.setattr(parquet, "decode_image", lambda data, size: sizes.append(size) or decode_image(data, size))
    small = load_data("parquet", str(packed), train_subset=30, image_size=20)
    assert set(sizes) == {20}
    assert small.train_images.shape == (30, 3, 20, 20) and small.test_images.shape[-1] == 20
    assert torch.equal(small.train_images, torch.from_numpy(np.stack(expected)).permute(0, 3, 1, 2))


def test_packing_prints_a_line_at_the_start_and_end_of_each_split(cifar_subset, tmp_path, capsys):
    write_dataset(cifar_subset, str(tmp_path / "out"), source="cifar10", shard_size=SHARD)  # stderr: no terminal
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"packing train split: {TRAIN} images in shards of up to 64 MiB or {SHARD} images ..."
    assert re.fullmatch(rf"packing train split: {TRAIN} images in \d+\.\d s", lines[1]), lines
    assert lines[2] == f"packing test split: {TEST} images in shards of up to 64 MiB or {SHARD} images ..."
    assert re.fullmatch(rf"packing test split: {TEST} images in \d+\.\d s", lines[3]), lines
    assert len(lines) == 4


def test_uris_and_other_filesystems_go_through_the_same_code(packed, cifar_subset, tmp_path):
    # a file:// URI is resolved by pyarrow.fs.FileSystem.from_uri, like s3:// or gs://
    assert_same(load_data("parquet", packed.as_uri()), cifar_subset)

    # an object-store-shaped path ("bucket/prefix") on another pyarrow filesystem, for writing and reading
    bucket_root = tmp_path / "store"
    (bucket_root / "my-bucket").mkdir(parents=True)
    store = pafs.SubTreeFileSystem(str(bucket_root), pafs.LocalFileSystem())
    write_dataset(cifar_subset, "my-bucket/cifar10", source="cifar10", shard_size=SHARD, filesystem=store)
    assert_same(read_dataset("my-bucket/cifar10", filesystem=store), cifar_subset)
    assert_same(load_data("parquet", (bucket_root / "my-bucket" / "cifar10").as_uri()), cifar_subset)

    # an s3:// or gs:// URI resolves to that filesystem and exactly such a "bucket/prefix" path
    fs, path = resolve_location("s3://my-bucket/cifar10?region=us-east-1")
    assert isinstance(fs, pafs.S3FileSystem) and path == "my-bucket/cifar10" and fs.region == "us-east-1"
    fs, path = resolve_location("gs://my-bucket/cifar10/")
    assert isinstance(fs, pafs.GcsFileSystem) and path == "my-bucket/cifar10"
    with pytest.raises(UsageError, match="cannot open nope://x"):
        resolve_location("nope://x")


def test_bad_input_is_refused(packed, tmp_path, capsys):
    before = sorted(p.relative_to(packed) for p in packed.rglob("*"))
    assert main(["data", "pack", "--source", "synthetic", "--out", str(packed), "--train-subset", "10"]) == 2
    assert "is not empty: pass --force" in capsys.readouterr().err
    assert sorted(p.relative_to(packed) for p in packed.rglob("*")) == before

    bad = [
        (["--source", "parquet", "--out", str(tmp_path / "a")], "--source: unknown dataset 'parquet'"),
        (["--source", "synthetic", "--out", str(tmp_path / "b"), "--shard-size", "0"], "--shard-size must be"),
        (["--source", "cifar10", "--data-dir", str(tmp_path), "--out", str(tmp_path / "c")], "no cifar10 in"),
    ]
    for args, message in bad:
        assert main(["data", "pack", *args]) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists() and not (tmp_path / "c").exists()

    with pytest.raises(UsageError, match=r"no dataset\.json in"):
        load_data("parquet", str(tmp_path))
    with pytest.raises(UsageError, match="train_subset 601 is larger than the train split"):
        load_data("parquet", str(packed), train_subset=TRAIN + 1)
    with pytest.raises(UsageError, match="needs --data-dir"):
        load_data("parquet")


@pytest.mark.slow
def test_a_training_run_reads_a_shard_dir(packed, tmp_path):
    out = tmp_path / "run"
    args = ["train", "--method", "simsiam", "--backbone", "resnet_tiny", "--dataset", "parquet"]
    args += ["--data-dir", str(packed), "--train-subset", "256", "--test-subset", "128", "--batch-size", "128"]
    args += ["--epochs", "1", "--no-progress", "--out", str(out)]
    args += [a for k, v in SMALL_SIMSIAM.items() for a in ("--set", f"method_params.{k}={v}")]
    assert main(args) == 0
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [0, 1]
    assert rows[1]["loss"] is not None and 0.0 < rows[1]["test_knn_acc"] <= 1.0


def test_shards_are_cut_by_size_within_one_image(cifar_subset, tmp_path):
    out, target_mb = tmp_path / "by-size", 0.1
    write_dataset(cifar_subset, str(out), source="cifar10", shard_mb=target_mb)
    target = target_mb * (1 << 20)
    manifest = json.loads((out / "dataset.json").read_text())
    assert manifest["version"] == 1 and manifest["encodings"] == {"train": "png", "test": "png"}  # old readers read it
    for split, total in (("train", TRAIN), ("test", TEST)):
        shards = [pq.read_table(out / s["path"]) for s in manifest["splits"][split]]
        assert [len(t) for t in shards] == [s["rows"] for s in manifest["splits"][split]]
        assert sum(len(t) for t in shards) == total and len(shards) > 2
        payload = [sum(len(b) for b in t.column("image").to_pylist()) for t in shards]
        for i, size in enumerate(payload):
            assert size <= target  # never past the target ...
            if i + 1 < len(shards):  # ... and closed only when the next image would not fit
                assert size + len(shards[i + 1].column("image")[0].as_py()) > target
        files = [(out / s["path"]).stat().st_size for s in manifest["splits"][split]]
        for size, rows, on_disk in zip(payload, (len(t) for t in shards), files, strict=True):
            assert size < on_disk <= size + 16 * rows + 4096, "the file is its images and little else"
    assert_same(load_data("parquet", str(out)), cifar_subset)


def test_a_version_1_set_still_reads_and_a_newer_one_is_refused(packed, cifar_subset, tmp_path):
    old = tmp_path / "v1"
    shutil.copytree(packed, old)
    raw = json.loads((old / "dataset.json").read_text())
    del raw["encodings"]  # as version 1 wrote it
    (old / "dataset.json").write_text(json.dumps(raw))
    assert_same(load_data("parquet", str(old)), cifar_subset)
    raw["version"] = 3
    (old / "dataset.json").write_text(json.dumps(raw))
    with pytest.raises(UsageError, match=r"format version 3 \(this ssl-tune reads 1, 2\)"):
        load_data("parquet", str(old))
