"""`ssl-tune sweep`: Optuna proposes, ASHA stops early on the validation kNN accuracy, and each trial trains in
its own (reused) process, or through Ray Train when it has several workers.

Everything the user gave is checked before Ray starts (`checks.py`). The sweep directory <storage>/<name>/ holds
Tune's experiment state and trial directories (params.json, result.json, TensorBoard events),
`sweep.yaml` (the space and settings, for --resume and export), the Optuna journal, ASHA's rungs
(`asha_state.json`), each trial's checkpoints in its folder, `train/trial-<id>/` with the Ray Train
checkpoints of multi-worker trials, and `curves.parquet` (every epoch of every trial, rewritten when the driver
ends).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ssl_tune.errors import Interrupted
from ssl_tune.metrics import TrialStatus
from ssl_tune.storage import exists, is_uri, join, read_text, write_text
from ssl_tune.tune.checks import CheckedSweep, SweepRequest, check_sweep
from ssl_tune.tune.cluster import cluster_resources, concurrency, ray_cluster
from ssl_tune.tune.results import SESSIONS_FILE, SWEEP_FILE, SweepRecord, TrialRecord, load_sweep


@dataclass(frozen=True)
class SweepResult:
    """What `run_sweep` returns: the sweep directory, how many trials ran and failed, and the best trial."""

    sweep_dir: str
    trials: int
    errors: int
    best: TrialRecord
    summary: list[str]  # epoch 0, the default recipe and the best trial, with the gains (SweepRecord.summary)
    out_of_memory: int = 0  # trials that ran out of device memory (each not retried; its log says why)


def run_sweep(request: SweepRequest) -> SweepResult:
    """Run (or resume) a sweep to completion; returns a summary of the best trial."""
    from ssl_tune.tune.curves import curve_rows, curves_table, write_curves
    from ssl_tune.tune.searcher import sync_optuna_journal

    sweep = check_sweep(request)
    with ray_cluster(request.address, request.verbose):
        limit, why = concurrency(sweep.space.sweep, cluster_resources(), sweep.streamed)
        if not sweep.resume:  # only once the cluster is usable: a refused sweep leaves no directory
            write_text(join(sweep.sweep_dir, SWEEP_FILE), sweep.record(request.tracking))
        tuner = _tuner(sweep, request, limit, why)
        started = time.time()
        try:
            results = tuner.fit()
        finally:
            _record_session(sweep.sweep_dir, started, limit or sweep.space.sweep.num_samples)
            sync_optuna_journal(sweep.sweep_dir, sweep.name)  # the final copy, past the searcher's throttle
            record = load_sweep(sweep.sweep_dir)  # read once: the curves, the budget and the summary
            write_curves(sweep.sweep_dir, curves_table(curve_rows(record)))
    s = sweep.space.sweep
    spent_epochs = s.budget_epochs is not None and record.trained_epochs >= s.budget_epochs
    spent_budget = spent_epochs or (s.budget_seconds is not None and record.trial_seconds >= s.budget_seconds)
    if results.num_terminated + results.num_errors < s.num_samples and not spent_budget:
        storage = Path(sweep.sweep_dir).parent if not is_uri(sweep.sweep_dir) else request.storage
        raise Interrupted(
            f"sweep stopped with {results.num_terminated} of {s.num_samples} trials done; resume with: "
            f"ssl-tune sweep --storage {storage} --name {sweep.name} --resume"
        )
    return _summarize(results, record)


def _tuner(sweep: CheckedSweep, request: SweepRequest, limit: int | None, why: str) -> Any:
    """The sweep's Tuner: Optuna's searcher, ASHA (or none), the budget, the trackers and a line per trial event."""
    from ssl_tune.tune.budget import Budget
    from ssl_tune.tune.progress import TrialEvents
    from ssl_tune.tune.recorder import trial_dirname
    from ssl_tune.tune.scheduler import ResumableASHA, sweep_scheduler
    from ssl_tune.tune.searcher import fetch_optuna_journal, sweep_searcher
    from ssl_tune.tune.trackers import tune_callbacks
    from ssl_tune.tune.trial import TrialPlan, run_trial
    from ssl_tune.tune.tuner import new_tuner, restore_tuner

    space, sweep_dir, s = sweep.space, sweep.sweep_dir, sweep.space.sweep
    plan = TrialPlan.from_space(space, sweep.data_dir, sweep_dir)
    resources = cluster_resources()
    if s.gpus_per_trial and not resources.get("GPU"):  # a local cluster without one was refused by the checks
        print("note: the cluster has no GPU now; trials wait until the autoscaler adds GPU nodes")
    if sweep.resume:
        print(f"resuming sweep {sweep_dir}")
        fetch_optuna_journal(sweep_dir, sweep.name)  # the restored searcher reopens the driver's local copy
        return restore_tuner(run_trial, plan, sweep_dir)
    print(f"sweep {sweep.name}: {s.num_samples} trials, up to {limit or s.num_samples} at a time ({why})")
    max_epochs = sweep.max_epochs
    scheduler = sweep_scheduler(space, sweep_dir, max_epochs, sweep.data_dir)
    callbacks: list[Any] = tune_callbacks(request.tracking, sweep.name, "sweep", space.fixed, max_epochs)
    if not request.verbose:  # one line per trial event instead of Ray's status tables
        rungs = scheduler.rung_epochs() if isinstance(scheduler, ResumableASHA) else []
        callbacks.append(TrialEvents(sweep.metric, rungs, max_epochs, s.num_samples))
    return new_tuner(
        run_trial,
        plan,
        sweep_dir,
        epochs=max_epochs,
        verbose=request.verbose,
        callbacks=callbacks,
        stop=Budget(s.budget_epochs, s.budget_seconds, sweep_dir) if s.budget_epochs or s.budget_seconds else None,
        search_alg=sweep_searcher(space, sweep_dir, sweep.name, sweep.data_dir, max_epochs),
        scheduler=scheduler,
        num_samples=s.num_samples,
        max_concurrent_trials=limit,
        trial_dirname_creator=trial_dirname,
        trial_name_creator=trial_dirname,
    )


def _record_session(sweep_dir: str, started: float, slots: int) -> None:
    """Append this driver run to the sweep's SESSIONS_FILE: the benchmark's wall time and trial slots."""
    path = join(sweep_dir, SESSIONS_FILE)
    sessions = json.loads(read_text(path)) if exists(path) else []
    sessions.append({"started": started, "ended": time.time(), "slots": slots})
    write_text(path, json.dumps(sessions))


def _summarize(results: Any, record: SweepRecord) -> SweepResult:
    """The best trial as `export` and `report` will see it: `record` is read back from the sweep's files."""
    errors = sum(1 for r in results if r.error is not None)
    oom = sum(1 for t in record.trials if t.status is TrialStatus.OUT_OF_MEMORY)
    return SweepResult(record.sweep_dir, len(results), errors, record.best(), record.summary(), out_of_memory=oom)


__all__ = ["SweepRequest", "SweepResult", "run_sweep"]
