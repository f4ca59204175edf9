"""`parquet`: a dataset packed into Parquet shards by `ssl-tune data pack`, read through pyarrow.fs.

The location is a local directory or any URI that pyarrow.fs resolves (s3://, gs://, abfs://, file://);
reading and writing go through the same code, and only the filesystem differs.

    LOCATION/
      dataset.json                 written last: classes, mean/std, image size, each split's shards
      train/part-00000.parquet     columns index (int64, position in the split), label (int64),
      train/part-00001.parquet ... image (PNG bytes: lossless, so the pixels read are the pixels packed)
      test/part-00000.parquet ...

A rank of a multi-worker trial can read only its own train shards (`shard=(rank, world_size)`: shards
rank, rank + world_size, ...), trimmed so that every rank gets as many images as the smallest one.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import torch
from PIL import Image
from torchvision.transforms.v2 import functional as TF

from ssl_tune.data.base import DataRequest, ImageData, register_dataset
from ssl_tune.errors import UsageError
from ssl_tune.stages import stage
from ssl_tune.storage import require_empty_output

FORMAT = "ssl-tune-parquet"
FORMAT_VERSION = 1
MANIFEST = "dataset.json"
SPLITS = ("train", "test")
SCHEMA = pa.schema([("index", pa.int64()), ("label", pa.int64()), ("image", pa.binary())])
DEFAULT_SHARD_SIZE = 5000
REPLACE_HINT = "pass --force to replace its contents"
THREADS = min(8, os.cpu_count() or 1)


@dataclass(frozen=True)
class Shard:
    path: str  # relative to the dataset root
    rows: int
    first: int  # index (in its split) of its first row


@dataclass(frozen=True)
class Manifest:
    num_classes: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    image_size: int
    source: str
    splits: dict[str, tuple[Shard, ...]]

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "source": self.source,
            "num_classes": self.num_classes,
            "mean": list(self.mean),
            "std": list(self.std),
            "image_size": self.image_size,
            "encoding": "png",
            "splits": {s: [{"path": sh.path, "rows": sh.rows} for sh in shards] for s, shards in self.splits.items()},
        }

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Manifest:
        splits = {}
        for split in SPLITS:
            first, shards = 0, []
            for entry in raw["splits"][split]:
                shards.append(Shard(str(entry["path"]), int(entry["rows"]), first))
                first += int(entry["rows"])
            splits[split] = tuple(shards)
        mean, std = tuple(float(v) for v in raw["mean"]), tuple(float(v) for v in raw["std"])
        return cls(int(raw["num_classes"]), mean, std, int(raw["image_size"]), str(raw["source"]), splits)  # type: ignore[arg-type]


def resolve_location(location: str) -> tuple[pafs.FileSystem, str]:
    """A local path or a URI -> (pyarrow filesystem, path on it). Needs no network for local paths."""
    if "://" not in location:
        return pafs.LocalFileSystem(), Path(location).expanduser().resolve().as_posix()
    try:
        fs, path = pafs.FileSystem.from_uri(location)
    except (pa.ArrowException, OSError, ValueError) as err:
        raise UsageError(f"cannot open {location}: {_first_line(err)}") from err
    return fs, path.rstrip("/")


def _first_line(err: BaseException) -> str:
    return (str(err).strip().splitlines() or [type(err).__name__])[0]


# --- writing ---------------------------------------------------------------------------------------


def encode_png(image: np.ndarray) -> bytes:
    """One (H, W, 3) uint8 image as PNG bytes."""
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def write_dataset(
    data: ImageData,
    location: str,
    *,
    source: str,
    shard_size: int = DEFAULT_SHARD_SIZE,
    force: bool = False,
    filesystem: pafs.FileSystem | None = None,
) -> Manifest:
    """Write `data` as Parquet shards at `location` (or at the path `location` on `filesystem`)."""
    if shard_size <= 0:
        raise UsageError(f"--shard-size must be positive, not {shard_size}")
    fs, root = (filesystem, location) if filesystem is not None else resolve_location(location)
    _prepare_output(fs, root, location, force=force)
    splits = {}
    with ThreadPoolExecutor(THREADS) as pool:
        for split, images, labels in (
            ("train", data.train_images, data.train_labels),
            ("test", data.test_images, data.test_labels),
        ):
            fs.create_dir(f"{root}/{split}", recursive=True)
            hwc = images.permute(0, 2, 3, 1).contiguous().numpy()
            shards = []
            n_shards = -(-len(labels) // shard_size)
            shown = f"in {n_shards} shard{'s' if n_shards != 1 else ''}"
            with stage(f"packing {split} split", len(labels), detail=shown) as advance:
                for number, first in enumerate(range(0, len(labels), shard_size)):
                    rows = range(first, min(first + shard_size, len(labels)))
                    table = pa.table(
                        {
                            "index": pa.array(rows, pa.int64()),
                            "label": pa.array(labels[first : rows.stop].tolist(), pa.int64()),
                            "image": pa.array(pool.map(encode_png, hwc[first : rows.stop]), pa.binary()),
                        },
                        schema=SCHEMA,
                    )
                    path = f"{split}/part-{number:05d}.parquet"
                    # PNG is compressed already; parquet compression would only cost time
                    pq.write_table(table, f"{root}/{path}", filesystem=fs, compression="none", use_dictionary=False)
                    shards.append(Shard(path, len(rows), first))
                    advance(len(rows))
            splits[split] = tuple(shards)
    manifest = Manifest(
        data.num_classes,
        tuple(data.mean),
        tuple(data.std),
        data.image_size,
        source,
        splits,  # type: ignore[arg-type]
    )
    with fs.open_output_stream(f"{root}/{MANIFEST}") as out:  # last: a pack without it is unfinished
        out.write(json.dumps(manifest.to_json(), indent=1).encode())
    return manifest


def _prepare_output(fs: pafs.FileSystem, root: str, location: str, *, force: bool) -> None:
    if require_empty_output(location, force=force, hint=REPLACE_HINT):
        fs.delete_dir_contents(root)
    fs.create_dir(root, recursive=True)


# --- reading ---------------------------------------------------------------------------------------


def read_manifest(fs: pafs.FileSystem, root: str, location: str) -> Manifest:
    try:
        with fs.open_input_stream(f"{root}/{MANIFEST}") as f:
            raw = json.loads(f.read())
    except FileNotFoundError:
        raise UsageError(
            f"no {MANIFEST} in {location}: not made by `ssl-tune data pack`, or the pack did not finish"
        ) from None
    except (OSError, ValueError) as err:
        raise UsageError(f"cannot read {location}/{MANIFEST}: {_first_line(err)}") from err
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        raise UsageError(f"{location}/{MANIFEST} is not an {FORMAT} manifest")
    if raw.get("version") != FORMAT_VERSION:
        raise UsageError(f"{location}: format version {raw.get('version')} (this ssl-tune reads {FORMAT_VERSION})")
    try:
        return Manifest.from_json(raw)
    except (KeyError, TypeError, ValueError) as err:
        raise UsageError(f"{location}/{MANIFEST} is malformed: {_first_line(err)}") from err


def select_rows(
    shards: Sequence[Shard], limit: int | None, shard: tuple[int, int] | None = None, *, split: str = "train"
) -> list[tuple[Shard, int]]:
    """(shard, rows to take from its start) for the first `limit` rows, or this rank's part of them."""
    total = sum(s.rows for s in shards)
    if limit is not None and limit > total:
        raise UsageError(f"{split}_subset {limit} is larger than the {split} split ({total} images)")
    end = total if limit is None else limit
    taken = [(s, min(s.rows, end - s.first)) for s in shards if s.first < end]
    if shard is None:
        return taken
    rank, world_size = shard
    if len(taken) < world_size:
        raise UsageError(
            f"{len(taken)} {split} shard(s) cannot feed {world_size} ranks: repack with a smaller --shard-size"
        )
    per_rank = [taken[r::world_size] for r in range(world_size)]
    budget = min(sum(n for _, n in mine) for mine in per_rank)  # every rank gets as many images
    mine = []
    for s, n in per_rank[rank]:
        mine.append((s, min(n, budget)))
        budget -= mine[-1][1]
    return [(s, n) for s, n in mine if n > 0]


