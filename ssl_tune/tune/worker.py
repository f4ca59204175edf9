"""A trial's training loop: one TrainingRun, a report and a checkpoint every epoch.

It runs in one of two places, with the same reports, checkpoints and restores:
- a single-worker trial trains in the Tune trial's own process (`tune_trial_loop`): no Ray Train controller,
  worker group or placement group to start. In a reused process it reports epoch 0 about 0.1 s after it
  starts (27-39 s through Ray Train on the 2-core VM; docs/benchmarks.md, "Trial start-up");
- a multi-worker trial runs `train_worker` on each rank of a Ray Train `TorchTrainer`.

Reused trial processes (Tune's `reuse_actors`) keep what they loaded: the dataset, and the epoch-0 metrics of
an initial network already measured on it.
"""

from __future__ import annotations

import hashlib
import os
import sys
import tempfile
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ssl_tune.config import TrainConfig
from ssl_tune.data import ImageData
from ssl_tune.data.training import TrainingData
from ssl_tune.distributed import Distributed
from ssl_tune.engine.checkpoint import TRIAL_CHECKPOINT as STATE_FILE
from ssl_tune.engine.checkpoint import load_checkpoint, save_checkpoint
from ssl_tune.engine.evaluate import evaluate_backbone
from ssl_tune.engine.run import TrainingRun, out_of_memory_message
from ssl_tune.metrics import STOP_REASON, EpochMetrics, TrialStatus
from ssl_tune.tune.devices import trial_device

EVAL_PREFIX = "eval_"  # the final report's test-split numbers (`ssl-tune confirm`)


@dataclass(frozen=True)
class Session:
    """Where a training loop reports to and restores from: Tune's function API or Ray Train's."""

    report: Callable[..., None]  # report(metrics: dict, checkpoint=Checkpoint | None)
    get_checkpoint: Callable[[], Any]  # -> ray.train.Checkpoint | None


def tune_trial_loop(cfg: TrainConfig, data: TrainingData, threads: float, gpus: float, final_eval: bool) -> None:
    """Train `cfg` on `data` inside the calling Tune function trial (a single-worker trial; a stream is iterated
    here, without a TorchTrainer). `gpus`: the trial's GPU share (0 = none)."""
    import ray.tune

    torch.set_num_threads(max(1, int(threads)))
    run = f"trial {ray.tune.get_context().get_trial_id()}"
    device = trial_device(gpus > 0, 0, run, lambda: torch.device("cuda"))
    session = Session(ray.tune.report, ray.tune.get_checkpoint)
    run_epochs(cfg, data, session, Distributed(0, 1), device, None, final_eval, gpu_share=gpus)


def train_worker(loop_config: dict[str, Any]) -> None:
    """`train_loop_per_worker` for TorchTrainer (multi-worker trials). `loop_config` = {"config": TrainConfig
    dict, "data": TrainingData (a stream is the trainer's "train" dataset), "threads": n, "gpus_per_worker":
    float (0 = none), "final_eval": bool}."""
    import ray.train
    import ray.train.torch

    cfg = TrainConfig.model_validate(loop_config["config"])
    torch.set_num_threads(max(1, int(loop_config.get("threads", 1))))
    context = ray.train.get_context()
    dist = Distributed(context.get_world_rank(), context.get_world_size())
    run = f"{context.get_experiment_name()} rank {dist.rank}"
    gpu_share = float(loop_config.get("gpus_per_worker", 0.0))
    device = trial_device(gpu_share > 0, dist.rank, run, ray.train.torch.get_device)
    session = Session(ray.train.report, ray.train.get_checkpoint)
    data: TrainingData = loop_config["data"]
    shard = ray.train.get_dataset_shard("train") if data.streamed else None
    final_eval = bool(loop_config.get("final_eval"))
    wrap = _ddp(dist, device)
    run_epochs(cfg, data, session, dist, device, wrap, final_eval, stream_shard=shard, gpu_share=gpu_share)


def run_epochs(
    cfg: TrainConfig,
    data: TrainingData,
    session: Session,
    dist: Distributed,
    device: torch.device,
    wrap_model: Callable[[nn.Module], nn.Module] | None,
    final_eval: bool,
    *,
    stream_shard: Any = None,
    gpu_share: float = 0.0,
) -> None:
    """Restore the last checkpoint or report epoch 0, then report every epoch until the run is done. Epoch 0's
    report also says where the trial's start-up went (`startup_*`, seconds; see `StartupTimes`). A run that
    runs out of device memory ends as OUT_OF_MEMORY, with one line saying why (`gpu_share`: this worker's GPUs).

    When `data` streams, the train split streams from its shards and only the eval subset is loaded here (a
    checkpoint is per epoch, so a trial killed mid-epoch resumes at its last complete one)."""
    global _TRIALS_IN_PROCESS
    _TRIALS_IN_PROCESS += 1
    times = StartupTimes(process_s=_process_age_s() if _TRIALS_IN_PROCESS == 1 else 0.0)
    start = time.perf_counter()
    images = cached_run_data(cfg, data)
    times.data_s = time.perf_counter() - start
    run = TrainingRun(
        cfg, images, device, dist=dist, wrap_model=wrap_model, stream=data.stream, stream_shard=stream_shard
    )
    times.build_s = time.perf_counter() - start - times.data_s
    checkpoint = session.get_checkpoint()
    if checkpoint is not None:  # a restarted trial, or a resumed sweep
        with checkpoint.as_directory() as folder:
            run.load_state_dict(load_checkpoint(Path(folder) / STATE_FILE, map_location=device))
    else:
        _report(session, run, initial_metrics(run), extra=times.to_dict())
    while not run.done:
        metrics, why = run.train_epoch(), None
        if metrics.status is TrialStatus.OUT_OF_MEMORY:
            why = {STOP_REASON: out_of_memory_message(cfg, dist.world_size, gpu_share)}
            print(why[STOP_REASON], file=sys.stderr, flush=True)
        _report(session, run, metrics, extra=why)
    if final_eval and not run.stopped:
        _report_final_eval(session, run, images, device)


