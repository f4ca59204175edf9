"""`streamed_shards`: train on a packed dataset larger than host memory, streamed from its Parquet shards through
Ray Data.

- The train shards are read by `ray.data.read_parquet` (a local directory or any pyarrow URI). Decoding (PNG or
  JPEG bytes -> uint8, resized to the run's image size) runs in Ray Data `map_batches` tasks on CPU workers; the
  training process receives uint8 (N, 3, H, W) batches and the run's batched view generator makes the views on
  the device, as for in-memory data.
- `stream_decode: device` (JPEG packs): the tasks only filter rows and pass the JPEG bytes on; the training
  process decodes each batch on its device (`device_decode`: nvJPEG on CUDA) into the same uint8 batches.
- A multi-worker trial passes the dataset to `TorchTrainer(datasets={"train": ...})`; each rank iterates its
  `ray.train.get_dataset_shard("train")` (Ray Train splits it with `streaming_split(world_size, equal=True)`):
  in an epoch every image reaches at most one rank, and each rank takes as many rows, so all but less than one
  global batch are seen. A single-worker trial in Tune's own process iterates the dataset directly.
- Shuffling: the shard file order and each rank's local shuffle window are seeded from (seed, epoch). A single
  process (rank 0 of 1) builds each epoch's dataset with the file order permuted by (seed, epoch) and Ray Data's
  `preserve_order`, so the same (seed, epoch) gives the same image order and a resumed epoch replays it. Across
  several ranks, which rank gets which block depends on timing (the split hands blocks to whichever rank asks),
  so only the epoch's at-most-once coverage is guaranteed, not each rank's order.
- The kNN bank, the validation queries and RankMe read a bounded subset, the first `stream_eval_subset` train
  images, decoded once into host memory; the validation queries among them are filtered out of the stream.
"""

from __future__ import annotations

import bisect
import contextlib
import json
import os
import resource
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from ssl_tune.data.base import DataSettings, ImageData
from ssl_tune.data.device_decode import decode_jpegs
from ssl_tune.data.parquet import (
    JPEG,
    BadRow,
    CorruptImage,
    Manifest,
    check_shards,
    decode_image,
    has_labeled_pack,
    read_labeled_pack,
    read_manifest,
    read_rows,
    resolve_location,
    select_rows,
)
from ssl_tune.data.splits import validation_split
from ssl_tune.errors import UsageError
from ssl_tune.seeds import epoch_seed

if TYPE_CHECKING:
    import ray.data


STREAMED_SHARDS = "streamed_shards"
DECODE_BATCH = 128  # rows per map_batches call: small blocks keep each decode task's memory low
# decoded blocks are cut at this size (Ray Data's default, 128 MiB, would let one block hold a whole small set,
# and a consumer holds the blocks its batches come from)
BLOCK_BYTES = 8 * 2**20
STREAM_LOG_ENV = "SSL_TUNE_STREAM_LOG"  # a folder: each rank writes the ids it saw and its peak RSS per epoch


# --- which runs stream ------------------------------------------------------------------------------


def decoded_gb(rows: int, image_size: int) -> float:
    """Host memory of `rows` decoded uint8 RGB images of `image_size` px."""
    return rows * 3 * image_size * image_size / 1e9


def open_manifest(cfg: DataSettings) -> Manifest:
    """The manifest of the pack `cfg` names. Raises UsageError."""
    return _open(cfg)[2]


def _open(cfg: DataSettings, manifest: Manifest | None = None) -> tuple[Any, str, Manifest]:
    """The pack's filesystem, root and manifest (`manifest` when the caller has read it already)."""
    if not cfg.data_dir:
        raise UsageError("dataset 'parquet' needs --data-dir (a directory or URI made by `ssl-tune data pack`)")
    fs, root = resolve_location(cfg.data_dir)
    return fs, root, manifest or read_manifest(fs, root, cfg.data_dir)


def _train_rows(cfg: DataSettings, manifest: Manifest) -> int:
    total = sum(s.rows for s in manifest.splits["train"])
    if cfg.train_subset is not None and cfg.train_subset > total:
        raise UsageError(f"train_subset {cfg.train_subset} is larger than the train split ({total} images)")
    return total if cfg.train_subset is None else cfg.train_subset