def read_rows(
    fs: pafs.FileSystem, root: str, location: str, rows: Sequence[tuple[Shard, int]], size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Decode the selected rows into uint8 (N, 3, size, size) images and int64 labels."""
    images: list[np.ndarray] = []
    labels: list[np.ndarray] = []
    with ThreadPoolExecutor(THREADS) as pool:
        for shard, n in rows:
            where = f"{location}/{shard.path}"
            try:
                table = pq.read_table(f"{root}/{shard.path}", filesystem=fs, columns=SCHEMA.names).slice(0, n)
            except FileNotFoundError:
                raise UsageError(f"{where} is missing") from None
            except (OSError, pa.ArrowException) as err:
                raise UsageError(f"cannot read {where}: {_first_line(err)}") from err
            index = table.column("index").to_numpy()
            if len(index) != n or not np.array_equal(index, np.arange(shard.first, shard.first + n)):
                raise UsageError(f"{where} does not hold rows {shard.first}..{shard.first + n - 1} of its split")
            decoded = list(pool.map(_decode_png, table.column("image").to_pylist()))
            if any(img is None or img.shape != (size, size, 3) for img in decoded):
                raise UsageError(f"{where} holds an image that is not a {size}x{size} RGB PNG")
            images.extend(decoded)  # type: ignore[arg-type]
            labels.append(table.column("label").to_numpy())
    x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous()
    y = torch.from_numpy(np.concatenate(labels).astype(np.int64))
    return x, y


def _decode_png(data: bytes) -> np.ndarray | None:
    try:
        with Image.open(io.BytesIO(data)) as img:
            return np.asarray(img.convert("RGB"))
    except (OSError, ValueError):
        return None


def read_dataset(
    location: str,
    *,
    train_subset: int | None = None,
    test_subset: int | None = None,
    shard: tuple[int, int] | None = None,
    image_size: int | None = None,
    filesystem: pafs.FileSystem | None = None,
    with_test: bool = True,
) -> ImageData:
    """Read a packed dataset from `location` (or from the path `location` on `filesystem`)."""
    fs, root = (filesystem, location) if filesystem is not None else resolve_location(location)
    manifest = read_manifest(fs, root, location)
    train_rows = select_rows(manifest.splits["train"], train_subset, shard, split="train")
    train_x, train_y = read_rows(fs, root, location, train_rows, manifest.image_size)
    test_x = test_y = None
    if with_test:  # every rank evaluates on all of it
        test_rows = select_rows(manifest.splits["test"], test_subset, split="test")
        test_x, test_y = read_rows(fs, root, location, test_rows, manifest.image_size)
    if image_size is not None and image_size != manifest.image_size:
        train_x = _resize(train_x, image_size)
        test_x = None if test_x is None else _resize(test_x, image_size)
    return ImageData(train_x, train_y, test_x, test_y, manifest.num_classes, manifest.mean, manifest.std)


def _resize(images: torch.Tensor, size: int) -> torch.Tensor:
    chunks = [TF.center_crop(TF.resize(c, [size], antialias=True), [size]) for c in images.split(1024)]
    return torch.cat(chunks)


@register_dataset("parquet", sharded=True)
def parquet(request: DataRequest) -> ImageData:
    if not request.location:
        raise UsageError("dataset 'parquet' needs --data-dir (a directory or URI made by `ssl-tune data pack`)")
    return read_dataset(
        request.location,
        train_subset=request.train_subset,
        test_subset=request.test_subset,
        shard=request.shard,
        image_size=request.image_size,
        with_test=request.with_test,
    )
