"""A Tune function trial that launches one Ray Train run (Train-inside-Tune, Ray Train V2)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import ray.train
import ray.tune
from ray.train.torch import TorchTrainer
from ray.tune.integration.ray_train import TuneReportCallback

from ssl_tune.config import TrainConfig
from ssl_tune.metrics import SELECTION_METRIC, SELECTION_MODE
from ssl_tune.storage import join
from ssl_tune.tune.space import SearchSpace
from ssl_tune.tune.worker import train_worker


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
    metric: str = SELECTION_METRIC  # what the kept checkpoints are ranked by

    @property
    def train_storage(self) -> str:
        """Where each trial's Ray Train run keeps its checkpoints: <sweep>/train/<trial id>/."""
        return join(self.sweep_dir, "train")

    def worker_resources(self) -> dict[str, float]:
        resources = {"CPU": self.cpus_per_worker}
        if self.gpus_per_trial:
            resources["GPU"] = self.gpus_per_trial / self.workers_per_trial
        return resources


def train_run_name(trial_id: str) -> str:
    """Stable across restarts of the trial and resumes of the sweep, so Ray Train restores the run."""
    return f"trial-{trial_id}"


def run_trial(params: dict[str, Any], plan: TrialPlan) -> None:
    """Tune trainable: build the trial's config from its sampled params and fit a TorchTrainer."""
    fit_train_run(plan.space.train_config(params, plan.data_dir), plan)


def fit_train_run(cfg: TrainConfig, plan: TrialPlan, *, final_eval: bool = False) -> None:
    """Run `cfg` as a Ray Train run of this Tune trial, reporting each epoch to Tune; restores its checkpoint
    when the trial restarts. `final_eval`: after the last epoch, evaluate on the test split (`ssl-tune
    confirm`) and keep the latest checkpoints; otherwise keep the two best by the selection metric."""
    trial_id = ray.tune.get_context().get_trial_id()
    keep = (
        ray.train.CheckpointConfig(num_to_keep=2)
        if final_eval
        else ray.train.CheckpointConfig(
            num_to_keep=2, checkpoint_score_attribute=plan.metric, checkpoint_score_order=SELECTION_MODE
        )
    )
    trainer = TorchTrainer(
        train_worker,
        train_loop_config={"config": cfg.to_yaml_dict(), "threads": plan.cpus_per_worker, "final_eval": final_eval},
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
            checkpoint_config=keep,
        ),
    )
    trainer.fit()
