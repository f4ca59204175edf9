"""`ssl-tune sweep`: Optuna proposes, ASHA stops early on the validation kNN accuracy, and each trial trains in
its own (reused) process, or through Ray Train when it has several workers.

Everything the user gave is checked before Ray starts. The sweep directory <storage>/<name>/ holds
Tune's experiment state and trial directories (params.json, result.json, TensorBoard events),
`sweep.yaml` (the space and settings, for --resume and export), the Optuna journal, ASHA's rungs
(`asha_state.json`), each trial's checkpoints in its folder, and `train/trial-<id>/` with the Ray Train
checkpoints of multi-worker trials.
"""

from __future__ import annotations

import json
import math
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from ssl_tune.config import deep_merge, describe_validation_error, parse_set
from ssl_tune.errors import Interrupted, UsageError, first_line
from ssl_tune.metrics import RANKME, SELECTION_MODE, VAL_KNN
from ssl_tune.storage import absolute, exists, is_uri, join, read_text, write_text
from ssl_tune.tracking import TrackingSettings, check_resumed_trackers
from ssl_tune.tune.local_cluster import mark_session, remove_orphaned_clusters
from ssl_tune.tune.results import SESSIONS_FILE, SWEEP_FILE, TrialRecord, load_sweep
from ssl_tune.tune.space import DefineByRun, SearchSpace, SweepSettings, check_space, load_space, nest

DRIVER_RESOURCE = "ssl_tune_driver"  # declared by cluster/ head nodes; trial drivers ask for a sliver of it
OPTUNA_FILE = "optuna.journal"


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


@dataclass
class PreparedSweep:
    space: SearchSpace
    sweep_dir: str
    name: str
    data_dir: str | None


def prepare(request: SweepRequest) -> PreparedSweep:
    """Resolve and check everything before Ray starts; raises UsageError."""
    storage = absolute(request.storage)
    if request.resume:
        if not request.name:
            raise UsageError("--resume needs --name (the sweep to continue)")
        sweep_dir = join(storage, request.name)
        if not exists(join(sweep_dir, SWEEP_FILE)):
            raise UsageError(f"--resume: no sweep at {sweep_dir}")
        saved = yaml.safe_load(read_text(join(sweep_dir, SWEEP_FILE)))
        space = SearchSpace.model_validate(saved["space"])
        check_resumed_trackers(saved.get("tracking"), request.tracking, "--resume")
        return PreparedSweep(space, sweep_dir, request.name, saved.get("data_dir"))

    if not request.space_path and request.space is None:
        raise UsageError("--space FILE is required")
    data_dir = str(Path(request.data_dir).expanduser().resolve()) if request.data_dir else None
    space = load_space(request.space_path, data_dir) if request.space is None else request.space
    space = _with_overrides(space, request)
    name = request.name or (Path(request.space_path).stem if request.space_path else "")
    if not name:
        raise UsageError("name the sweep: a space given as a dict or model has no file name to take it from")
    if not name or "/" in name or name.startswith("."):
        raise UsageError(f"--name '{name}' must be a plain folder name")
    sweep_dir = join(storage, name)
    if exists(sweep_dir):
        raise UsageError(f"sweep {sweep_dir} already exists: pass --resume to continue it, or choose another --name")
    space = _check_data(space, data_dir)
    if space.sweep.gpus_per_trial > 0 and request.address is None and "RAY_ADDRESS" not in os.environ:
        import torch

        if torch.cuda.device_count() == 0:
            raise UsageError("--gpus-per-trial > 0 but this machine has no GPU (use 0 to run trials on CPU)")
    return PreparedSweep(space, sweep_dir, name, data_dir)


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


