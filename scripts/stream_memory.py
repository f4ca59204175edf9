"""What streaming adds to a training process's own memory, for the table in docs/design/streaming.md and
tests/data/test_stream_memory.py.

    python scripts/stream_memory.py DATA_DIR TRAIN_SUBSET IMAGE_SIZE streamed|resident
        [--batch 256] [--window 1024] [--object-store-mib 512] [--ray-address ADDRESS]

One fresh process per measurement. It reads one epoch of the first TRAIN_SUBSET train images of a packed set
at IMAGE_SIZE in batches of --batch, as a rank's training loop receives them (no model: the model's memory is
the same either way), and samples its own memory at every batch and every 0.1 s:
- `streamed`: `ShardBatches` over Ray Data (shuffle window --window) on a new local 2-CPU Ray cluster whose
  object store is --object-store-mib (or on the running cluster at --ray-address); decode tasks run in Ray
  workers;
- `resident`: the split decoded whole into this process (`load_run_data`), then batched.
RssAnon is what this process allocated itself; RssShmem the pages of Ray's shared object store it has mapped
(one store per node, bounded by its size, shared by the node's processes). Prints one JSON line: the decoded
size, RssAnon before the first batch (Ray and Ray Data imported and started) and at its peak, RssShmem at its
peak, ru_maxrss, and the object store's size.
"""

from __future__ import annotations

import argparse
import json
import logging
import threading
import time

import pyarrow as pa
import torch

from ssl_tune.config import build_config
from ssl_tune.data.streaming import ShardBatches, current_rss_mb, peak_rss_mb, shard_plan
from ssl_tune.data.training import load_run_data


def start_ray(object_store_mib: int, tries: int = 3, **kwargs: object) -> None:
    """A new local 2-CPU cluster. Ray gives its raylet 30 s to register, which a heavily loaded node at nice 19
    can miss: try again."""
    import os

    import ray

    os.environ.setdefault("RAY_agent_register_timeout_ms", "300000")  # its agent's start, at nice 19 under load
    for attempt in range(tries):
        try:
            ray.init(address="local", num_cpus=2, object_store_memory=object_store_mib * 2**20, **kwargs)
            return
        except Exception as err:  # Ray raises a bare Exception for a node that timed out
            ray.shutdown()
            if attempt == tries - 1 or "timed out during startup" not in str(err):
                raise


def measure(
    data_dir: str,
    n: int,
    size: int,
    mode: str,
    *,
    batch: int = 256,
    window: int = 1024,
    object_store_mib: int = 512,
    ray_address: str | None = None,
) -> dict[str, object]:
    """One epoch of `n` images at `size` px, streamed or resident; this process's memory while reading it."""
    settings = {"dataset": "parquet", "data_dir": data_dir, "train_subset": n, "image_size": size}
    settings |= {"monitor": "val", "val_size": 200, "stream_eval_subset": 1000, "stream_shuffle_window": window}
    cfg = build_config({**settings, "data_placement": "streamed_shards" if mode == "streamed" else "resident"})
    peak = {"RssAnon": 0.0, "RssShmem": 0.0}
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            for kind in peak:
                peak[kind] = max(peak[kind], current_rss_mb(kind))
            time.sleep(0.1)

    store_mib = 0
    if mode == "streamed":
        import ray
        import ray.data  # imported before the baseline: its own memory is not the data's

        quiet = {"include_dashboard": False, "log_to_driver": False, "logging_level": logging.WARNING}
        if ray_address:
            ray.init(address=ray_address, **quiet)
        else:  # "local": a new cluster, never one already running on the node
            start_ray(object_store_mib, **quiet)
        store_mib = round(ray.cluster_resources().get("object_store_memory", 0) / 2**20)
        plan = shard_plan(cfg)
        source = ShardBatches(
            plan, seed=0, device=torch.device("cpu"), rank=0, local_batch=batch, steps=plan.num_train // batch
        )
        before = current_rss_mb()
        threading.Thread(target=sample, daemon=True).start()
        start = time.perf_counter()
        count = sum(int(b.sum() >= 0) * len(b) for b in source.epoch_batches(1))
        peak["RssAnon"] = max(peak["RssAnon"], source.peak_anon_mb)  # also sampled at every batch
        peak["RssShmem"] = max(peak["RssShmem"], source.peak_shmem_mb)
    else:
        before = current_rss_mb()
        threading.Thread(target=sample, daemon=True).start()
        start = time.perf_counter()
        images = load_run_data(cfg).train_images
        count = sum(int(b.sum() >= 0) * len(b) for b in images.split(batch))
    seconds = time.perf_counter() - start
    done.set()
    return {
        "mode": mode,
        "images": int(count),
        "image_size": size,
        "decoded_mib": round(n * 3 * size * size / 2**20),
        "rss_anon_before_mib": round(before),
        "rss_anon_peak_mib": round(peak["RssAnon"]),
        "rss_shmem_peak_mib": round(peak["RssShmem"]),
        "ru_maxrss_mib": round(peak_rss_mb()),
        "object_store_mib": store_mib,
        "arrow_pool": pa.default_memory_pool().backend_name,  # Arrow's allocations are RssAnon too
        "arrow_peak_mib": round(pa.default_memory_pool().max_memory() / 2**20),
        "seconds": round(seconds, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data_dir")
    parser.add_argument("train_subset", type=int)
    parser.add_argument("image_size", type=int)
    parser.add_argument("mode", choices=["streamed", "resident"])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--window", type=int, default=1024, help="stream_shuffle_window (streamed)")
    parser.add_argument("--object-store-mib", type=int, default=512, help="the new local cluster's object store")
    parser.add_argument("--ray-address", help="use this running Ray cluster instead of starting one")
    args = parser.parse_args()
    row = measure(
        args.data_dir,
        args.train_subset,
        args.image_size,
        args.mode,
        batch=args.batch,
        window=args.window,
        object_store_mib=args.object_store_mib,
        ray_address=args.ray_address,
    )
    print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