def streams_shards(cfg: DataSettings, manifest: Manifest | None = None) -> bool:
    """Whether `cfg` trains from streamed shards: `data_placement: streamed_shards`, or `auto` on a `parquet`
    dataset whose decoded train split exceeds `host_data_limit_gb` (read from its `manifest` alone)."""
    if cfg.data_placement == STREAMED_SHARDS:
        return True  # the config refuses it for any dataset but parquet
    if cfg.data_placement != "auto" or cfg.dataset != "parquet":
        return False  # the config refuses stream_decode device here
    _, _, manifest = _open(cfg, manifest)
    size = cfg.image_size or manifest.image_size
    gb = decoded_gb(_train_rows(cfg, manifest), size)
    if gb <= cfg.host_data_limit_gb and cfg.stream_decode == "device":
        raise UsageError(
            f"stream_decode device streams only, and data_placement auto keeps this train split in memory ({gb:.2g}"
            f" GB decoded, host_data_limit_gb {cfg.host_data_limit_gb:g}): set data_placement streamed_shards, or"
            " stream_decode workers"
        )
    return gb > cfg.host_data_limit_gb


# --- the plan every rank shares ---------------------------------------------------------------------


@dataclass(frozen=True)
class ShardPlan:
    """What the stream reads: the train shard files (`rows_used` rows in all), minus the held-out validation ids."""

    location: str
    files: tuple[str, ...]  # paths on the location's filesystem, in packed order
    image_size: int
    rows_used: int  # the first rows_used rows of the train split (train_subset)
    held_out: tuple[int, ...]  # validation queries: decoded with the eval subset, never streamed
    eval_rows: int  # the first eval_rows train images are decoded once (bank, queries, RankMe)
    shuffle_window: int
    names: tuple[str, ...] = ()  # each file as error messages name it (location/train/part-N.parquet)
    firsts: tuple[int, ...] = ()  # the split index of each file's first row
    skip_corrupt: bool = False  # leave out (and count) images that do not decode, instead of stopping
    run_id: str = ""  # names this plan's Ray actor that counts the skipped images
    on_device: bool = False  # stream_decode device: JPEG bytes streamed, decoded in the training process

    @property
    def num_train(self) -> int:
        return self.rows_used - len(self.held_out)

    def filesystem(self) -> Any:
        return resolve_location(self.location)[0]

    def where(self, index: int) -> tuple[str, int]:
        """The shard file (as messages name it) and the row in it of the train image `index`."""
        i = bisect.bisect_right(self.firsts, index) - 1
        return self.names[i], index - self.firsts[i]


def shard_plan(cfg: DataSettings, manifest: Manifest | None = None) -> ShardPlan:
    """The stream of `cfg`'s train split; reads the manifest (unless given) and the labels of the eval subset
    only."""
    if cfg.dataset != "parquet":
        raise UsageError(f"data_placement {STREAMED_SHARDS} needs dataset 'parquet' (not '{cfg.dataset}')")
    fs, root, manifest = _open(cfg, manifest)
    encoding = manifest.encodings.get("train")
    if cfg.stream_decode == "device" and encoding != JPEG:
        raise UsageError(
            f"stream_decode device needs a JPEG pack ({cfg.data_dir} train images are {encoding}); use workers"
        )
    rows_used = _train_rows(cfg, manifest)
    taken = select_rows(manifest.splits["train"], rows_used)
    # a missing shard or one of another schema: one line now, before Ray Data starts (footers only)
    check_shards(fs, root, cfg.data_dir, [shard for shard, _ in taken])  # type: ignore[arg-type]
    eval_rows = min(cfg.stream_eval_subset, rows_used)
    held_out: tuple[int, ...] = ()
    if manifest.num_classes > 0 and cfg.monitor == "val":
        labels = _labels(fs, root, cfg.data_dir, select_rows(manifest.splits["train"], eval_rows))
        try:
            split = validation_split(labels, eval_rows, fraction=cfg.val_split, size=cfg.val_size)
        except ValueError as err:
            raise UsageError(str(err)) from None
        held_out = tuple(split.val_indices.tolist())
    return ShardPlan(
        cfg.data_dir,  # type: ignore[arg-type]
        tuple(f"{root}/{shard.path}" for shard, _ in taken),
        cfg.image_size or manifest.image_size,
        rows_used,
        held_out,
        eval_rows,
        cfg.stream_shuffle_window,
        tuple(f"{cfg.data_dir}/{shard.path}" for shard, _ in taken),
        tuple(shard.first for shard, _ in taken),
        cfg.skip_corrupt,
        uuid.uuid4().hex[:12] if cfg.skip_corrupt else "",
        cfg.stream_decode == "device",
    )


