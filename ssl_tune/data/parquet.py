"""`parquet`: a dataset packed into Parquet shards by `ssl-tune data pack`, read through pyarrow.fs.

The location is a local directory or any URI that pyarrow.fs resolves (s3://, gs://, abfs://, file://);
reading and writing go through the same code, and only the filesystem differs.

    LOCATION/
      dataset.json                 written last: classes, mean/std, image size, each split's shards and encoding
      train/part-00000.parquet     columns index (int64, position in the split), label (int64, -1: unlabeled),
      train/part-00001.parquet ... image (binary: PNG, or a JPEG source file's own bytes)
      test/part-00000.parquet ...

Images decoded from their source (CIFAR, synthetic, PNG folders) are stored as PNG at the image size: lossless,
so the pixels read are the pixels packed. A JPEG file is stored as it is, never re-encoded; reading decodes it
with PIL and resizes it to the image size (shorter side, centre crop) as the `imagefolder` loader does.
A shard holds images until the next one would take it past the target size (`--shard-mb`).

Reading checks every shard it will read first (present, schema, row count: footers only), then decodes; an
image that does not decode is reported by shard and row, or skipped and counted (`skip_corrupt`).
"""

from __future__ import annotations

import io
import json
import os
import sys
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import torch
from PIL import Image

from ssl_tune.data.base import DataRequest, ImageData, register_dataset
from ssl_tune.data.imagefolder import IMAGENET_STATS, UNLABELED, FolderListing, fit_image
from ssl_tune.errors import UsageError, first_line
from ssl_tune.stages import stage
from ssl_tune.storage import require_empty_output

FORMAT = "ssl-tune-parquet"
FORMAT_VERSION = 2  # 2: JPEG bytes, unlabeled sets and "encodings"; a set without them is still written as 1
READABLE_VERSIONS = (1, 2)
MANIFEST = "dataset.json"
LABELED_PACK = "labeled"  # inside an unlabeled pack: a labeled pack, the labeled set beside the pool
SPLITS = ("train", "test")
SCHEMA = pa.schema([("index", pa.int64()), ("label", pa.int64()), ("image", pa.binary())])
MIB = 1 << 20
DEFAULT_SHARD_MB = 64.0
MAX_SHARD_MB = 1024.0  # a binary column holds at most 2 GiB
REPLACE_HINT = "pass --force to replace its contents"
THREADS = min(8, os.cpu_count() or 1)
PNG, JPEG, MIXED = "png", "jpeg", "mixed"
_SIGNATURES = {b"\x89PNG\r\n\x1a\n": PNG, b"\xff\xd8\xff": JPEG}

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class Shard:
    path: str  # relative to the dataset root
    rows: int
    first: int  # index (in its split) of its first row


@dataclass(frozen=True)
class Manifest:
    num_classes: int  # 0: unlabeled (label -1, no test split)
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    image_size: int
    source: str
    splits: dict[str, tuple[Shard, ...]]
    encodings: dict[str, str] = field(default_factory=dict)  # split -> png | jpeg | mixed (absent: empty split)

    @property
    def labeled(self) -> bool:
        return self.num_classes > 0

    @property
    def version(self) -> int:
        """The oldest format version that describes this set, so that older readers still read plain sets."""
        return 1 if self.labeled and set(self.encodings.values()) <= {PNG} else FORMAT_VERSION

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": self.version,
            "source": self.source,
            "num_classes": self.num_classes,
            "mean": list(self.mean),
            "std": list(self.std),
            "image_size": self.image_size,
            "encoding": _combine(self.encodings.values()) or PNG,
            "encodings": dict(self.encodings),
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
        # version 1 held PNG only
        encodings = raw.get("encodings") or {s: PNG for s in SPLITS if splits[s]}
        mean, std = tuple(float(v) for v in raw["mean"]), tuple(float(v) for v in raw["std"])
        return cls(
            int(raw["num_classes"]),
            mean,  # type: ignore[arg-type]
            std,  # type: ignore[arg-type]
            int(raw["image_size"]),
            str(raw["source"]),
            splits,
            {str(k): str(v) for k, v in encodings.items()},
        )