def _check_data(space: SearchSpace, data_dir: str | None) -> SearchSpace:
    """Load the train split once (presence, md5; never the test split), check every batch size the space can
    draw, and settle the metric: val_knn_acc on labeled data, rankme on unlabeled. Returns the settled space."""
    from ssl_tune.config import check_batch_size, load_run_data
    from ssl_tune.data.streaming import shard_plan, streams_shards
    from ssl_tune.engine.run import monitored_split

    base = space.train_config({"method": space.method_choices()[0]}, data_dir)
    if streams_shards(base):  # the manifest and the eval subset's labels only, not the split
        stream = shard_plan(base)
        labeled, n_train = bool(stream.held_out) or _manifest_labeled(base), stream.num_train
    else:
        data = load_run_data(base)
        labeled, n_train = data.labeled, len(monitored_split(base, data)[0])
    metric = space.sweep.metric or (VAL_KNN if labeled else RANKME)
    if metric == VAL_KNN and not labeled:
        raise UsageError(f"dataset '{base.dataset}' has no labels, so it has no kNN accuracy: use --metric rankme")
    workers = space.sweep.workers_per_trial
    sizes = {base.batch_size}
    dist = space.params.get("batch_size")
    if dist is not None:
        sizes |= set(getattr(dist, "choices", None) or [dist.low, dist.high])
    for size in sorted(sizes):
        check_batch_size(int(size), n_train, workers)
    return space.model_copy(update={"sweep": space.sweep.model_copy(update={"metric": metric})})


def _manifest_labeled(cfg: Any) -> bool:
    from ssl_tune.data.parquet import read_manifest, resolve_location

    fs, root = resolve_location(cfg.data_dir)
    return read_manifest(fs, root, cfg.data_dir).num_classes > 0


# --- running ---------------------------------------------------------------------------------------


def run_sweep(request: SweepRequest) -> SweepResult:
    """Run (or resume) a sweep to completion; returns a summary of the best trial."""
    prepared = prepare(request)
    space, sweep_dir = prepared.space, prepared.sweep_dir
    with ray_cluster(request.address, request.verbose) as local:
        import ray

        if not request.resume:  # only once the cluster is usable: a refused sweep leaves no directory
            record = {"space": space.model_dump(mode="json"), "data_dir": prepared.data_dir, "name": prepared.name}
            record["tracking"] = request.tracking.to_dict()  # Tune restores its callbacks, trackers included
            write_text(join(sweep_dir, SWEEP_FILE), yaml.safe_dump(record, sort_keys=False))
        tuner = _tuner(prepared, request, local)
        started = time.time()
        try:
            results = tuner.fit()
        finally:
            slots, _ = concurrency(space, ray.cluster_resources())
            _record_session(sweep_dir, started, slots)
            sync_optuna_journal(sweep_dir, prepared.name)  # the final copy, past the searcher's throttle
    budget = space.sweep.budget_epochs
    spent_budget = budget is not None and load_sweep(sweep_dir).trained_epochs >= budget
    if results.num_terminated + results.num_errors < space.sweep.num_samples and not spent_budget:
        raise Interrupted(
            f"sweep stopped with {results.num_terminated} of {space.sweep.num_samples} trials done; resume with: "
            f"ssl-tune sweep --storage {Path(sweep_dir).parent if not is_uri(sweep_dir) else request.storage} "
            f"--name {prepared.name} --resume"
        )
    return _summarize(results, sweep_dir)


def _record_session(sweep_dir: str, started: float, slots: int) -> None:
    """Append this driver run to the sweep's SESSIONS_FILE: the benchmark's wall time and trial slots."""
    path = join(sweep_dir, SESSIONS_FILE)
    sessions = json.loads(read_text(path)) if exists(path) else []
    sessions.append({"started": started, "ended": time.time(), "slots": slots})
    write_text(path, json.dumps(sessions))


_cluster_is_local: bool | None = None  # set while a ray_cluster is open in this process