def _labels(fs: Any, root: str, location: str | None, rows: list) -> torch.Tensor:
    parts = []
    for shard, n in rows:
        try:
            table = pq.read_table(f"{root}/{shard.path}", filesystem=fs, columns=["label"])
        except FileNotFoundError:
            raise UsageError(f"{location}/{shard.path} is missing") from None
        parts.append(table.column("label").to_numpy()[:n])
    return torch.from_numpy(np.concatenate(parts).astype(np.int64))


def eval_subset(cfg: DataSettings, plan: ShardPlan, manifest: Manifest | None = None) -> ImageData:
    """The bounded part decoded once: the first `plan.eval_rows` train images (and the test split's first
    `test_subset` when the run monitors it; a pool's labeled pack, whole), each decoded straight to the run's
    image size (as the stream is: decoding 2,000 images of a 320 px pack first at 320 px took a rank's peak RSS
    to 2.8 GiB)."""
    fs, root, manifest = _open(cfg, manifest)
    where = cfg.data_dir or ""
    try:  # every image of it, even with skip_corrupt: the validation ids are positions in it
        x, y, _ = read_rows(fs, root, where, select_rows(manifest.splits["train"], plan.eval_rows), plan.image_size)
    except UsageError as err:
        hint = "decoded for evaluation; skip_corrupt leaves out streamed images only: lower stream_eval_subset"
        raise UsageError(f"{str(err).split(' (skip_corrupt')[0]} ({hint})") from None
    test_x = test_y = None
    if cfg.monitor == "test":
        n_test = cfg.test_subset if cfg.test_subset is not None else sum(s.rows for s in manifest.splits["test"])
        n_test = min(n_test, cfg.stream_eval_subset)
        test_rows = select_rows(manifest.splits["test"], n_test, split="test")
        check_shards(fs, root, where, [shard for shard, _ in test_rows])
        test_x, test_y, skipped = read_rows(fs, root, where, test_rows, plan.image_size, skip_corrupt=cfg.skip_corrupt)
        if skipped:
            print(f"ssl-tune: skipped {skipped} corrupt test image(s) in {where} (skip_corrupt)", file=sys.stderr)
    if not manifest.labeled and has_labeled_pack(fs, root):  # a streamed pool: its labeled set is small, read whole
        held = read_labeled_pack(fs, root, where, plan.image_size)
        return ImageData(x, None, None, None, held.num_classes, manifest.mean, manifest.std, *held.labeled)
    labels = y if manifest.num_classes > 0 else None
    return ImageData(x, labels, test_x, test_y, manifest.num_classes, manifest.mean, manifest.std)


# --- decoding (in Ray Data tasks) -------------------------------------------------------------------


class SkipCounter:
    """A Ray actor (one per plan, named by its run_id) that the decode tasks tell of each image they leave out."""

    def __init__(self) -> None:
        self.count = 0

    def add(self, n: int) -> int:
        self.count += n
        return self.count

    def total(self) -> int:
        return self.count


def _counter_name(plan: ShardPlan) -> str:
    return f"ssl-tune-skipped-{plan.run_id}"


def skip_counter(plan: ShardPlan) -> Any:
    """The plan's SkipCounter actor, started by the first caller (the training process, before any decoding)."""
    import ray

    actor = ray.remote(num_cpus=0)(SkipCounter).options(name=_counter_name(plan), get_if_exists=True)
    return actor.remote()


def _streamed(index: np.ndarray, plan: ShardPlan) -> np.ndarray:
    """Which of these train indices the stream trains on: below `plan.rows_used` (train_subset), not held out."""
    return (index < plan.rows_used) & ~np.isin(index, np.asarray(plan.held_out, np.int64))


