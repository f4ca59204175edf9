"""`streamed_shards`: train on a packed dataset larger than host memory, streamed from its Parquet shards through
Ray Data.

- The train shards are read by `ray.data.read_parquet` (a local directory or any pyarrow URI). Decoding (PNG or
  JPEG bytes -> uint8, resized to the run's image size) runs in Ray Data `map_batches` tasks on CPU workers; the
  training process receives uint8 (N, 3, H, W) batches and the run's batched view generator makes the views on
  the device, as for in-memory data.
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

import io
import json
import os
import resource
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow.parquet as pq
import torch
from PIL import Image
from torchvision.transforms.v2 import functional as TF

from ssl_tune.data.base import ImageData
from ssl_tune.data.parquet import Manifest, read_manifest, read_rows, resolve_location, select_rows
from ssl_tune.data.splits import validation_split
from ssl_tune.errors import UsageError

if TYPE_CHECKING:
    import ray.data

    from ssl_tune.config import TrainConfig

STREAMED_SHARDS = "streamed_shards"
DECODE_BATCH = 128  # rows per map_batches call: small blocks keep each decode task's memory low
STREAM_LOG_ENV = "SSL_TUNE_STREAM_LOG"  # a folder: each rank writes the ids it saw and its peak RSS per epoch


# --- which runs stream ------------------------------------------------------------------------------


def decoded_gb(rows: int, image_size: int) -> float:
    """Host memory of `rows` decoded uint8 RGB images of `image_size` px."""
    return rows * 3 * image_size * image_size / 1e9


def _open(cfg: TrainConfig) -> tuple[Any, str, Manifest]:
    if not cfg.data_dir:
        raise UsageError("dataset 'parquet' needs --data-dir (a directory or URI made by `ssl-tune data pack`)")
    fs, root = resolve_location(cfg.data_dir)
    return fs, root, read_manifest(fs, root, cfg.data_dir)


def _train_rows(cfg: TrainConfig, manifest: Manifest) -> int:
    total = sum(s.rows for s in manifest.splits["train"])
    if cfg.train_subset is not None and cfg.train_subset > total:
        raise UsageError(f"train_subset {cfg.train_subset} is larger than the train split ({total} images)")
    return total if cfg.train_subset is None else cfg.train_subset


def streams_shards(cfg: TrainConfig) -> bool:
    """Whether `cfg` trains from streamed shards: `data_placement: streamed_shards`, or `auto` on a `parquet`
    dataset whose decoded train split exceeds `host_data_limit_gb` (read from its manifest alone)."""
    if cfg.data_placement == STREAMED_SHARDS:
        return True  # the config refuses it for any dataset but parquet
    if cfg.data_placement != "auto" or cfg.dataset != "parquet":
        return False
    _, _, manifest = _open(cfg)
    size = cfg.image_size or manifest.image_size
    return decoded_gb(_train_rows(cfg, manifest), size) > cfg.host_data_limit_gb


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

    @property
    def num_train(self) -> int:
        return self.rows_used - len(self.held_out)

    def filesystem(self) -> Any:
        return resolve_location(self.location)[0]


def shard_plan(cfg: TrainConfig) -> ShardPlan:
    """The stream of `cfg`'s train split; reads the manifest and the labels of the eval subset only."""
    if cfg.dataset != "parquet":
        raise UsageError(f"data_placement {STREAMED_SHARDS} needs dataset 'parquet' (not '{cfg.dataset}')")
    fs, root, manifest = _open(cfg)
    rows_used = _train_rows(cfg, manifest)
    taken = select_rows(manifest.splits["train"], rows_used)
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


def eval_subset(cfg: TrainConfig, plan: ShardPlan) -> ImageData:
    """The bounded part decoded once: the first `plan.eval_rows` train images (and the test split's first
    `test_subset` when the run monitors it), resized to the run's image size."""
    fs, root, manifest = _open(cfg)
    x, y = read_rows(fs, root, cfg.data_dir, select_rows(manifest.splits["train"], plan.eval_rows), manifest.image_size)
    test_x = test_y = None
    if cfg.monitor == "test":
        n_test = min(cfg.test_subset or cfg.stream_eval_subset, cfg.stream_eval_subset)
        test_rows = select_rows(manifest.splits["test"], n_test, split="test")
        test_x, test_y = read_rows(fs, root, cfg.data_dir, test_rows, manifest.image_size)
    if plan.image_size != manifest.image_size:
        x = _resize_all(x, plan.image_size)
        test_x = None if test_x is None else _resize_all(test_x, plan.image_size)
    labels = y if manifest.num_classes > 0 else None
    return ImageData(x, labels, test_x, test_y, manifest.num_classes, manifest.mean, manifest.std)