@contextmanager
def ray_cluster(address: str | None, verbose: bool) -> Iterator[bool]:
    """Connect to the cluster at `address` (or $RAY_ADDRESS), or start a local one; yields whether it is local.

    A local cluster first stops the clusters left behind by killed drivers, offers the driver resource, and
    is marked with this driver's pid. The dashboard's state API must answer (Ray Train V2 needs it).
    """
    import ray

    global _cluster_is_local
    if _cluster_is_local is not None:  # inside another ray_cluster (bench-search runs its sweeps in one cluster)
        yield _cluster_is_local
        return
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")  # ours writes TensorBoard
    # Ray's status tables only with --verbose: its newer reporter prints a config box even at verbose=0
    os.environ["RAY_AIR_NEW_OUTPUT"] = "1" if verbose else "0"
    # snapshot the experiment often (it is small), so a killed driver loses at most seconds of trial states
    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "2")
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")  # we snapshot often
    local = address is None and "RAY_ADDRESS" not in os.environ
    if local:  # no spot preemption on a local cluster: spare each trial the watcher actor (a process)
        os.environ.setdefault("RAY_TRAIN_ENABLE_PREEMPTION_WATCHER", "0")
    init_kwargs: dict[str, Any] = {"log_to_driver": verbose, "include_dashboard": True}
    if not verbose:  # Ray's and Optuna's INFO lines: with --verbose only
        import logging

        import optuna

        init_kwargs["logging_level"] = logging.WARNING
        logging.getLogger("ray.tune").setLevel(logging.WARNING)
        optuna.logging.set_verbosity(optuna.logging.WARNING)
    if local and (stale := remove_orphaned_clusters()):
        print(f"stopped {stale} local Ray cluster(s) left behind by a killed sweep driver")
    if local:
        init_kwargs["resources"] = {DRIVER_RESOURCE: 1000}
    else:
        init_kwargs["address"] = address or "auto"
        check_reachable(address or os.environ["RAY_ADDRESS"])
    try:
        context = ray.init(**init_kwargs)
    except ConnectionError as err:  # something answers at the address, but not a Ray cluster's GCS
        if local:
            raise
        raise UsageError(first_line(err)) from None
    if local:
        mark_session(context.address_info["session_dir"])
    try:
        _require_state_api(ray.get_runtime_context().gcs_address)
        _cluster_is_local = local
        yield local
    finally:
        _cluster_is_local = None
        ray.shutdown()


def check_reachable(address: str, timeout_s: float = 5.0) -> None:
    """A `host:port` (or `ray://host:port`) address must accept a TCP connection: `ray.init` would retry for
    minutes, printing warnings. "auto" and other forms are left to Ray."""
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not port.isdigit():
        return
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()
    except OSError as err:
        raise UsageError(f"no Ray cluster answers at {address} ({err.strerror or err})") from None


def driver_resources() -> dict[str, float]:
    """What a trial's driver (the Tune function trial) asks for: a sliver of the head's driver resource."""
    import ray

    return {DRIVER_RESOURCE: 0.001} if ray.cluster_resources().get(DRIVER_RESOURCE) else {"memory": 32 * 2**20}


def _require_state_api(address: str) -> None:
    """Ray Train V2 needs the dashboard (ray[default]); without it placement groups of ended trials leak."""
    try:
        from ray.util.state import list_nodes

        list_nodes(address=address, limit=1, timeout=30)  # this cluster's, not another local one's
    except Exception as err:
        raise UsageError(
            "Ray's dashboard/state API is unavailable, and without it Ray Train leaks the placement groups of "
            "finished trials and later trials hang: install ray[default], and start a cluster with its dashboard "
            f"(ray start --include-dashboard=true) ({type(err).__name__}: {first_line(err)})"
        ) from None


def concurrency(space: SearchSpace, resources: dict[str, float]) -> tuple[int, str]:
    """How many trials fit at once on the cluster's current resources, and why."""
    s = space.sweep
    needs = {"CPU": s.workers_per_trial * s.cpus_per_worker}
    if s.gpus_per_trial:
        needs["GPU"] = s.gpus_per_trial
    fits = min(math.floor(resources.get(k, 0.0) / v + 1e-9) for k, v in needs.items())
    if s.max_concurrent is not None:
        return s.max_concurrent, "--max-concurrent"
    if fits == 0:
        return s.num_samples, "none fits the cluster now: trials wait for the autoscaler"
    return fits, f"{fits} x {needs} fit the cluster's {dict((k, resources.get(k, 0)) for k in needs)}"


