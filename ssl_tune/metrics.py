"""The pipeline's shared vocabulary: metric names, how a run or trial stands, and one epoch's metrics.

Every module that reads or writes a metric by name takes it from here, so a table cannot mix them up.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from enum import Enum
from typing import Any

# Every metric is named for the split it measures, so that no table can mix them up.
VAL_KNN = "val_knn_acc"  # weighted kNN top-1 on the validation queries (held out of the train split), in [0, 1]
TEST_KNN = "test_knn_acc"  # the same on the test split: never read by a sweep
RANKME = "rankme"  # RankMe of the backbone features of a fixed set of train images: needs no labels
LIDAR = "lidar"  # LiDAR of the backbone features of augmented views of a fixed, seeded set of train images
ALPHA_REQ = "alpha_req"  # minus the distance of α-ReQ's α from its target band (0 inside): higher is better
ALPHA_REQ_ALPHA = "alpha_req_alpha"  # the α itself, recorded beside its score
LABEL_FREE = (RANKME, LIDAR, ALPHA_REQ)  # selection metrics that need no labels; each ranks runs of one method
MONITORED = (VAL_KNN, TEST_KNN, *LABEL_FREE, ALPHA_REQ_ALPHA)
SELECTION_METRICS = (VAL_KNN, *LABEL_FREE)  # what a sweep may select on (ASHA, Optuna, checkpoints, export)
SELECTION_METRIC, SELECTION_MODE = VAL_KNN, "max"  # the default; every selection metric is maximised
EPOCH = "epoch"
STATUS = "status"
STOP_REASON = "stop_reason"  # a run's last report: why it stopped, in one line (out of device memory)
KNN_QUERIES = "knn_queries"  # how many images a kNN accuracy is measured on


class TrialStatus(str, Enum):
    """How a run stands after an epoch (ok / diverged / collapsed), and how a sweep's trial ended."""

    OK = "ok"
    DIVERGED = "diverged"  # a NaN or infinite loss
    COLLAPSED = "collapsed"  # the embedding std ratio fell below `collapse_std_threshold`
    OUT_OF_MEMORY = "out_of_memory"  # the device ran out of memory: a retry would too, so none is made
    COMPLETED = "completed"  # ran all its epochs
    STOPPED = "stopped"  # stopped early by ASHA: a normal end
    ERROR = "error"  # raised, after its retries
    UNFINISHED = "unfinished"  # no end recorded yet (a running or interrupted sweep)

    def __str__(self) -> str:
        return self.value

    @property
    def finished_normally(self) -> bool:
        """A trial whose metric counts: it ran to the end or ASHA stopped it."""
        return self in (TrialStatus.COMPLETED, TrialStatus.STOPPED)


def finite(value: Any) -> float | None:
    """`value` as a float if it is a finite number (not a bool), else None."""
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


@dataclass
class EpochMetrics:
    """One epoch of a run (epoch 0 is the random network). `to_dict()` is what every log and report reads."""

    epoch: int
    lr: float
    epoch_time_s: float
    eval_time_s: float  # the kNN and label-free evaluation, included in epoch_time_s
    images_per_s: float
    status: TrialStatus = TrialStatus.OK
    # the monitored metrics: None when the run does not measure them, NaN on a diverged epoch
    val_knn_acc: float | None = None
    test_knn_acc: float | None = None
    rankme: float | None = None
    lidar: float | None = None
    alpha_req: float | None = None
    alpha_req_alpha: float | None = None
    loss: float | None = None  # None at epoch 0 and when not finite
    embedding_std: float | None = None
    embedding_std_ratio: float | None = None
    embedding_rank: float | None = None
    weight_norm: float | None = None
    skipped_images: int | None = None  # corrupt images a streamed epoch left out, on all ranks (skip_corrupt)
    knn_queries: int | None = None  # the images the kNN accuracy is measured on (its binomial standard error's n)
    extras: dict[str, float] = field(default_factory=dict)  # a method's own signals, e.g. teacher_entropy

    def to_dict(self) -> dict[str, Any]:
        """A flat dict of plain values (extras inlined, status as its string). A metric the run does not
        measure is left out, so that a sweep's results hold no `test_knn_acc` key at all."""
        out = {k: v for k, v in asdict(self).items() if k != "extras" and not (k in MONITORED and v is None)}
        out[STATUS] = self.status.value
        out.update(self.extras)
        return out

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> EpochMetrics:
        names = {f.name for f in fields(cls)} - {"extras"}
        known = {k: v for k, v in values.items() if k in names}
        known[STATUS] = TrialStatus(known.get(STATUS, TrialStatus.OK))
        extras = {k: float(v) for k, v in values.items() if k not in names and finite(v) is not None}
        return cls(**known, extras=extras)

    @property
    def stopped(self) -> bool:
        return self.status is not TrialStatus.OK

    def knn(self) -> tuple[str, float] | None:
        """The kNN accuracy this run monitors, with its split's name (val first), or None."""
        for name in (VAL_KNN, TEST_KNN):
            if (value := getattr(self, name)) is not None:
                return name, value
        return None


LABELS = {
    VAL_KNN: "validation kNN accuracy (%)",
    TEST_KNN: "test kNN accuracy (%)",
    RANKME: "RankMe",
    LIDAR: "LiDAR",
    ALPHA_REQ: "α-ReQ: minus the distance of α from its band",
}


def is_accuracy(name: str) -> bool:
    return name.endswith(("_acc", "knn"))


def scaled(name: str, value: float) -> float:
    """A metric as it is shown: accuracies in percent, others as they are."""
    return 100 * value if is_accuracy(name) else value


def format_metric(name: str, value: float | None) -> str:
    """`val_knn_acc 45.20%`, `rankme 31.7`, `alpha_req -0.12`, or `val_knn_acc n/a`."""
    if value is None or not math.isfinite(value):
        return f"{name} n/a"
    if is_accuracy(name):
        return f"{name} {scaled(name, value):.2f}%"
    return f"{name} {value:.2f}" if name in (ALPHA_REQ, ALPHA_REQ_ALPHA) else f"{name} {value:.1f}"