def _combine(encodings: Iterable[str]) -> str | None:
    kinds = set(encodings)
    return None if not kinds else kinds.pop() if len(kinds) == 1 else MIXED


def resolve_location(location: str) -> tuple[pafs.FileSystem, str]:
    """A local path or a URI -> (pyarrow filesystem, path on it). Needs no network for local paths."""
    if "://" not in location:
        return pafs.LocalFileSystem(), Path(location).expanduser().resolve().as_posix()
    try:
        fs, path = pafs.FileSystem.from_uri(location)
    except (pa.ArrowException, OSError, ValueError) as err:
        raise UsageError(f"cannot open {location}: {first_line(err)}") from err
    return fs, path.rstrip("/")


def encoding_of(data: bytes) -> str | None:
    """png or jpeg by the bytes' signature, None for anything else."""
    return next((kind for sig, kind in _SIGNATURES.items() if data.startswith(sig)), None)


# --- decoding --------------------------------------------------------------------------------------


class CorruptImage(ValueError):
    """A stored image that does not decode."""


def decode_image(data: bytes, size: int) -> np.ndarray:
    """PNG or JPEG bytes -> uint8 (size, size, 3): PIL's decoding, resized (shorter side) and centre-cropped
    when it is not size x size already. Raises CorruptImage."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            if img.size == (size, size):
                return np.asarray(img.convert("RGB"))
            return fit_image(img, size).permute(1, 2, 0).numpy()
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
        raise CorruptImage(first_line(err)) from None


# --- writing ---------------------------------------------------------------------------------------


def encode_png(image: np.ndarray) -> bytes:
    """One (H, W, 3) uint8 image as PNG bytes."""
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


@dataclass(frozen=True)
class ShardLimits:
    """A shard closes before the image that would take its image bytes past `mb` MiB, or at `rows` rows."""

    mb: float = DEFAULT_SHARD_MB
    rows: int | None = None

    def __post_init__(self) -> None:
        if not 0 < self.mb <= MAX_SHARD_MB:
            raise UsageError(f"--shard-mb must be in (0, {MAX_SHARD_MB:g}], not {self.mb:g}")
        if self.rows is not None and self.rows <= 0:
            raise UsageError(f"--shard-size must be positive, not {self.rows}")

    def describe(self) -> str:
        rows = "" if self.rows is None else f" or {self.rows} images"
        return f"in shards of up to {self.mb:g} MiB{rows}"


@dataclass(frozen=True)
class PackResult:
    manifest: Manifest
    skipped: int  # source images that did not decode (--skip-corrupt)


def _bounded_map(pool: ThreadPoolExecutor, fn: Callable[[T], R], items: Iterable[T]) -> Iterator[R]:
    """pool.map, in order, with at most a few items per thread in flight (pool.map would submit them all)."""
    pending: deque[Future[R]] = deque()
    for item in items:
        pending.append(pool.submit(fn, item))
        if len(pending) >= 4 * THREADS:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()


def _write_split(
    fs: pafs.FileSystem,
    root: str,
    split: str,
    rows: Iterable[tuple[int, bytes] | None],
    limits: ShardLimits,
    advance: Callable[[int], None],
) -> tuple[tuple[Shard, ...], set[str], int]:
    """Write one split's (label, image bytes) rows as shards; None rows are skipped. Returns the shards, the
    encodings written and how many rows were skipped."""
    fs.create_dir(f"{root}/{split}", recursive=True)
    shards: list[Shard] = []
    labels: list[int] = []
    images: list[bytes] = []
    encodings: set[str] = set()
    state = {"bytes": 0, "first": 0, "skipped": 0}
    max_bytes = limits.mb * MIB

    def flush() -> None:
        first = state["first"]
        table = pa.table(
            {
                "index": pa.array(range(first, first + len(labels)), pa.int64()),
                "label": pa.array(labels, pa.int64()),
                "image": pa.array(images, pa.binary()),
            },
            schema=SCHEMA,
        )
        path = f"{split}/part-{len(shards):05d}.parquet"
        # PNG and JPEG are compressed already: parquet compression, dictionaries and image stats only cost
        pq.write_table(
            table,
            f"{root}/{path}",
            filesystem=fs,
            compression="none",
            use_dictionary=False,
            write_statistics=["index", "label"],
        )
        shards.append(Shard(path, len(labels), first))
        advance(len(labels))
        state["first"] += len(labels)
        state["bytes"] = 0
        labels.clear()
        images.clear()

    for row in rows:
        if row is None:
            state["skipped"] += 1
            advance(1)
            continue
        label, data = row
        if labels and (state["bytes"] + len(data) > max_bytes or len(labels) == limits.rows):
            flush()
        labels.append(label)
        images.append(data)
        encodings.add(encoding_of(data) or "unknown")
        state["bytes"] += len(data)
    if labels:
        flush()
    return tuple(shards), encodings, state["skipped"]


def _write(
    fs: pafs.FileSystem,
    root: str,
    location: str,
    rows: dict[str, tuple[Iterable[tuple[int, bytes] | None], int]],
    meta: tuple[int, tuple[float, float, float], tuple[float, float, float], int, str],
    limits: ShardLimits,
    force: bool,
) -> PackResult:
    """Write each split's rows, then dataset.json. On any failure, remove what was written."""
    existed = fs.get_file_info(root).type == pafs.FileType.Directory
    _prepare_output(fs, root, location, force=force)
    try:
        splits, encodings, skipped = {}, {}, 0
        for split in SPLITS:
            if split not in rows:  # an unlabeled set has no test split
                splits[split] = ()
                continue
            split_rows, total = rows[split]
            with stage(f"packing {split} split", total, detail=limits.describe()) as advance:
                shards, kinds, n = _write_split(fs, root, split, split_rows, limits, advance)
            splits[split], skipped = shards, skipped + n
            if shards:
                encodings[split] = _combine(kinds) or PNG
        if not splits["train"]:
            raise UsageError("nothing to pack: every train image was skipped")
        num_classes, mean, std, image_size, source = meta
        manifest = Manifest(num_classes, mean, std, image_size, source, splits, encodings)
        with fs.open_output_stream(f"{root}/{MANIFEST}") as out:  # last: a pack without it is unfinished
            out.write(json.dumps(manifest.to_json(), indent=1).encode())
    except BaseException:
        if existed:
            fs.delete_dir_contents(root, missing_dir_ok=True)
        else:
            fs.delete_dir(root)
        raise
    return PackResult(manifest, skipped)