def _tuner(prepared: PreparedSweep, request: SweepRequest, local: bool):
    import ray
    from ray import tune
    from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback
    from ray.tune.schedulers import FIFOScheduler

    from ssl_tune.tracking import tune_callbacks
    from ssl_tune.tune.budget import EpochBudget
    from ssl_tune.tune.progress import TrialEvents
    from ssl_tune.tune.recorder import TrialRecorder, trial_dirname
    from ssl_tune.tune.scheduler import ASHA_STATE_FILE, ResumableASHA
    from ssl_tune.tune.searcher import SSLOptunaSearch
    from ssl_tune.tune.trial import TrialPlan, run_trial

    space, sweep_dir = prepared.space, prepared.sweep_dir
    s = space.sweep
    plan = TrialPlan(
        space,
        prepared.data_dir,
        sweep_dir,
        s.workers_per_trial,
        s.gpus_per_trial,
        s.cpus_per_worker,
        s.max_failures,
        metric=s.metric or VAL_KNN,
        reuse_processes=s.reuse_processes,
    )
    resources = ray.cluster_resources()
    if s.gpus_per_trial and not resources.get("GPU") and not local:
        print("note: the cluster has no GPU now; trials wait until the autoscaler adds GPU nodes")
    trainable = tune.with_parameters(run_trial, plan=plan)
    trainable = tune.with_resources(trainable, plan.trial_resources(driver_resources()))
    base = space.train_config({"method": space.method_choices()[0]}, prepared.data_dir)
    max_epochs = space.max_epochs(base)
    if request.resume:
        print(f"resuming sweep {sweep_dir}")
        fetch_optuna_journal(sweep_dir, prepared.name)  # the restored searcher reopens the driver's local copy
        return tune.Tuner.restore(sweep_dir, trainable=trainable, resume_unfinished=True, resume_errored=True)

    limit, why = concurrency(space, resources)
    print(f"sweep {prepared.name}: {s.num_samples} trials, up to {limit} at a time ({why})")
    searcher = SSLOptunaSearch(
        space=DefineByRun(space),
        metric=s.metric,
        mode=SELECTION_MODE,
        sampler=optuna_sampler(s),
        study_name=prepared.name,
        storage=_optuna_storage(sweep_dir, prepared.name),
        points_to_evaluate=space.initial_points(prepared.data_dir) or None,
        max_epochs=max_epochs,
        journal=optuna_journal_path(sweep_dir, prepared.name),
        journal_copy=join(sweep_dir, OPTUNA_FILE) if is_uri(sweep_dir) else None,
    )
    scheduler = FIFOScheduler()  # early_stopping: none
    if s.early_stopping == "asha":
        scheduler = ResumableASHA(
            join(sweep_dir, ASHA_STATE_FILE),  # its rungs, read back on --resume
            time_attr="epoch",
            metric=s.metric,
            mode=SELECTION_MODE,
            max_t=max_epochs,
            grace_period=min(space.asha.grace_period, max_epochs),
            reduction_factor=space.asha.reduction_factor,
        )
    rungs = scheduler.rung_epochs() if isinstance(scheduler, ResumableASHA) else []
    callbacks = [TrialRecorder(max_epochs), JsonLoggerCallback(), CSVLoggerCallback()]
    callbacks += tune_callbacks(request.tracking, prepared.name, "sweep", space.fixed, max_epochs)
    if not request.verbose:  # one line per trial event instead of Ray's status tables
        callbacks.append(TrialEvents(s.metric or VAL_KNN, rungs, max_epochs, s.num_samples))
    run_config = tune.RunConfig(  # Tuner.restore reads it back from the sweep on --resume
        verbose=None if request.verbose else 0,
        name=prepared.name,
        storage_path=str(Path(sweep_dir).parent) if not is_uri(sweep_dir) else sweep_dir.rsplit("/", 1)[0],
        callbacks=callbacks,
        stop=EpochBudget(s.budget_epochs, sweep_dir) if s.budget_epochs else None,
        failure_config=tune.FailureConfig(max_failures=s.max_failures),
        checkpoint_config=tune.CheckpointConfig(**plan.checkpoint_settings(final_eval=False)),
    )
    return tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(
            search_alg=searcher,
            scheduler=scheduler,
            num_samples=s.num_samples,
            max_concurrent_trials=limit,
            trial_dirname_creator=trial_dirname,
            trial_name_creator=trial_dirname,
            reuse_actors=plan.in_process,  # a process that ran a trial runs the next: imports, data, epoch 0 kept
        ),
        run_config=run_config,
    )


