"""`ssl-tune train`: one run in an output directory, with atomic per-epoch checkpoints and --resume.

OUT/
  config.yaml          the resolved config (retrain with `ssl-tune train --config OUT/config.yaml`)
  metrics.jsonl        one JSON line per epoch (epoch 0 = the random network)
  checkpoints/last.pt  the last complete epoch (written atomically)
  backbone.pt          the final backbone weights
  tensorboard/         per-epoch scalars
"""

from __future__ import annotations

import contextlib
import shutil
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml

from ssl_tune.config import TrainConfig
from ssl_tune.data.streaming import quiet_ray
from ssl_tune.data.training import TrainingData, open_training_data
from ssl_tune.engine.checkpoint import RUN_CHECKPOINT, load_checkpoint, save_checkpoint
from ssl_tune.engine.run import TrainingRun, out_of_memory_message
from ssl_tune.engine.runlog import SCALARS, TensorBoardLog, append_jsonl, format_epoch, rewrite_jsonl
from ssl_tune.errors import Interrupted, TrainingStopped, UsageError
from ssl_tune.metrics import EpochMetrics, TrialStatus, finite
from ssl_tune.storage import atomic_write, require_empty_output
from ssl_tune.tracking import RunIdentity, TrackedRun, TrackingSettings, open_runs, read_record, write_record

CHECKPOINT = RUN_CHECKPOINT
DEFAULT_EXPERIMENT = "ssl-tune"  # the MLflow experiment / W&B group of `train` runs


def check_out_dir(out: Path, *, resume: bool, force: bool) -> None:
    """Refuse to overwrite a non-empty directory unless --force; --resume needs a checkpoint there."""
    if resume:
        if not (out / CHECKPOINT).is_file():
            raise UsageError(f"--resume: no checkpoint at {out / CHECKPOINT}")
        return
    require_empty_output(str(out), force=force, hint="pass --resume to continue it or --force to overwrite it")


def saved_config(out: Path) -> dict[str, Any]:
    check_out_dir(out, resume=True, force=False)
    path = out / "config.yaml"
    if not path.is_file():
        raise UsageError(f"--resume: {path} is missing")
    return yaml.safe_load(path.read_text()) or {}


@dataclass(frozen=True)
class TrainResult:
    """What `train` returns: the last epoch's metrics and the run directory."""

    final: EpochMetrics
    out: Path


def train(
    cfg: TrainConfig,
    out: Path,
    *,
    resume: bool = False,
    force: bool = False,
    progress_bar: bool | None = None,
    tracking: TrackingSettings | None = None,
    experiment: str = DEFAULT_EXPERIMENT,
) -> TrainResult:
    """Run (or continue) training into `out`. All input is checked before anything is written.

    With `tracking`, the run is also a run in MLflow / W&B (experiment `experiment`, run name `out`'s), its
    whereabouts kept in out/tracking.json, so that a resume continues it and `eval` adds to it."""
    check_out_dir(out, resume=resume, force=force)
    data = open_training_data(cfg)  # checks a stream's shards; Ray starts only below
    with quiet_ray() if data.streamed else contextlib.nullcontext():
        return _train(cfg, out, data, resume, force, progress_bar, tracking, experiment)


