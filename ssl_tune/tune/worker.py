"""The Ray Train worker loop: one TrainingRun per worker, a report and a checkpoint every epoch."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import ray.train
import ray.train.torch
import torch
from torch import nn

from ssl_tune.config import TrainConfig, load_run_data
from ssl_tune.data import ImageData
from ssl_tune.distributed import Distributed
from ssl_tune.engine.checkpoint import TRIAL_CHECKPOINT as STATE_FILE
from ssl_tune.engine.checkpoint import load_checkpoint, save_checkpoint
from ssl_tune.engine.evaluate import evaluate_backbone
from ssl_tune.engine.run import TrainingRun
from ssl_tune.metrics import EpochMetrics

EVAL_PREFIX = "eval_"  # the final report's test-split numbers (`ssl-tune confirm`)


def train_worker(loop_config: dict[str, Any]) -> None:
    """`train_loop_per_worker` for TorchTrainer. `loop_config` = {"config": TrainConfig dict, "threads": n,
    "final_eval": bool}."""
    cfg = TrainConfig.model_validate(loop_config["config"])
    torch.set_num_threads(max(1, int(loop_config.get("threads", 1))))
    context = ray.train.get_context()
    dist = Distributed(context.get_world_rank(), context.get_world_size())
    device = ray.train.torch.get_device()
    data = load_run_data(cfg)
    run = TrainingRun(cfg, data, device, dist=dist, wrap_model=_ddp(dist, device))

    checkpoint = ray.train.get_checkpoint()
    if checkpoint is not None:  # a restarted worker group, or a resumed sweep
        with checkpoint.as_directory() as folder:
            run.load_state_dict(load_checkpoint(Path(folder) / STATE_FILE, map_location=device))
    else:
        _report(run, run.initial_metrics())
    while not run.done:
        _report(run, run.train_epoch())
    if loop_config.get("final_eval") and not run.stopped:
        _report_final_eval(run, data, device)


def _report_final_eval(run: TrainingRun, data: ImageData, device: torch.device) -> None:
    """The test-split kNN and linear probe of the final backbone (rank 0 computes; Tune reads rank 0's report)."""
    metrics: dict[str, Any] = {"epoch": run.epoch}
    if run.dist.is_main:
        result = evaluate_backbone(run.method.backbone, data, run.cfg, device, epoch=run.epoch)
        metrics.update({f"{EVAL_PREFIX}{k}": v for k, v in result.to_dict().items() if k != "checkpoint"})
    ray.train.report(metrics)


def _ddp(dist: Distributed, device: torch.device):
    if dist.world_size == 1:
        return None

    def wrap(method: nn.Module) -> nn.Module:
        if device.type == "cuda" and getattr(method, "sync_batchnorm", False):
            method = nn.SyncBatchNorm.convert_sync_batchnorm(method)
        return ray.train.torch.prepare_model(method, parallel_strategy_kwargs={"find_unused_parameters": False})

    return wrap


def _report(run: TrainingRun, metrics: EpochMetrics) -> None:
    """Every rank reports the same metrics; rank 0 attaches the checkpoint."""
    with tempfile.TemporaryDirectory() as folder:
        checkpoint = None
        if run.dist.is_main:
            save_checkpoint(run.state_dict(), Path(folder) / STATE_FILE)
            checkpoint = ray.train.Checkpoint.from_directory(folder)
        ray.train.report(metrics.to_dict(), checkpoint=checkpoint)