def optuna_sampler(settings: SweepSettings):
    """The sweep's Optuna sampler, seeded: TPE, or random search (`sweep.searcher`). TPE's first
    `tpe_startup_trials` draw from a RandomSampler with the same seed, so with the same seed both strategies
    start from the same points."""
    import optuna

    if settings.searcher == "random":
        return optuna.samplers.RandomSampler(seed=settings.seed)
    return optuna.samplers.TPESampler(seed=settings.seed, n_startup_trials=settings.tpe_startup_trials)


def optuna_journal_path(sweep_dir: str, name: str) -> str:
    """The Optuna journal sits in the sweep dir; for cloud storage it stays on the driver's disk, and is copied to
    <sweep_dir>/optuna.journal (by the searcher at its snapshots, throttled, and at the end of the sweep)."""
    if not is_uri(sweep_dir):
        return join(sweep_dir, OPTUNA_FILE)
    return str(Path("~/.ssl-tune/optuna").expanduser() / f"{name}.journal")


def fetch_optuna_journal(sweep_dir: str, name: str) -> bool:
    """A bucket sweep's journal: fetch the sweep dir's copy to the driver's disk if the local one is missing or
    shorter (--resume on another machine). Returns whether it fetched."""
    if not is_uri(sweep_dir):
        return False
    from ssl_tune.tune.searcher import pull_journal

    return pull_journal(join(sweep_dir, OPTUNA_FILE), optuna_journal_path(sweep_dir, name))


def sync_optuna_journal(sweep_dir: str, name: str) -> bool:
    """A bucket sweep's journal: copy the driver's local journal to the sweep dir now. Returns whether it did."""
    journal = optuna_journal_path(sweep_dir, name)
    if not is_uri(sweep_dir) or not Path(journal).exists():
        return False
    from ssl_tune.tune.searcher import push_journal

    return push_journal(journal, join(sweep_dir, OPTUNA_FILE))


def _optuna_storage(sweep_dir: str, name: str):
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    fetch_optuna_journal(sweep_dir, name)  # before the storage opens it
    path = Path(optuna_journal_path(sweep_dir, name))
    path.parent.mkdir(parents=True, exist_ok=True)
    return JournalStorage(JournalFileBackend(str(path)))


@dataclass(frozen=True)
class SweepResult:
    """What `run_sweep` returns: the sweep directory, how many trials ran and failed, and the best trial."""

    sweep_dir: str
    trials: int
    errors: int
    best: TrialRecord
    summary: list[str]  # epoch 0, the default recipe and the best trial, with the gains (SweepRecord.summary)


def _summarize(results: Any, sweep_dir: str) -> SweepResult:
    """The best trial as `export` and `report` will see it: read back from the sweep's files."""
    record = load_sweep(sweep_dir)
    errors = sum(1 for r in results if r.error is not None)
    return SweepResult(sweep_dir, len(results), errors, record.best(), record.summary())
