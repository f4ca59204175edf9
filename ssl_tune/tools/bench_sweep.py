"""`ssl-tune bench-sweep`: what a sweep's fixed costs take from its compute, read from the sweep's own files.

It runs one fixed small sweep (the quickstart space by default) with trials in reused processes, and, as the
baseline in the same run, the same sweep with every trial starting a Ray Train worker group
(`sweep.reuse_processes: false`, how every trial ran before). For each it reports:

- start-up: from Tune's start of the trial (driver clock) to its first report reaching the driver, plus, for
  a trial that began a new process, that process's spawn and imports (Tune starts a trial once its process is
  up), median / min / max over trials;
- efficiency: the epochs' time (epoch 0 included), summed over trials, over (the sweep's wall time x trial
  slots). The wall time is the driver's Tuner run (`sessions.json`), from before the first trial process is
  spawned to the end; the local Ray cluster's own start and stop are not in it;
- trials per hour at that wall time;
- where the first trials' start-up went inside their process (spawn and imports, data, model, epoch 0).
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ssl_tune.errors import UsageError
from ssl_tune.tune.results import load_sweep

MODES = {True: "reused processes", False: "Ray Train per trial"}


@dataclass(frozen=True)
class SweepTiming:
    """A finished sweep's timing, from its files (see the module docstring)."""

    mode: str
    trials: int
    slots: int
    wall_s: float
    work_s: float
    startup_median_s: float
    startup_min_s: float
    startup_max_s: float
    efficiency: float
    trials_per_hour: float
    # inside the trial's process, mean over the trials that started a process / that reused one
    first_process_s: float
    first_data_s: float
    first_build_s: float
    first_epoch0_s: float
    reused_startup_median_s: float | None
    command_s: float | None = None  # the whole `sweep` call, local Ray cluster start and stop included


def sweep_timing(sweep_dir: str, mode: str = "", command_s: float | None = None) -> SweepTiming:
    """The timing of the finished sweep in `sweep_dir`. Raises UsageError when it has none recorded."""
    sweep = load_sweep(sweep_dir)
    if not sweep.sessions:
        raise UsageError(f"{sweep_dir} records no driver session (sessions.json): not a finished sweep")
    trials = [t for t in sweep.trials if "started" in t.times and "first_result" in t.times and t.results]
    if not trials:
        raise UsageError(f"{sweep_dir} has no trial that reported")
    wall = sum(s["ended"] - s["started"] for s in sweep.sessions)
    slots = max(int(s["slots"]) for s in sweep.sessions)
    work = sum(float(r.get("epoch_time_s") or 0.0) for t in trials for r in t.results)
    # Tune starts a trial once its process is up (spawned, trainable imported): a trial that began a new process
    # in `reused processes` mode also waited for that, measured inside the process (`startup_process_s`: a
    # slight over-count). In Ray Train mode the workers' start is already inside first_result - started.
    in_trial = mode != MODES[False]
    startups = [
        t.times["first_result"] - t.times["started"] + (float(t.results[0].get("startup_process_s", 0)) * in_trial)
        for t in trials
    ]
    first_rows = [t.results[0] for t in trials if t.results[0].get("startup_process_s", 0) > 0]
    reused = [s for t, s in zip(trials, startups, strict=True) if t.results[0].get("startup_process_s", 0) == 0]

    def mean(key: str) -> float:
        return statistics.fmean(float(r.get(key, 0.0)) for r in first_rows) if first_rows else 0.0

    return SweepTiming(
        mode=mode,
        trials=len(trials),
        slots=slots,
        wall_s=wall,
        work_s=work,
        startup_median_s=statistics.median(startups),
        startup_min_s=min(startups),
        startup_max_s=max(startups),
        efficiency=work / (wall * slots),
        trials_per_hour=len(trials) / wall * 3600,
        first_process_s=mean("startup_process_s"),
        first_data_s=mean("startup_data_s"),
        first_build_s=mean("startup_build_s"),
        first_epoch0_s=mean("eval_time_s"),
        reused_startup_median_s=statistics.median(reused) if reused and first_rows else None,
        command_s=command_s,
    )


@dataclass
class BenchSweepRequest:
    space: str = "search_spaces/quickstart.yaml"
    data_dir: str | None = None
    num_samples: int | None = None
    baseline: bool = True
    storage: str | None = None  # default: a temporary folder, removed after
    overrides: tuple[str, ...] = ()
    asha: dict[str, Any] | None = None


def run_bench_sweep(request: BenchSweepRequest) -> list[SweepTiming]:
    """Run the sweep in each mode (ours first, then the baseline) and time it from its files."""
    from ssl_tune.tune.checks import SweepRequest
    from ssl_tune.tune.sweep import run_sweep

    if not Path(request.space).is_file():
        raise UsageError(f"--space {request.space}: no such file")
    with tempfile.TemporaryDirectory(prefix="bench-sweep-") as scratch:
        storage = request.storage or scratch
        timings = []
        for reuse in (True, False) if request.baseline else (True,):
            name = f"bench-{'reused' if reuse else 'raytrain'}-{int(time.time())}"
            sweep = SweepRequest(
                space_path=request.space,
                storage=storage,
                name=name,
                data_dir=request.data_dir,
                overrides=request.overrides,
                sweep_settings={"num_samples": request.num_samples, "reuse_processes": reuse},
                asha_settings=request.asha,
            )
            start = time.perf_counter()
            result = run_sweep(sweep)
            command = time.perf_counter() - start
            timings.append(sweep_timing(result.sweep_dir, MODES[reuse], command))
    return timings


def format_report(timings: list[SweepTiming]) -> str:
    header = "| | trials | slots | wall s | work s | start-up median (min-max) s | efficiency | trials/h |"
    lines = [header, "|---|---|---|---|---|---|---|---|"]
    for t in timings:
        lines.append(
            f"| {t.mode} | {t.trials} | {t.slots} | {t.wall_s:.1f} | {t.work_s:.1f} | {t.startup_median_s:.2f} "
            f"({t.startup_min_s:.2f}-{t.startup_max_s:.2f}) | {t.efficiency:.0%} | {t.trials_per_hour:.0f} |"
        )
    ours = timings[0]
    lines.append("")
    lines.append(
        f"{ours.mode}, inside a trial's new process: spawn and imports {ours.first_process_s:.2f} s, data "
        f"{ours.first_data_s:.2f} s, model {ours.first_build_s:.2f} s, epoch-0 evaluation {ours.first_epoch0_s:.2f} s"
    )
    if ours.reused_startup_median_s is not None:
        lines.append(f"a trial in a reused process starts in {ours.reused_startup_median_s:.2f} s (median)")
    if len(timings) > 1:
        base = timings[1]
        lines.append(
            f"against {base.mode}: start-up {base.startup_median_s / max(ours.startup_median_s, 1e-9):.1f}x "
            f"shorter, efficiency {ours.efficiency / base.efficiency:.1f}x, "
            f"trials/h {ours.trials_per_hour / base.trials_per_hour:.1f}x"
        )
    return "\n".join(lines)


def write_json(timings: list[SweepTiming], path: str) -> None:
    Path(path).write_text(json.dumps([asdict(t) for t in timings], indent=2) + "\n")
