"""A sweep request, and the one check stage before Ray starts: the space with the flags applied, the sweep folder,
the base config, the metric, every batch size the space can draw, and the training data, each resolved once and
handed on as a `CheckedSweep`."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from ssl_tune.config import TrainConfig, check_batch_size, deep_merge, describe_validation_error, parse_set
from ssl_tune.data.training import open_training_data
from ssl_tune.engine.run import monitored_split
from ssl_tune.errors import UsageError
from ssl_tune.metrics import LABEL_FREE, RANKME, VAL_KNN
from ssl_tune.storage import absolute, check_bucket, exists, join, read_text
from ssl_tune.tracking import TrackingSettings, check_resumed_trackers
from ssl_tune.tune.results import SWEEP_FILE
from ssl_tune.tune.space import SearchSpace, check_space, load_space, nest


@dataclass
class SweepRequest:
    """The sweep as the user asked for it (CLI flags)."""

    space_path: str | None  # a search-space YAML, or None with `space` given
    storage: str
    name: str | None
    data_dir: str | None = None
    address: str | None = None
    resume: bool = False
    overrides: tuple[str, ...] = ()  # --set key=value on the fixed settings
    sweep_settings: dict[str, Any] | None = None  # num_samples, max_concurrent, workers_per_trial, ...
    asha_settings: dict[str, Any] | None = None  # grace_period, reduction_factor, max_epochs
    verbose: bool = False
    space: SearchSpace | None = None  # the space itself (Python API), checked like a file's
    fixed_overrides: dict[str, Any] | None = None  # on the fixed settings, after `overrides` (Python API)
    tracking: TrackingSettings = field(default_factory=TrackingSettings)  # --log mlflow|wandb


@dataclass(frozen=True)
class CheckedSweep:
    """A sweep ready to run: its space (the metric settled), folder, name and data dir, and its base config (the
    fixed settings over the first method's recipe), whose length is the trials' (`max_epochs`)."""

    space: SearchSpace
    sweep_dir: str
    name: str
    data_dir: str | None
    base: TrainConfig
    resume: bool
    streamed: bool  # the base config's training data streams from shards (`open_training_data`)

    @property
    def max_epochs(self) -> int:
        return self.space.max_epochs(self.base)

    @property
    def metric(self) -> str:
        return self.space.sweep.metric or VAL_KNN

    def record(self, tracking: TrackingSettings) -> str:
        """`sweep.yaml`: what --resume and export read back (Tune restores the callbacks, trackers included)."""
        record = {"space": self.space.model_dump(mode="json"), "data_dir": self.data_dir, "name": self.name}
        return yaml.safe_dump(record | {"tracking": tracking.to_dict()}, sort_keys=False)


def check_sweep(request: SweepRequest) -> CheckedSweep:
    """Resolve and check everything before Ray starts; raises UsageError."""
    storage = absolute(request.storage)
    check_bucket(storage)
    if request.resume:
        if not request.name:
            raise UsageError("--resume needs --name (the sweep to continue)")
        sweep_dir = join(storage, request.name)
        if not exists(join(sweep_dir, SWEEP_FILE)):
            raise UsageError(f"--resume: no sweep at {sweep_dir}")
        saved = yaml.safe_load(read_text(join(sweep_dir, SWEEP_FILE)))
        space = SearchSpace.model_validate(saved["space"])
        check_resumed_trackers(saved.get("tracking"), request.tracking, "--resume")
        data_dir = saved.get("data_dir")
        base = _base(space, data_dir)
        streamed = open_training_data(base).streamed
        return CheckedSweep(space, sweep_dir, request.name, data_dir, base, resume=True, streamed=streamed)

    if not request.space_path and request.space is None:
        raise UsageError("--space FILE is required")
    data_dir = str(Path(request.data_dir).expanduser().resolve()) if request.data_dir else None
    space = load_space(request.space_path, data_dir) if request.space is None else request.space
    space = _with_overrides(space, request)
    name = request.name or (Path(request.space_path).stem if request.space_path else "")
    if not name:
        raise UsageError("name the sweep: a space given as a dict or model has no file name to take it from")
    if "/" in name or name.startswith("."):
        raise UsageError(f"--name '{name}' must be a plain folder name")
    sweep_dir = join(storage, name)
    if exists(sweep_dir):
        raise UsageError(f"sweep {sweep_dir} already exists: pass --resume to continue it, or choose another --name")
    space, base = _share_host_memory(space, _base(space, data_dir))
    space, streamed = _check_data(space, base)
    if space.sweep.gpus_per_trial > 0 and request.address is None and "RAY_ADDRESS" not in os.environ:
        import torch

        if torch.cuda.device_count() == 0:
            raise UsageError("--gpus-per-trial > 0 but this machine has no GPU (use 0 to run trials on CPU)")
    return CheckedSweep(space, sweep_dir, name, data_dir, base, resume=False, streamed=streamed)


def _share_host_memory(space: SearchSpace, base: TrainConfig) -> tuple[SearchSpace, TrainConfig]:
    """Trials packed on one GPU share its node's host memory: at `gpus_per_trial` 1/k, each trial's share of
    `host_data_limit_gb` is 1/k, so a train split above the share streams from its shards (`auto` placement of
    a parquet pack) instead of k resident copies. Written into the space's fixed settings, so the trials, a
    resume and an export all see the share.

    >>> from ssl_tune.tune.space import SearchSpace
    >>> space = SearchSpace.model_validate({"fixed": {"host_data_limit_gb": 24}, "sweep": {"gpus_per_trial": 0.25}})
    >>> _share_host_memory(space, _base(space, None))[1].host_data_limit_gb
    6.0
    """
    gpus = space.sweep.gpus_per_trial
    packed = math.floor(1 / gpus + 1e-9) if 0 < gpus < 1 else 1
    if packed == 1:
        return space, base
    share = base.host_data_limit_gb / packed
    fixed = {**space.fixed, "host_data_limit_gb": share}
    return space.model_copy(update={"fixed": fixed}), base.model_copy(update={"host_data_limit_gb": share})


def _base(space: SearchSpace, data_dir: str | None) -> TrainConfig:
    return space.train_config({"method": space.method_choices()[0]}, data_dir)


def _with_overrides(space: SearchSpace, request: SweepRequest) -> SearchSpace:
    """Apply CLI flags to the space's sweep/asha sections and --set to its fixed settings; re-check."""
    data = space.model_dump()
    data["sweep"].update({k: v for k, v in (request.sweep_settings or {}).items() if v is not None})
    data["asha"].update({k: v for k, v in (request.asha_settings or {}).items() if v is not None})
    if request.overrides or request.fixed_overrides:
        fixed = deep_merge(nest(data["fixed"]), parse_set(request.overrides))
        data["fixed"] = deep_merge(fixed, nest(request.fixed_overrides or {}))
    try:
        updated = SearchSpace.model_validate(data)
    except ValidationError as err:
        raise UsageError(describe_validation_error(err)) from None
    check_space(updated, request.data_dir)
    return updated


def check_one_method(space: SearchSpace, metric: str) -> None:
    """A label-free metric ranks runs of one method (RankMe's paper says so; LiDAR's and α-ReQ's values differ
    in scale from one objective to another): a space that draws several methods is refused on one, unless
    `rank_across_methods` insists."""
    methods = space.method_choices()
    if metric in LABEL_FREE and len(methods) > 1 and not space.sweep.rank_across_methods:
        raise UsageError(
            f"--metric {metric} ranks runs of one method, and this space draws {len(methods)} ({', '.join(methods)}):"
            " sweep one method, select on val_knn_acc, or pass --rank-across-methods"
        )


def _check_data(space: SearchSpace, base: TrainConfig) -> tuple[SearchSpace, bool]:
    """Open the base config's training data once (a stream: its manifest and the eval subset's labels; else the
    train split, with presence and md5 checks, never the test split), check every batch size the space can draw,
    and settle the metric: val_knn_acc on labeled data, rankme on unlabeled. Returns the settled space, and
    whether the data streams."""
    data = open_training_data(base)
    if data.stream is not None and data.manifest is not None:
        labeled, n_train = data.manifest.labeled, data.stream.num_train
    else:
        images = data.load(base)
        labeled, n_train = images.labeled or images.has_labeled_set, len(monitored_split(base, images)[0])
    metric = space.sweep.metric or (VAL_KNN if labeled else RANKME)
    if metric == VAL_KNN and not labeled:
        raise UsageError(
            f"dataset '{base.dataset}' has no labels, so it has no kNN accuracy: use --metric rankme, lidar or "
            "alpha_req"
        )
    check_one_method(space, metric)
    sizes = {base.batch_size}
    dist = space.params.get("batch_size")
    if dist is not None:
        sizes |= set(getattr(dist, "choices", None) or [dist.low, dist.high])
    for size in sorted(sizes):
        check_batch_size(int(size), n_train, space.sweep.workers_per_trial)
    settled = space.model_copy(update={"sweep": space.sweep.model_copy(update={"metric": metric})})
    return settled, data.streamed