def write_dataset(
    data: ImageData,
    location: str,
    *,
    source: str,
    shard_mb: float = DEFAULT_SHARD_MB,
    shard_size: int | None = None,
    force: bool = False,
    filesystem: pafs.FileSystem | None = None,
) -> Manifest:
    """Write in-memory `data` as PNG Parquet shards at `location` (or at the path `location` on `filesystem`).
    Unlabeled data (no labels) is written with label -1, num_classes 0 and an empty test split."""
    limits = ShardLimits(shard_mb, shard_size)
    fs, root = (filesystem, location) if filesystem is not None else resolve_location(location)
    parts = [("train", data.train_images, data.train_labels)]
    if data.labeled and data.test_images is not None and data.test_labels is not None:
        parts.append(("test", data.test_images, data.test_labels))
    with ThreadPoolExecutor(THREADS) as pool:

        def png_rows(images: torch.Tensor, labels: torch.Tensor | None) -> Iterator[tuple[int, bytes]]:
            ys = [UNLABELED] * len(images) if labels is None else labels.tolist()
            hwc = (img.permute(1, 2, 0).numpy() for img in images)
            return zip(ys, _bounded_map(pool, encode_png, hwc), strict=True)

        rows = {split: (png_rows(images, labels), len(images)) for split, images, labels in parts}
        num_classes = data.num_classes if data.labeled else 0
        meta = (num_classes, tuple(data.mean), tuple(data.std), data.image_size, source)
        return _write(fs, root, location, rows, meta, limits, force).manifest  # type: ignore[arg-type]