def _corrupt(plan: ShardPlan, index: int, reason: str) -> UsageError:
    shard, row = plan.where(index)
    return UsageError(f"{BadRow(shard, row, index, reason)} (skip_corrupt: true leaves such images out)")


def decode_batch(batch: dict[str, np.ndarray], plan: ShardPlan) -> dict[str, np.ndarray]:
    """A Ray Data batch of packed rows -> {"index": int64 (n,), "image": uint8 (n, 3, size, size)}: the rows
    below `plan.rows_used` (train_subset) that are not held out. An image that does not decode raises
    UsageError naming its shard and row, or with `plan.skip_corrupt` is left out and counted."""
    index = batch["index"].astype(np.int64)
    keep = _streamed(index, plan)
    images, kept, skipped = [], [], 0
    for i, data, k in zip(index, batch["image"], keep, strict=True):
        if not k:
            continue
        try:
            images.append(decode_image(data or b"", plan.image_size).transpose(2, 0, 1))
            kept.append(i)
        except CorruptImage as err:
            if not plan.skip_corrupt:
                raise _corrupt(plan, int(i), str(err)) from None
            skipped += 1
    if skipped:
        import ray

        ray.get(ray.get_actor(_counter_name(plan)).add.remote(skipped))
    size = plan.image_size
    out = np.stack(images) if images else np.empty((0, 3, size, size), np.uint8)
    return {"index": np.asarray(kept, np.int64), "image": out}


def filter_batch(table: pa.Table, plan: ShardPlan) -> pa.Table:
    """stream_decode device: a Ray Data batch of packed rows -> its rows that `decode_batch` would keep, the
    image column still JPEG bytes (the training process decodes them)."""
    return table.filter(pa.array(_streamed(table.column("index").to_numpy().astype(np.int64), plan)))


def file_order(n_files: int, seed: int, epoch: int) -> list[int]:
    """The shard files' order in an epoch: a permutation seeded by (seed, epoch)."""
    g = torch.Generator().manual_seed(epoch_seed(seed, epoch))
    return torch.randperm(n_files, generator=g).tolist()


