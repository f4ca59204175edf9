"""The one builder of a Ray Tune `Tuner`, new or restored, for the experiments whose trials share a `TrialPlan`:
a sweep's trials and a confirm's runs.

Each trial asks for its plan's resources, keeps its plan's checkpoints, and is restarted up to `max_failures`
times; each experiment writes result.json, progress.csv and the recorder's TensorBoard files per trial. A restored
experiment reads back its run settings, callbacks, searcher and scheduler from its folder.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from ray import tune
from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback

from ssl_tune.storage import split
from ssl_tune.tune.cluster import driver_resources
from ssl_tune.tune.recorder import TrialRecorder
from ssl_tune.tune.trial import CHECKPOINT_SETTINGS, TrialPlan


def can_restore(experiment_dir: str) -> bool:
    """Whether `experiment_dir` holds a Tune experiment to resume."""
    return tune.Tuner.can_restore(experiment_dir)


def _with_plan(trainable: Callable[..., None], plan: TrialPlan, parameters: dict[str, Any] | None) -> Any:
    """`trainable(params, plan=plan, **parameters)`, asking for the plan's resources."""
    resources = plan.trial_resources(driver_resources())
    return tune.with_resources(tune.with_parameters(trainable, plan=plan, **(parameters or {})), resources)


def restore_tuner(
    trainable: Callable[..., None], plan: TrialPlan, experiment_dir: str, parameters: dict[str, Any] | None = None
) -> tune.Tuner:
    """The experiment in `experiment_dir` continued: its unfinished and errored trials resume, with the run
    settings, callbacks, searcher and scheduler it was built with."""
    trainable = _with_plan(trainable, plan, parameters)
    return tune.Tuner.restore(experiment_dir, trainable=trainable, resume_unfinished=True, resume_errored=True)


def new_tuner(
    trainable: Callable[..., None],
    plan: TrialPlan,
    experiment_dir: str,
    *,
    epochs: int,
    verbose: bool,
    parameters: dict[str, Any] | None = None,
    callbacks: Sequence[Any] = (),
    stop: Any = None,
    param_space: dict[str, Any] | None = None,
    **tune_config: Any,
) -> tune.Tuner:
    """A new experiment in `experiment_dir` (a path or URI) of `trainable(params, plan=plan, **parameters)`
    trials, whose longest run is `epochs` epochs, each keeping its latest checkpoints. `callbacks` come after the
    recorder's; `tune_config` are `TuneConfig` keywords (search_alg, scheduler, num_samples, max_concurrent_trials,
    trial names)."""
    storage, name = split(experiment_dir)
    run_config = tune.RunConfig(  # Tuner.restore reads it back
        verbose=None if verbose else 0,
        name=name,
        storage_path=storage,
        callbacks=[TrialRecorder(epochs), JsonLoggerCallback(), CSVLoggerCallback(), *callbacks],
        stop=stop,
        failure_config=tune.FailureConfig(max_failures=plan.max_failures),
        checkpoint_config=tune.CheckpointConfig(**CHECKPOINT_SETTINGS),
    )
    # reuse_actors: a process that ran a trial runs the next (imports, data, epoch 0 kept)
    settings = tune.TuneConfig(reuse_actors=plan.in_process, **tune_config)
    trainable = _with_plan(trainable, plan, parameters)
    return tune.Tuner(trainable, param_space=param_space, tune_config=settings, run_config=run_config)