def read_source_image(path: str, size: int) -> bytes:
    """A source file's bytes when it is a JPEG (checked by decoding it, at a reduced scale), else PNG bytes of
    it decoded and resized to size x size. Raises CorruptImage."""
    try:
        data = Path(path).read_bytes()
        with Image.open(io.BytesIO(data)) as img:
            if img.format in ("JPEG", "MPO") and encoding_of(data) == JPEG:
                img.draft("RGB", (size, size))  # libjpeg's DCT scaling: a cheap full check
                img.load()
                return data
            return encode_png(fit_image(img, size).permute(1, 2, 0).numpy())
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
        raise CorruptImage(f"cannot read image {path}: {first_line(err)}") from None


def write_folder(
    listing: FolderListing,
    location: str,
    *,
    image_size: int,
    shard_mb: float = DEFAULT_SHARD_MB,
    shard_size: int | None = None,
    skip_corrupt: bool = False,
    force: bool = False,
    filesystem: pafs.FileSystem | None = None,
) -> PackResult:
    """Pack an image folder file by file (never whole in memory): JPEG files as their own bytes, other images
    as PNG at image_size. A file that does not decode stops the pack (UsageError), or with `skip_corrupt` is
    left out and counted."""
    limits = ShardLimits(shard_mb, shard_size)
    fs, root = (filesystem, location) if filesystem is not None else resolve_location(location)

    def one(sample: tuple[str, int]) -> tuple[int, bytes] | None:
        path, label = sample
        try:
            return label, read_source_image(path, image_size)
        except CorruptImage as err:
            if skip_corrupt:
                return None
            raise UsageError(f"{err} (pass --skip-corrupt to leave such files out)") from None

    with ThreadPoolExecutor(THREADS) as pool:
        rows = {"train": (_bounded_map(pool, one, listing.train), len(listing.train))}
        if listing.test is not None:
            rows["test"] = (_bounded_map(pool, one, listing.test), len(listing.test))
        mean, std = IMAGENET_STATS
        meta = (listing.num_classes, mean, std, image_size, "imagefolder")
        return _write(fs, root, location, rows, meta, limits, force)  # type: ignore[arg-type]


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
        raise UsageError(f"cannot read {location}/{MANIFEST}: {first_line(err)}") from err
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        raise UsageError(f"{location}/{MANIFEST} is not an {FORMAT} manifest")
    if raw.get("version") not in READABLE_VERSIONS:
        shown = ", ".join(map(str, READABLE_VERSIONS))
        raise UsageError(f"{location}: format version {raw.get('version')} (this ssl-tune reads {shown})")
    try:
        return Manifest.from_json(raw)
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        raise UsageError(f"{location}/{MANIFEST} is malformed: {first_line(err)}") from err


def check_shards(fs: pafs.FileSystem, root: str, location: str, shards: Iterable[Shard]) -> None:
    """Each shard is there, has the packed schema and the rows dataset.json lists: footers only, no images.
    Raises UsageError naming the first shard that is not."""
    for shard in shards:
        where = f"{location}/{shard.path}"
        try:
            with fs.open_input_file(f"{root}/{shard.path}") as f:
                meta = pq.ParquetFile(f).metadata
                schema = meta.schema.to_arrow_schema().remove_metadata()
        except FileNotFoundError:
            raise UsageError(f"{where} is missing (listed in {MANIFEST})") from None
        except (OSError, pa.ArrowException) as err:
            raise UsageError(f"cannot read {where}: {first_line(err)}") from err
        if not schema.equals(SCHEMA):
            raise UsageError(f"{where} has columns ({_describe(schema)}), not the packed ({_describe(SCHEMA)})")
        if meta.num_rows != shard.rows:
            raise UsageError(f"{where} holds {meta.num_rows} rows; {MANIFEST} lists {shard.rows}")


def _describe(schema: pa.Schema) -> str:
    return ", ".join(f"{f.name} {f.type}" for f in schema)


def select_rows(shards: Sequence[Shard], limit: int | None, *, split: str = "train") -> list[tuple[Shard, int]]:
    """(shard, rows to take from its start) for the first `limit` rows."""
    total = sum(s.rows for s in shards)
    if limit is not None and limit > total:
        raise UsageError(f"{split}_subset {limit} is larger than the {split} split ({total} images)")
    end = total if limit is None else limit
    return [(s, min(s.rows, end - s.first)) for s in shards if s.first < end]