def build_dataset(plan: ShardPlan, seed: int, epoch: int | None = None) -> ray.data.Dataset:
    """The decoded train stream. With `epoch`, the files are read in `file_order(seed, epoch)` and Ray Data
    keeps that order (`preserve_order`): the same (seed, epoch) gives the same rows in the same order. Without
    (the dataset a TorchTrainer keeps for all epochs), Ray Data shuffles the files anew each epoch from `seed`."""
    import ray.data

    if epoch is None:
        files, shuffle = list(plan.files), ray.data.FileShuffleConfig(seed=seed, reseed_after_execution=True)
    else:
        files, shuffle = [plan.files[i] for i in file_order(len(plan.files), seed, epoch)], None
    ds = ray.data.read_parquet(files, filesystem=plan.filesystem(), partitioning=None, shuffle=shuffle)
    ds = ds.select_columns(["index", "image"])
    if plan.on_device:  # the JPEG bytes pass through, filtered
        ds = ds.map_batches(filter_batch, fn_kwargs={"plan": plan}, batch_size=DECODE_BATCH, batch_format="pyarrow")
    else:
        rows = max(1, min(DECODE_BATCH, BLOCK_BYTES // (3 * plan.image_size**2)))  # one decode call: one block
        ds = ds.map_batches(decode_batch, fn_kwargs={"plan": plan}, batch_size=rows, batch_format="numpy")
    ds.context.target_max_block_size = BLOCK_BYTES
    ds.context.print_on_execution_start = False
    ds.context.raise_original_map_exception = True  # a corrupt image's UsageError, not Ray's wrapper
    if epoch is not None:
        ds.context.execution_options.preserve_order = True
    return ds


@contextlib.contextmanager
def quiet_ray() -> Iterator[None]:
    """A local Ray cluster for a streamed `ssl-tune train`, started without its INFO lines and stopped after;
    nothing when Ray is up already (a sweep's trial, a test's cluster)."""
    import logging

    import ray
    import ray.data  # sets up its loggers: a file in the session's logs, and the console

    for handler in logging.getLogger("ray.data").handlers:  # progress and task errors: the file log only
        ray_console = type(handler).__module__.startswith("ray.") and type(handler).__name__ != "SessionFileHandler"
        if ray_console:  # only Ray's own: a handler someone else put there (pytest's capture) keeps its level
            handler.setLevel(logging.CRITICAL)
    if ray.is_initialized():
        yield
        return
    ray.init(include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
    try:
        yield
    finally:
        ray.shutdown()


# --- a rank's batches -------------------------------------------------------------------------------


def current_rss_mb(kind: str = "RssAnon") -> float:
    """This process's resident memory now, in MiB (Linux /proc; 0 elsewhere). `RssAnon` is its own memory;
    `RssShmem` the pages of Ray's shared object store it has mapped (the node's store, bounded by its size,
    counted once per node, not per process); `VmRSS` both, and mapped files."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(f"{kind}:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0.0


def peak_rss_mb() -> float:
    """This process's peak resident memory so far (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class ShardBatches:
    """One rank's uint8 batches, streamed: `epoch_batches(epoch)` yields `steps` (local_batch, 3, H, W) batches.

    `shard` is the rank's `ray.train.get_dataset_shard("train")` in a multi-worker trial (one of `world`);
    without it (one process) each epoch builds its own ordered dataset (`build_dataset(plan, seed, epoch)`).
    `last_ids` holds the image ids of the last epoch, in the order they were trained on. Images skipped as
    corrupt can shorten an epoch: to `(num_train - skipped) // (world * local_batch)` batches, on every rank.
    With `plan.on_device` the batches come as JPEG bytes and are decoded here, on `device`; an image left out
    (skip_corrupt) is made up from the next batch, so that every batch still holds local_batch images.
    """

    placement = STREAMED_SHARDS

    def __init__(
        self,
        plan: ShardPlan,
        *,
        seed: int,
        device: torch.device,
        rank: int,
        local_batch: int,
        steps: int,
        shard: Any = None,
        world: int = 1,
    ) -> None:
        self.plan, self.seed, self.device, self.rank = plan, seed, device, rank
        self.local_batch, self.steps, self.shard, self.world = local_batch, steps, shard, world
        self.last_ids = np.empty(0, np.int64)
        self.peak_anon_mb = self.peak_shmem_mb = 0.0  # sampled at each batch of the last epoch
        self.skipped = 0  # corrupt images left out in the last epoch, by all ranks (skip_corrupt)
        self._skipped_before = 0
        self._counter = skip_counter(plan) if plan.skip_corrupt else None

    def epoch_batches(self, epoch: int) -> Iterator[torch.Tensor]:
        source = self.shard if self.shard is not None else build_dataset(self.plan, self.seed, epoch)
        window = self.plan.shuffle_window or None
        batches = source.iter_batches(
            batch_size=self.local_batch,
            batch_format="numpy",
            drop_last=True,
            local_shuffle_buffer_size=window,
            local_shuffle_seed=epoch_seed(self.seed, epoch, self.rank) % 2**32 if window else None,
            prefetch_batches=2,
        )
        seen: list[np.ndarray] = []
        refill = _Refill(self.local_batch)
        self.peak_anon_mb = self.peak_shmem_mb = 0.0
        for batch in _user_errors(batches):
            self.peak_anon_mb = max(self.peak_anon_mb, current_rss_mb("RssAnon"))
            self.peak_shmem_mb = max(self.peak_shmem_mb, current_rss_mb("RssShmem"))
            if len(seen) == self.steps:  # an equal split gives every rank `steps` batches; more are drained
                continue
            if self.plan.on_device:
                full = refill.add(*self._decode(batch))
                if full is None:
                    continue
                ids, images = full
            else:
                ids, images = batch["index"], torch.from_numpy(batch["image"])
                if self.device.type == "cuda":
                    images = images.pin_memory()
                images = images.to(self.device, non_blocking=True)
            seen.append(ids)
            yield images
        self._count_skipped(epoch)
        # the split is equal: every rank gets (num_train - skipped) // world rows, whole batches of them
        expected = min(self.steps, (self.plan.num_train - self.skipped) // (self.world * self.local_batch))
        if len(seen) < expected:
            raise RuntimeError(f"rank {self.rank} got {len(seen)} of {expected} batches in epoch {epoch}")
        self.last_ids = np.concatenate(seen) if seen else np.empty(0, np.int64)
        _log_epoch(epoch, self.rank, self.last_ids, self.peak_anon_mb, self.peak_shmem_mb)

    def _decode(self, batch: dict[str, np.ndarray]) -> tuple[np.ndarray, torch.Tensor]:
        """stream_decode device: a batch of JPEG bytes -> its ids and its images decoded on the device. An image
        that does not decode raises UsageError naming its shard and row, or with skip_corrupt is left out (and
        counted, as the decode tasks count theirs)."""
        index = batch["index"].astype(np.int64)
        images, bad = decode_jpegs(list(batch["image"]), self.plan.image_size, self.device)
        if bad and not self.plan.skip_corrupt:
            position, reason = bad[0]
            raise _corrupt(self.plan, int(index[position]), reason)
        if bad:
            import ray

            ray.get(self._counter.add.remote(len(bad)))
        return np.delete(index, [position for position, _ in bad]), images

    def _count_skipped(self, epoch: int) -> None:
        """With skip_corrupt: how many images the epoch left out (all ranks), printed once, by rank 0. Read when
        this rank's stream has ended: Ray Data ends a split only once every decode task of the epoch has
        finished (and counted), and the next epoch's decoding waits for every rank to start it."""
        if self._counter is None:
            return
        import ray

        total = ray.get(self._counter.total.remote())
        self.skipped, self._skipped_before = total - self._skipped_before, total
        if self.skipped and self.rank == 0:
            where = self.plan.location
            print(
                f"ssl-tune: epoch {epoch}: skipped {self.skipped} corrupt image(s) in {where} (skip_corrupt)",
                file=sys.stderr,
                flush=True,
            )


class _Refill:
    """Regroups decoded (ids, images) into batches of exactly `size`: what is over waits for the next batch."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.ids = np.empty(0, np.int64)
        self.images: torch.Tensor | None = None

    def add(self, ids: np.ndarray, images: torch.Tensor) -> tuple[np.ndarray, torch.Tensor] | None:
        """A full batch, or None while fewer than `size` images wait."""
        if self.images is not None:  # only after an image was left out
            ids, images = np.concatenate([self.ids, ids]), torch.cat([self.images, images])
        if len(ids) < self.size:
            self.ids, self.images = ids, images
            return None
        self.ids, self.images = ids[self.size :], images[self.size :] if len(ids) > self.size else None
        return ids[: self.size], images[: self.size]


def _user_errors(batches: Iterator[Any]) -> Iterator[Any]:
    """Ray Data's batches; a UsageError raised in a decode task (a corrupt image) comes out as itself, one line,
    not as Ray's task error and its traceback (`raise_original_map_exception` keeps it as the error's cause)."""
    try:
        yield from batches
    except Exception as err:
        cause: BaseException | None = err
        while cause is not None:
            inner = getattr(cause, "cause", None)  # a RayTaskError's original exception
            if isinstance(inner, UsageError):
                cause = inner
            if type(cause) is UsageError:
                raise UsageError(str(cause).splitlines()[0]) from None  # Ray appends its retry advice
            cause = inner or cause.__cause__
        raise


def _log_epoch(epoch: int, rank: int, ids: np.ndarray, anon_mb: float, shmem_mb: float) -> None:
    """With $SSL_TUNE_STREAM_LOG set: the epoch's ids (npy) and a JSON line with this process's peak RSS."""
    folder = os.environ.get(STREAM_LOG_ENV)
    if not folder:
        return
    Path(folder).mkdir(parents=True, exist_ok=True)
    stem = f"pid{os.getpid()}-rank{rank}-epoch{epoch}"
    np.save(Path(folder) / f"ids-{stem}.npy", ids)
    line = {"pid": os.getpid(), "rank": rank, "epoch": epoch, "images": len(ids), "peak_rss_mb": peak_rss_mb()}
    line |= {"epoch_peak_anon_mb": anon_mb, "epoch_peak_shmem_mb": shmem_mb}
    with open(Path(folder) / "epochs.jsonl", "a") as out:
        out.write(json.dumps(line) + "\n")