def _train(
    cfg: TrainConfig,
    out: Path,
    data: TrainingData,
    resume: bool,
    force: bool,
    progress_bar: bool | None,
    tracking: TrackingSettings | None,
    experiment: str,
) -> TrainResult:
    run = TrainingRun(cfg, data.load(cfg), stream=data.stream)
    state = load_checkpoint(out / CHECKPOINT) if resume else None

    if force and out.is_dir() and not resume:
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / "config.yaml", lambda f: f.write(yaml.safe_dump(cfg.to_yaml_dict(), sort_keys=False).encode()))
    metrics_path = out / "metrics.jsonl"

    if state is not None:
        run.load_state_dict(state)
        rewrite_jsonl(metrics_path, run.history)  # drops any line past the checkpoint
        print(f"resuming {out} after epoch {run.epoch}", flush=True)
    tb = TensorBoardLog(out / "tensorboard", first_epoch=run.epoch + 1 if state is not None else 0)
    tracked = _open_tracked(cfg, out, tracking, experiment, resume)
    show_bar = sys.stderr.isatty() if progress_bar is None else progress_bar
    end_state = TrialStatus.ERROR
    try:
        if state is None:
            rewrite_jsonl(metrics_path, [])
            _record(run.initial_metrics(), run, out, tb, tracked)
        while not run.done:
            with _progress_bar(run, show_bar) as on_step:
                metrics = run.train_epoch(on_step=on_step)
            _record(metrics, run, out, tb, tracked)
        end_state = run.history[-1].status if run.stopped else TrialStatus.COMPLETED
    except KeyboardInterrupt:
        end_state = TrialStatus.UNFINISHED
        raise Interrupted(f"epoch {run.epoch} is saved; resume with: ssl-tune train --out {out} --resume") from None
    except UsageError:  # bad data met while training (a corrupt streamed image)
        if state is None and run.epoch == 0:  # a new run with no epoch saved: leave nothing behind
            tb.close()
            shutil.rmtree(out, ignore_errors=True)
        raise
    finally:
        tb.close()
        for tracker_run in tracked:
            tracker_run.end(end_state.value)
    if run.stopped:
        status = run.history[-1].status
        why = out_of_memory_message(cfg, 1, 1.0) if status is TrialStatus.OUT_OF_MEMORY else status.value
        raise TrainingStopped(f"training stopped at epoch {run.epoch}: {why}")
    atomic_write(out / "backbone.pt", lambda f: torch.save(run.method.backbone.state_dict(), f))
    return TrainResult(run.history[-1], out)


def _open_tracked(
    cfg: TrainConfig, out: Path, tracking: TrackingSettings | None, experiment: str, resume: bool
) -> list[TrackedRun]:
    if not tracking:
        return []
    import uuid

    identity = RunIdentity(experiment, out.name, uuid.uuid4().hex[:12], "train")
    runs = open_runs(tracking, identity, cfg.to_yaml_dict(), read_record(out) if resume else None, folder=out)
    write_record(out, runs)
    return runs


def _record(
    metrics: EpochMetrics, run: TrainingRun, out: Path, tb: TensorBoardLog, tracked: list[TrackedRun] = ()
) -> None:
    save_checkpoint(run.state_dict(), out / CHECKPOINT)  # checkpoint first: it carries the history
    append_jsonl(out / "metrics.jsonl", metrics)
    tb.log(metrics)
    tracked_keys = (*SCALARS, *metrics.extras)
    values = {k: float(v) for k, v in metrics.to_dict().items() if k in tracked_keys and finite(v) is not None}
    for tracker_run in tracked:
        tracker_run.log_metrics(values, step=metrics.epoch)
    print(format_epoch(metrics, run.cfg.epochs), flush=True)


@contextmanager
def _progress_bar(run: TrainingRun, enabled: bool) -> Iterator[Callable[[int], None] | None]:
    """A per-epoch bar with images/s and the last epoch's loss and kNN, on interactive terminals only.

    Its step callback only counts images: the loss of the running epoch stays on the device until the epoch ends.
    """
    if not enabled:
        yield None
        return
    from tqdm import tqdm

    last = run.history[-1]
    shown = []
    if last.loss is not None:
        shown.append(f"last loss {last.loss:.4f}")
    if (knn := last.knn()) is not None and (value := finite(knn[1])) is not None:
        shown.append(f"last knn {100 * value:.1f}%")
    with tqdm(
        total=run.steps_per_epoch * run.cfg.batch_size,
        desc=f"epoch {run.epoch + 1}/{run.cfg.epochs}",
        unit="img",
        unit_scale=True,
        leave=False,
        dynamic_ncols=True,
        postfix=", ".join(shown) or None,
    ) as bar:
        yield lambda _step: bar.update(run.cfg.batch_size)