@dataclass(frozen=True)
class BadRow:
    shard: str  # the shard's location
    row: int  # position in the shard
    index: int  # position in the split
    reason: str

    def __str__(self) -> str:
        return f"{self.shard} row {self.row} (index {self.index}): corrupt image: {self.reason}"


def _read_shard(
    fs: pafs.FileSystem, root: str, location: str, shard: Shard, n: int, size: int, pool: ThreadPoolExecutor
) -> tuple[list[np.ndarray | BadRow], np.ndarray]:
    """The first n rows of a shard: each image decoded (or a BadRow), and the labels."""
    where = f"{location}/{shard.path}"
    try:
        table = pq.read_table(f"{root}/{shard.path}", filesystem=fs, columns=SCHEMA.names).slice(0, n)
    except FileNotFoundError:
        raise UsageError(f"{where} is missing (listed in {MANIFEST})") from None
    except (OSError, pa.ArrowException) as err:
        raise UsageError(f"cannot read {where}: {first_line(err)}") from err
    index = table.column("index").to_numpy()
    if len(index) != n or not np.array_equal(index, np.arange(shard.first, shard.first + n)):
        raise UsageError(f"{where} does not hold rows {shard.first}..{shard.first + n - 1} of its split")

    def one(row: int, data: bytes | None) -> np.ndarray | BadRow:
        try:
            return decode_image(data or b"", size)
        except CorruptImage as err:
            return BadRow(where, row, shard.first + row, str(err))

    images = list(pool.map(one, range(n), table.column("image").to_pylist()))
    return images, table.column("label").to_numpy()


