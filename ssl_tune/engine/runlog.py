"""Where a run's metrics go: metrics.jsonl (one line per epoch), TensorBoard scalars, and the console."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from ssl_tune.storage import atomic_write

SCALARS = (
    "loss",
    "knn_acc",
    "best_knn_acc",
    "lr",
    "epoch_time_s",
    "knn_time_s",
    "images_per_s",
    "embedding_std",
    "embedding_std_ratio",
    "embedding_rank",
    "weight_norm",
)


def json_safe(metrics: dict[str, Any]) -> dict[str, Any]:
    """Non-finite floats become null, so every line is valid JSON."""
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in metrics.items()}


def rewrite_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    text = "".join(json.dumps(json_safe(r)) + "\n" for r in rows)
    atomic_write(path, lambda f: f.write(text.encode()))


def append_jsonl(path: Path, row: dict[str, Any]) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(json_safe(row)) + "\n")
        f.flush()


class TensorBoardLog:
    """Per-epoch scalars under `logdir`. A resumed run drops any events past its checkpoint."""

    def __init__(self, logdir: str | Path, first_epoch: int = 0) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(logdir), purge_step=first_epoch if first_epoch > 0 else None)

    def log(self, metrics: dict[str, Any]) -> None:
        step = int(metrics["epoch"])
        for key, value in metrics.items():
            numeric = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
            if numeric and (key in SCALARS or (key != "epoch" and isinstance(value, float))):
                self.writer.add_scalar(key, value, step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


def format_epoch(metrics: dict[str, Any], epochs: int) -> str:
    """One console line per epoch."""
    parts = [f"epoch {metrics['epoch']:>3}/{epochs}"]
    if metrics.get("loss") is not None:
        parts.append(f"loss {metrics['loss']:.4f}")
    knn = metrics.get("knn_acc")
    parts.append(f"knn {100 * knn:5.2f}%" if knn is not None and math.isfinite(knn) else "knn   n/a")
    if metrics["epoch"] > 0:
        parts.append(f"lr {metrics['lr']:.4g}")
        parts.append(f"{metrics['images_per_s']:.0f} img/s")
    parts.append(f"{metrics['epoch_time_s']:.1f}s")
    if metrics.get("status", "ok") != "ok":
        parts.append(f"[{metrics['status']}]")
    return "  ".join(parts)
