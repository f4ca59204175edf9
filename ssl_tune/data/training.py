"""One training-data plan: whether a run's train split is loaded whole into host memory (resident) or streamed from
its Parquet shards (`streaming.py`), decided once per run by `open_training_data`, with a packed dataset's
manifest read once. The run's processes then receive the plan and `load` what they hold.
"""

from __future__ import annotations

from dataclasses import dataclass

from ssl_tune.data.base import DataSettings, ImageData, load_data
from ssl_tune.data.derived import STREAMED_GREY
from ssl_tune.data.parquet import Manifest
from ssl_tune.data.streaming import STREAMED_SHARDS, ShardPlan, eval_subset, open_manifest, shard_plan, streams_shards
from ssl_tune.errors import UsageError


def load_run_data(cfg: DataSettings, with_test: bool | None = None) -> ImageData:
    """The dataset a run config names, whole, derived and with its subsets. The test split is read when asked
    (`with_test`, as `eval` does), else only when the run monitors it (`monitor: test`): a run that monitors the
    validation split never opens it. Raises UsageError."""
    return load_data(
        cfg.dataset,
        cfg.data_dir,
        download=cfg.download,
        image_size=cfg.image_size,
        grayscale=cfg.grayscale,
        train_subset=cfg.train_subset,
        test_subset=cfg.test_subset,
        with_test=cfg.monitor == "test" if with_test is None else with_test,
        skip_corrupt=cfg.skip_corrupt,
    )


@dataclass(frozen=True)
class TrainingData:
    """A run's training data, decided: `stream` is None for a resident split, else the shard stream (with the
    pack's `manifest`, read once)."""

    stream: ShardPlan | None = None
    manifest: Manifest | None = None

    @property
    def streamed(self) -> bool:
        return self.stream is not None

    def load(self, cfg: DataSettings) -> ImageData:
        """What a training process holds: the whole dataset (resident), or the eval subset decoded once
        (streamed: the kNN bank, the validation queries and RankMe's images)."""
        if self.stream is None:
            return load_run_data(cfg)
        return eval_subset(cfg, self.stream, self.manifest)


def open_training_data(cfg: DataSettings) -> TrainingData:
    """Decide once whether `cfg` trains from streamed shards (`data_placement: streamed_shards`, or `auto` on a
    `parquet` pack whose decoded train split exceeds `host_data_limit_gb`), and plan the stream. A streamed
    plan's shards are checked here (footers only). Raises UsageError."""
    packed = cfg.dataset == "parquet" and cfg.data_placement in ("auto", STREAMED_SHARDS)
    manifest = open_manifest(cfg) if packed else None
    if not streams_shards(cfg, manifest):
        return TrainingData()
    if cfg.grayscale:
        raise UsageError(f"{STREAMED_GREY} (or set data_placement resident)")
    return TrainingData(shard_plan(cfg, manifest), manifest)