def _resize_all(images: torch.Tensor, size: int) -> torch.Tensor:
    return torch.cat([_fit(chunk, size) for chunk in images.split(512)])


def _fit(images: torch.Tensor, size: int) -> torch.Tensor:
    """Resize the shorter side to `size` and center-crop (the in-memory loaders' resize)."""
    return TF.center_crop(TF.resize(images, [size], antialias=True), [size])


# --- decoding (in Ray Data tasks) -------------------------------------------------------------------


def decode_image(data: bytes, size: int) -> np.ndarray:
    """PNG or JPEG bytes -> uint8 (3, size, size); resized (shorter side, then center crop) when it differs."""
    with Image.open(io.BytesIO(data)) as img:
        hwc = np.array(img.convert("RGB"))  # writable, for torch
    chw = torch.from_numpy(hwc).permute(2, 0, 1)
    if chw.shape[1:] != (size, size):
        chw = _fit(chw, size)
    return chw.contiguous().numpy()


def decode_batch(batch: dict[str, np.ndarray], size: int, limit: int, held_out: np.ndarray) -> dict[str, np.ndarray]:
    """A Ray Data batch of packed rows -> {"index": int64 (n,), "image": uint8 (n, 3, size, size)}: the rows
    below `limit` (train_subset) that are not held out."""
    index = batch["index"].astype(np.int64)
    keep = (index < limit) & ~np.isin(index, held_out)
    images = [decode_image(b, size) for b, k in zip(batch["image"], keep, strict=True) if k]
    out = np.stack(images) if images else np.empty((0, 3, size, size), np.uint8)
    return {"index": index[keep], "image": out}


def file_order(n_files: int, seed: int, epoch: int) -> list[int]:
    """The shard files' order in an epoch: a permutation seeded by (seed, epoch)."""
    from ssl_tune.engine.run import epoch_seed

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
    ds = ds.map_batches(
        decode_batch,
        fn_kwargs={"size": plan.image_size, "limit": plan.rows_used, "held_out": np.asarray(plan.held_out, np.int64)},
        batch_size=DECODE_BATCH,
        batch_format="numpy",
    )
    if epoch is not None:
        ds.context.execution_options.preserve_order = True
    return ds


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

    `shard` is the rank's `ray.train.get_dataset_shard("train")` in a multi-worker trial; without it (one
    process) each epoch builds its own ordered dataset (`build_dataset(plan, seed, epoch)`). `last_ids` holds
    the image ids of the last epoch, in the order they were trained on.
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
    ) -> None:
        self.plan, self.seed, self.device, self.rank = plan, seed, device, rank
        self.local_batch, self.steps, self.shard = local_batch, steps, shard
        self.last_ids = np.empty(0, np.int64)
        self.peak_anon_mb = self.peak_shmem_mb = 0.0  # sampled at each batch of the last epoch

    def epoch_batches(self, epoch: int) -> Iterator[torch.Tensor]:
        from ssl_tune.engine.run import epoch_seed

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
        self.peak_anon_mb = self.peak_shmem_mb = 0.0
        for batch in batches:
            self.peak_anon_mb = max(self.peak_anon_mb, current_rss_mb("RssAnon"))
            self.peak_shmem_mb = max(self.peak_shmem_mb, current_rss_mb("RssShmem"))
            if len(seen) == self.steps:  # an equal split gives every rank `steps` batches; more are drained
                continue
            seen.append(batch["index"])
            images = torch.from_numpy(batch["image"])
            if self.device.type == "cuda":
                images = images.pin_memory()
            yield images.to(self.device, non_blocking=True)
        if len(seen) < self.steps:
            raise RuntimeError(f"rank {self.rank} got {len(seen)} of {self.steps} batches in epoch {epoch}")
        self.last_ids = np.concatenate(seen)
        _log_epoch(epoch, self.rank, self.last_ids, self.peak_anon_mb, self.peak_shmem_mb)


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
