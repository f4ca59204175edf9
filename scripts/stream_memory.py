"""What streaming adds to a training process's own memory, for the README's table.

    python scripts/stream_memory.py DATA_DIR TRAIN_SUBSET IMAGE_SIZE streamed|resident

One fresh process per measurement. It reads one epoch of the first TRAIN_SUBSET train images of a packed set
at IMAGE_SIZE in batches of 256, as a rank's training loop receives them (no model: the model's memory is the
same either way), and samples its own memory (RssAnon: what this process allocated; Ray's object store is
shared memory, one per node, and not in it) at every batch and every 0.1 s:
- `streamed`: `ShardBatches` over Ray Data on a local 2-CPU Ray cluster (decode tasks in Ray workers);
- `resident`: the split decoded whole into this process (`load_run_data`), then batched.
Prints one JSON line: the decoded size, RssAnon before the first batch and at its peak, and ru_maxrss.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import time

import torch

from ssl_tune.config import build_config, load_run_data
from ssl_tune.data.streaming import ShardBatches, current_rss_mb, peak_rss_mb, shard_plan

BATCH = 256


def measure(data_dir: str, n: int, size: int, mode: str) -> dict[str, object]:
    """One epoch of `n` images at `size` px, streamed or resident; this process's memory while reading it."""
    settings = {"dataset": "parquet", "data_dir": data_dir, "train_subset": n, "image_size": size}
    settings |= {"monitor": "val", "val_size": 200, "stream_eval_subset": 1000, "stream_shuffle_window": 1024}
    cfg = build_config({**settings, "data_placement": "streamed_shards" if mode == "streamed" else "resident"})
    peak, done = [0.0], threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], current_rss_mb("RssAnon"))
            time.sleep(0.1)

    if mode == "streamed":
        import ray

        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
        plan = shard_plan(cfg)
        source = ShardBatches(
            plan, seed=0, device=torch.device("cpu"), rank=0, local_batch=BATCH, steps=plan.num_train // BATCH
        )
        before = current_rss_mb()
        threading.Thread(target=sample, daemon=True).start()
        start = time.perf_counter()
        count = sum(int(b.sum() >= 0) * len(b) for b in source.epoch_batches(1))
    else:
        before = current_rss_mb()
        threading.Thread(target=sample, daemon=True).start()
        start = time.perf_counter()
        images = load_run_data(cfg).train_images
        count = sum(int(b.sum() >= 0) * len(b) for b in images.split(BATCH))
    seconds = time.perf_counter() - start
    done.set()
    return {
        "mode": mode,
        "images": int(count),
        "image_size": size,
        "decoded_mib": round(n * 3 * size * size / 2**20),
        "rss_anon_before_mib": round(before),
        "rss_anon_peak_mib": round(peak[0]),
        "ru_maxrss_mib": round(peak_rss_mb()),
        "seconds": round(seconds, 1),
    }


if __name__ == "__main__":
    location, subset, image_size, kind = sys.argv[1:5]
    print(json.dumps(measure(location, int(subset), int(image_size), kind)), flush=True)