@dataclass
class StartupTimes:
    """Where a trial's first report waited, inside its process: the process's own start (spawn and imports,
    for the first trial a process runs; 0 for a reused one), loading the data, building the run. The epoch-0
    evaluation is the report's `eval_time_s`."""

    process_s: float = 0.0
    data_s: float = 0.0
    build_s: float = 0.0

    def to_dict(self) -> dict[str, float]:
        return {f"startup_{k}": v for k, v in asdict(self).items()}


def _process_age_s() -> float:
    """Seconds since this process started (Linux /proc; 0 where there is none)."""
    try:
        ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        uptime = float(Path("/proc/uptime").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 0.0
    return max(0.0, uptime - ticks / os.sysconf("SC_CLK_TCK"))


# --- what a reused trial process keeps --------------------------------------------------------------

_TRIALS_IN_PROCESS = 0
_DATA: OrderedDict[tuple, ImageData] = OrderedDict()
_INITIAL: dict[tuple, dict[str, float]] = {}  # epoch-0 monitored metrics by initial network
DATA_CACHE_SIZE = 2  # datasets kept per process (a sweep over one dataset needs one)


def _data_key(cfg: TrainConfig) -> tuple:
    streaming = (cfg.data_placement, cfg.host_data_limit_gb, cfg.stream_eval_subset)  # whether it streams, and what
    sizes = (cfg.image_size, cfg.grayscale, cfg.train_subset, cfg.test_subset)
    return (cfg.dataset, cfg.data_dir, *sizes, cfg.monitor == "test", cfg.skip_corrupt, *streaming)


def cached_run_data(cfg: TrainConfig, data: TrainingData) -> ImageData:
    """`data.load(cfg)` (the whole dataset, or a stream's eval subset alone), kept per process: a reused trial
    process loads its dataset once, not once per trial. The tensors are shared, never written (TrainingRun
    copies what it places on the device or indexes)."""
    key = (*_data_key(cfg), data.stream)
    if key in _DATA:
        _DATA.move_to_end(key)
        return _DATA[key]
    images = data.load(cfg)
    _DATA[key] = images
    while len(_DATA) > DATA_CACHE_SIZE:
        _DATA.popitem(last=False)
    return images


def _weights_digest(model: nn.Module) -> str:
    digest = hashlib.blake2b(digest_size=16)
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def initial_metrics(run: TrainingRun) -> EpochMetrics:
    """Epoch 0. Its monitored metrics are measured once per process for each initial backbone (its weights and
    buffers, hashed) and monitor setting: trials of one seed and backbone start from the same network. Only for
    a single rank: the ranks of a multi-worker trial evaluate together (a broadcast), so none may skip it."""
    if run.dist.world_size > 1:
        return run.initial_metrics()
    cfg = run.cfg
    key = (
        _weights_digest(run.method.backbone),
        _data_key(cfg),
        cfg.val_split,
        cfg.val_size,
        cfg.knn_k,
        cfg.knn_temperature,
        cfg.knn_bank_subset,
        cfg.rankme,
        cfg.rankme_images,
        cfg.lidar,
        cfg.lidar_images,
        cfg.lidar_views,
        tuple(run.views.specs) if cfg.lidar else None,  # LiDAR's views: the method's first view and the augment
        cfg.alpha_req,
        cfg.alpha_req_images,
        cfg.alpha_req_band,
        str(run.device),
    )
    metrics = run.initial_metrics(_INITIAL.get(key))
    _INITIAL[key] = {name: getattr(metrics, name) for name in run.evaluate_names()}
    return metrics


# --- reports ----------------------------------------------------------------------------------------


def _report_final_eval(session: Session, run: TrainingRun, data: ImageData, device: torch.device) -> None:
    """The test-split kNN and linear probe of the final backbone (rank 0 computes; Tune reads rank 0's report)."""
    metrics: dict[str, Any] = {"epoch": run.epoch}
    if run.dist.is_main:
        result = evaluate_backbone(run.method.backbone, data, run.cfg, device, epoch=run.epoch)
        metrics.update({f"{EVAL_PREFIX}{k}": v for k, v in result.to_dict().items() if k != "checkpoint"})
    session.report(metrics)


def _ddp(dist: Distributed, device: torch.device):
    if dist.world_size == 1:
        return None
    import ray.train.torch

    def wrap(method: nn.Module) -> nn.Module:
        if device.type == "cuda" and getattr(method, "sync_batchnorm", False):
            method = nn.SyncBatchNorm.convert_sync_batchnorm(method)
        kwargs = {"find_unused_parameters": False}  # on the device chosen once (`trial_device`), not Ray's guess
        return ray.train.torch.prepare_model(method, move_to_device=device, parallel_strategy_kwargs=kwargs)

    return wrap


def _report(session: Session, run: TrainingRun, metrics: EpochMetrics, extra: dict[str, Any] | None = None) -> None:
    """Every rank reports the same metrics (and `extra`); rank 0 attaches the checkpoint."""
    from ray.train import Checkpoint

    with tempfile.TemporaryDirectory() as folder:
        checkpoint = None
        if run.dist.is_main:
            save_checkpoint(run.state_dict(), Path(folder) / STATE_FILE)
            checkpoint = Checkpoint.from_directory(folder)
        session.report(metrics.to_dict() | (extra or {}), checkpoint=checkpoint)
