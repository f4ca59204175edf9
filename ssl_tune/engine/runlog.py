"""Where a run's metrics go: metrics.jsonl (one line per epoch), TensorBoard scalars, and the console."""

from __future__ import annotations

import json
import math
from dataclasses import fields
from pathlib import Path
from typing import Any

from ssl_tune.metrics import (
    ALPHA_REQ_ALPHA,
    EPOCH,
    KNN_QUERIES,
    LABEL_FREE,
    STATUS,
    VAL_KNN,
    EpochMetrics,
    TrialStatus,
    finite,
    format_metric,
)
from ssl_tune.storage import atomic_write

SCALARS = tuple(f.name for f in fields(EpochMetrics) if f.name not in (EPOCH, STATUS, "extras", KNN_QUERIES))


def json_safe(metrics: dict[str, Any]) -> dict[str, Any]:
    """Non-finite floats become null, so every line is valid JSON."""
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in metrics.items()}


def rewrite_jsonl(path: Path, rows: list[EpochMetrics]) -> None:
    text = "".join(json.dumps(json_safe(r.to_dict())) + "\n" for r in rows)
    atomic_write(path, lambda f: f.write(text.encode()))


def append_jsonl(path: Path, row: EpochMetrics) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(json_safe(row.to_dict())) + "\n")
        f.flush()


class TensorBoardLog:
    """Per-epoch scalars under `logdir`. A resumed run drops any events past its checkpoint."""

    def __init__(self, logdir: str | Path, first_epoch: int = 0) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(logdir), purge_step=first_epoch if first_epoch > 0 else None)

    def log(self, metrics: EpochMetrics) -> None:
        for key, value in metrics.to_dict().items():
            if key not in (EPOCH, STATUS) and finite(value) is not None:
                self.writer.add_scalar(key, value, metrics.epoch)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


def format_epoch(metrics: EpochMetrics, epochs: int) -> str:
    """One console line per epoch."""
    parts = [f"epoch {metrics.epoch:>3}/{epochs}"]
    if metrics.loss is not None:
        parts.append(f"loss {metrics.loss:.4f}")
    if (knn := metrics.knn()) is not None:
        parts.append(format_metric("val knn" if knn[0] == VAL_KNN else "test knn", knn[1]))
    for name in (*LABEL_FREE, ALPHA_REQ_ALPHA):
        if (value := getattr(metrics, name)) is not None:
            parts.append(format_metric(name, value))
    if metrics.epoch > 0:
        parts.append(f"lr {metrics.lr:.4g}")
        parts.append(f"{metrics.images_per_s:.0f} img/s")
    parts.append(f"{metrics.epoch_time_s:.1f}s")
    if metrics.status is not TrialStatus.OK:
        parts.append(f"[{metrics.status}]")
    return "  ".join(parts)
