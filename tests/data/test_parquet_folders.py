"""`ssl-tune data pack --source imagefolder`: JPEG files are stored as their own bytes and decode as PIL decodes
them (resized to the set's image size when they are not that size already); other images are stored as PNG;
a flat folder packs as an unlabeled set. Real JPEG and PNG files written by PIL, packed by the CLI."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image

from ssl_tune.cli import main
from ssl_tune.data import load_data
from ssl_tune.data.imagefolder import list_folder
from ssl_tune.data.synthetic import generate

SIZE = 32


def write_images(
    folder: Path, images: torch.Tensor, prefix: str, fmt: str = "JPEG", size: tuple[int, int] | None = None
) -> None:
    """uint8 (N, 3, H, W) images as files in `folder` (JPEG quality 90, or PNG), optionally resized to `size`."""
    folder.mkdir(parents=True, exist_ok=True)
    suffix = ".jpg" if fmt == "JPEG" else ".png"
    for i, img in enumerate(images):
        pil = Image.fromarray(img.permute(1, 2, 0).numpy())
        if size is not None:
            pil = pil.resize(size, Image.BILINEAR)
        pil.save(folder / f"{prefix}_{i:03d}{suffix}", format=fmt, **({"quality": 90} if fmt == "JPEG" else {}))


def pack(src: Path, out: Path, *extra: str) -> None:
    assert main(["data", "pack", "--source", "imagefolder", "--data-dir", str(src), "--out", str(out), *extra]) == 0


def packed_rows(out: Path, split: str) -> list[dict]:
    manifest = json.loads((out / "dataset.json").read_text())
    return [row for s in manifest["splits"][split] for row in pq.read_table(out / s["path"]).to_pylist()]


@pytest.fixture(scope="module")
def jpeg_tree(tmp_path_factory) -> Path:
    """train/{cat,dog} and val/{cat,dog} of JPEGs: most at 32x32, some 48x40 (resized when read)."""
    root = tmp_path_factory.mktemp("jpegs") / "tree"
    images, _ = generate(48, SIZE, seed=11)
    write_images(root / "train" / "cat", images[:16], "c")
    write_images(root / "train" / "dog", images[16:28], "d")
    write_images(root / "train" / "dog", images[28:34], "big", size=(48, 40))
    write_images(root / "val" / "cat", images[34:41], "c")
    write_images(root / "val" / "dog", images[41:48], "d")
    return root


def test_jpeg_files_are_packed_as_their_bytes_and_decode_as_pil_does(jpeg_tree, tmp_path, capsys):
    out = tmp_path / "packed"
    pack(jpeg_tree, out, "--image-size", str(SIZE), "--shard-mb", "0.01")  # 10 KiB: a few JPEGs per shard
    printed = capsys.readouterr().out
    assert re.search(r"packed imagefolder \(32px, jpeg\): 34 train images in \d+ shards, 14 test images in", printed)
    manifest = json.loads((out / "dataset.json").read_text())
    assert manifest["version"] == 2 and manifest["encoding"] == "jpeg"
    assert manifest["encodings"] == {"train": "jpeg", "test": "jpeg"} and manifest["num_classes"] == 2
    assert len(manifest["splits"]["train"]) > 3 and len(manifest["splits"]["test"]) > 1

    listing = list_folder(jpeg_tree)
    data = load_data("parquet", str(out))
    for split, samples, images, labels in (
        ("train", listing.train, data.train_images, data.train_labels),
        ("test", listing.test, data.test_images, data.test_labels),
    ):
        rows = packed_rows(out, split)
        assert [r["index"] for r in rows] == list(range(len(samples)))
        assert labels.tolist() == [r["label"] for r in rows] == [label for _, label in samples]
        for row, (path, _), image in zip(rows, samples, images, strict=True):
            assert row["image"] == Path(path).read_bytes(), path  # the file itself, not re-encoded
            with Image.open(path) as img:
                if img.size == (SIZE, SIZE):
                    assert np.array_equal(image.permute(1, 2, 0).numpy(), np.asarray(img.convert("RGB"))), path
    assert sum(1 for path, _ in listing.train if "big_" in path) == 6

    # every image, the 48x40 ones included, reads as the imagefolder loader reads the folder itself
    direct = load_data("imagefolder", jpeg_tree, image_size=SIZE)
    assert torch.equal(data.train_images, direct.train_images) and torch.equal(data.test_images, direct.test_images)
    assert torch.equal(data.train_labels, direct.train_labels)
    assert data.train_images.shape == (34, 3, SIZE, SIZE)


def test_a_flat_folder_packs_as_an_unlabeled_set_of_jpeg_and_png(tmp_path, capsys):
    images, _ = generate(30, SIZE, seed=12)
    flat = tmp_path / "flat"
    write_images(flat, images[:20], "j")
    write_images(flat, images[20:28], "p", fmt="PNG")
    gray = Image.fromarray(images[28, 0].numpy())  # a greyscale JPEG reads as RGB
    gray.save(flat / "gray.jpg", quality=90)
    write_images(flat / "nested", images[29:], "n", fmt="PNG", size=(40, 64))  # any depth; resized at pack time
    out = tmp_path / "packed"
    pack(flat, out, "--image-size", str(SIZE), "--test-subset", "5")
    assert "30 train images in 1 shard (unlabeled) ->" in capsys.readouterr().out

    manifest = json.loads((out / "dataset.json").read_text())
    assert manifest["num_classes"] == 0 and manifest["splits"]["test"] == []
    assert manifest["encodings"] == {"train": "mixed"} and manifest["version"] == 2
    rows = packed_rows(out, "train")
    assert {r["label"] for r in rows} == {-1}
    assert sum(r["image"].startswith(b"\xff\xd8\xff") for r in rows) == 21  # 20 RGB + 1 greyscale JPEG
    assert sum(r["image"].startswith(b"\x89PNG") for r in rows) == 9
    for r in rows:  # PNGs were decoded and resized at pack time
        if r["image"].startswith(b"\x89PNG"):
            with Image.open(io.BytesIO(r["image"])) as img:
                assert img.size == (SIZE, SIZE)

    data = load_data("parquet", str(out))
    assert not data.labeled and data.num_classes == 0 and not data.has_test
    direct = load_data("imagefolder", flat, image_size=SIZE)
    assert torch.equal(data.train_images, direct.train_images)
    assert load_data("parquet", str(out), train_subset=10).num_train == 10
