"""A Tune function trial: a single-worker trial trains in its own process; a multi-worker trial launches one Ray
Train run (Train-inside-Tune, Ray Train V2). Both report each epoch, with its checkpoint, to Tune."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import ray.train
import ray.tune

from ssl_tune.config import TrainConfig
from ssl_tune.data.streaming import build_dataset
from ssl_tune.data.training import open_training_data
from ssl_tune.storage import join
from ssl_tune.tune.devices import gpus_as_cpu
from ssl_tune.tune.space import SearchSpace
from ssl_tune.tune.worker import train_worker, tune_trial_loop


@dataclass(frozen=True)
class TrialPlan:
    """What every trial of a sweep shares: the space, where data and checkpoints live, the resources."""

    space: SearchSpace
    data_dir: str | None
    sweep_dir: str
    workers_per_trial: int
    gpus_per_trial: float
    cpus_per_worker: float
    max_failures: int
    reuse_processes: bool = True  # sweep.reuse_processes

    @classmethod
    def from_space(cls, space: SearchSpace, data_dir: str | None, sweep_dir: str) -> TrialPlan:
        """The plan of a sweep's trials (or a confirm's runs) from the space's `sweep` settings."""
        s = space.sweep
        resources = (s.workers_per_trial, s.gpus_per_trial, s.cpus_per_worker, s.max_failures)
        return cls(space, data_dir, sweep_dir, *resources, reuse_processes=s.reuse_processes)

    @property
    def train_storage(self) -> str:
        """Where each trial's Ray Train run keeps its checkpoints: <sweep>/train/<trial id>/."""
        return join(self.sweep_dir, "train")

    @property
    def in_process(self) -> bool:
        """A single-worker trial trains in the Tune trial's process, without a Ray Train worker group: its
        start-up drops from 27-39 s to 0.1 s in a reused process (docs/benchmarks.md)."""
        return self.workers_per_trial == 1 and self.reuse_processes

    def worker_resources(self) -> dict[str, float]:
        resources = {"CPU": self.cpus_per_worker}
        if self.gpus_per_trial:
            resources["GPU"] = self.gpus_per_trial / self.workers_per_trial
        return resources

    def trial_resources(self, driver: dict[str, float]) -> dict[str, float]:
        """What the Tune trial asks for: a worker's resources when it trains itself, else `driver` (a sliver
        for the process that drives the Ray Train run)."""
        return self.worker_resources() if self.in_process else driver


# Keep the latest two checkpoints: the last is the one a trial's value (its last epoch's metric) and a confirm run's
# test evaluation belong to, the one before it a fallback to restart from (Tune's and Ray Train's CheckpointConfig)
CHECKPOINT_SETTINGS: dict[str, Any] = {"num_to_keep": 2}


def train_run_name(trial_id: str) -> str:
    """Stable across restarts of the trial and resumes of the sweep, so Ray Train restores the run."""
    return f"trial-{trial_id}"


def run_trial(params: dict[str, Any], plan: TrialPlan) -> None:
    """Tune trainable: build the trial's config from its sampled params and fit a TorchTrainer."""
    fit_train_run(plan.space.train_config(params, plan.data_dir), plan)


def fit_train_run(cfg: TrainConfig, plan: TrialPlan, *, final_eval: bool = False) -> None:
    """Run `cfg` in this Tune trial, reporting each epoch to Tune; restores its checkpoint when the trial
    restarts. `final_eval`: after the last epoch, evaluate on the test split (`ssl-tune confirm`)."""
    data = open_training_data(cfg)
    if plan.in_process:
        tune_trial_loop(cfg, data, plan.cpus_per_worker, plan.gpus_per_trial, final_eval)
        return
    from ray.train.torch import TorchConfig, TorchTrainer
    from ray.tune.integration.ray_train import TuneReportCallback

    trial_id = ray.tune.get_context().get_trial_id()
    loop_config = {
        "config": cfg.to_yaml_dict(),
        "data": data,
        "threads": plan.cpus_per_worker,
        "gpus_per_worker": plan.worker_resources().get("GPU", 0.0),
        "final_eval": final_eval,
    }
    datasets = {}
    if data.stream is not None:  # each rank reads its get_dataset_shard("train") of one decoded stream
        datasets["train"] = build_dataset(data.stream, cfg.seed)
    trainer = TorchTrainer(
        train_worker,
        torch_config=TorchConfig(backend="gloo") if gpus_as_cpu() else None,  # tests: fake GPUs, no NCCL
        train_loop_config=loop_config,
        datasets=datasets or None,
        scaling_config=ray.train.ScalingConfig(
            num_workers=plan.workers_per_trial,
            use_gpu=plan.gpus_per_trial > 0,
            resources_per_worker=plan.worker_resources(),
        ),
        run_config=ray.train.RunConfig(
            name=train_run_name(trial_id),
            storage_path=plan.train_storage,
            callbacks=[TuneReportCallback()],
            failure_config=ray.train.FailureConfig(max_failures=plan.max_failures),
            checkpoint_config=ray.train.CheckpointConfig(**CHECKPOINT_SETTINGS),
        ),
    )
    trainer.fit()