def read_rows(
    fs: pafs.FileSystem,
    root: str,
    location: str,
    rows: Sequence[tuple[Shard, int]],
    size: int,
    *,
    skip_corrupt: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Decode the selected rows into uint8 (N, 3, size, size) images and int64 labels. An image that does not
    decode raises UsageError with its shard and row, or with `skip_corrupt` is left out. Returns the images,
    the labels and how many were left out."""
    images: list[np.ndarray] = []
    labels: list[np.ndarray] = []
    skipped = 0
    with ThreadPoolExecutor(THREADS) as pool:
        for shard, n in rows:
            decoded, ys = _read_shard(fs, root, location, shard, n, size, pool)
            bad = [i for i, img in enumerate(decoded) if isinstance(img, BadRow)]
            if bad and not skip_corrupt:
                raise UsageError(f"{decoded[bad[0]]} (skip_corrupt: true leaves such images out)")
            skipped += len(bad)
            images.extend(img for img in decoded if not isinstance(img, BadRow))
            labels.append(np.delete(ys, bad))
    if not images:
        raise UsageError(f"{location}: no image decodes in the rows read")
    x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous()
    y = torch.from_numpy(np.concatenate(labels).astype(np.int64))
    return x, y, skipped


def read_dataset(
    location: str,
    *,
    train_subset: int | None = None,
    test_subset: int | None = None,
    image_size: int | None = None,
    filesystem: pafs.FileSystem | None = None,
    with_test: bool = True,
    skip_corrupt: bool = False,
) -> ImageData:
    """Read a packed dataset from `location` (or from the path `location` on `filesystem`).

    Every shard to be read is checked first (present, schema, rows); then images are decoded. With
    `skip_corrupt`, images that do not decode are left out and their count printed on stderr."""
    fs, root = (filesystem, location) if filesystem is not None else resolve_location(location)
    manifest = read_manifest(fs, root, location)
    train_rows = select_rows(manifest.splits["train"], train_subset, split="train")
    test_rows = []
    if with_test and manifest.splits["test"]:
        test_rows = select_rows(manifest.splits["test"], test_subset, split="test")
    check_shards(fs, root, location, [s for s, _ in train_rows + test_rows])
    size = image_size or manifest.image_size  # each image decoded straight to it, as the stream decodes
    train_x, train_y, skipped = read_rows(fs, root, location, train_rows, size, skip_corrupt=skip_corrupt)
    test_x = test_y = None
    if test_rows:
        test_x, test_y, n = read_rows(fs, root, location, test_rows, size, skip_corrupt=skip_corrupt)
        skipped += n
    if skipped:
        print(f"ssl-tune: skipped {skipped} corrupt image(s) in {location} (skip_corrupt)", file=sys.stderr)
    labels = train_y if manifest.labeled else None
    if not manifest.labeled and has_labeled_pack(fs, root):
        held = read_labeled_pack(fs, root, location, size)
        return ImageData(train_x, None, None, None, held.num_classes, manifest.mean, manifest.std, *held.labeled)
    return ImageData(train_x, labels, test_x, test_y, manifest.num_classes, manifest.mean, manifest.std)


def has_labeled_pack(fs: pafs.FileSystem, root: str) -> bool:
    """Whether an unlabeled pack holds a labeled pack (`labeled/`, made by `ssl-tune data pack`) beside its pool."""
    return fs.get_file_info(f"{root}/{LABELED_PACK}/{MANIFEST}").type == pafs.FileType.File


@dataclass(frozen=True)
class LabeledSet:
    labeled: tuple[torch.Tensor, torch.Tensor]  # images, labels
    num_classes: int


def read_labeled_pack(fs: pafs.FileSystem, root: str, location: str, size: int) -> LabeledSet:
    """The train split of the labeled pack inside an unlabeled one, checked: labeled, 2 classes or more, none
    without images (one line each)."""
    where = f"{location}/{LABELED_PACK}"
    manifest = read_manifest(fs, f"{root}/{LABELED_PACK}", where)
    if not manifest.labeled:
        raise UsageError(f"{where} is unlabeled: the pack beside a pool must be a labeled one")
    if manifest.num_classes < 2:
        raise UsageError(f"{where} has {manifest.num_classes} class(es): a labeled set needs at least 2 classes")
    data = read_dataset(f"{root}/{LABELED_PACK}", image_size=size, filesystem=fs, with_test=False)
    assert data.train_labels is not None  # a labeled manifest
    counts = torch.bincount(data.train_labels, minlength=manifest.num_classes)
    if empty := (counts == 0).nonzero().flatten().tolist():
        raise UsageError(f"{where}: class {empty[0]} of {manifest.num_classes} has no images in its train split")
    return LabeledSet((data.train_images, data.train_labels), manifest.num_classes)


# --- checking --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CheckReport:
    manifest: Manifest
    bad: list[BadRow]

    def summary(self, location: str) -> str:
        parts = []
        for split, shards in self.manifest.splits.items():
            if shards:
                images, n = sum(s.rows for s in shards), len(shards)
                encoding = self.manifest.encodings.get(split, PNG)
                parts.append(f"{images} {split} images ({encoding}) in {n} shard{'s' if n != 1 else ''}")
        labels = f"{self.manifest.num_classes} classes" if self.manifest.labeled else "unlabeled"
        return f"{location}: {', '.join(parts)}, {labels}, {self.manifest.image_size}px"


def check_dataset(location: str, *, filesystem: pafs.FileSystem | None = None) -> CheckReport:
    """Check a packed dataset whole: every shard's presence, schema and rows first, then its index column
    and every image decoded. Raises UsageError for a missing or malformed shard; returns the corrupt rows."""
    fs, root = (filesystem, location) if filesystem is not None else resolve_location(location)
    manifest = read_manifest(fs, root, location)
    every = [s for split in SPLITS for s in manifest.splits[split]]
    check_shards(fs, root, location, every)
    bad: list[BadRow] = []
    total = sum(s.rows for s in every)
    with ThreadPoolExecutor(THREADS) as pool, stage("checking images", total) as advance:
        for s in every:
            decoded, _ = _read_shard(fs, root, location, s, s.rows, manifest.image_size, pool)
            bad.extend(img for img in decoded if isinstance(img, BadRow))
            advance(s.rows)
    return CheckReport(manifest, bad)


@register_dataset("parquet")
def parquet(request: DataRequest) -> ImageData:
    if not request.location:
        raise UsageError("dataset 'parquet' needs --data-dir (a directory or URI made by `ssl-tune data pack`)")
    return read_dataset(
        request.location,
        train_subset=request.train_subset,
        test_subset=request.test_subset,
        image_size=request.image_size,
        with_test=request.with_test,
        skip_corrupt=request.skip_corrupt,
    )
