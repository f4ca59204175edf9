"""`ssl-tune confirm`: retrain a sweep's top K configs with S fresh seeds each, on the whole train split (the
validation images included, as is usual after selection), and evaluate every run on the test split.

The K configs are ranked by the sweep's validation metric; the test split is read only here, after every
decision is made. Each run is a Ray Train run inside a Tune trial on the same cluster as a sweep, so an
interrupted confirm resumes: run the same command again, and finished runs are not rerun.

<sweep>/confirm/ holds runs.yaml (what was asked), Tune's trial folders, train/ (checkpoints),
confirm.parquet (a row per run) and confirm.md (mean ± std per config, beside the default recipe). With the
default recipe (--with-default), each config is compared with it seed by seed (`ssl_tune.stats`): the per-seed
differences, their mean and 95 % paired t interval, and "better" only when the interval excludes 0.
"""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass, field
from typing import Any

import yaml

from ssl_tune.config import TrainConfig, build_config
from ssl_tune.errors import Interrupted, UsageError
from ssl_tune.metrics import LABEL_FREE
from ssl_tune.stats import PairedDifference, paired_difference
from ssl_tune.storage import absolute, exists, join, read_text, write_text
from ssl_tune.tracking import TrackingSettings, check_resumed_trackers
from ssl_tune.tune.cluster import cluster_resources, concurrency, ray_cluster
from ssl_tune.tune.results import SweepRecord, load_sweep

CONFIRM_DIR = "confirm"
RUNS_FILE = "runs.yaml"
TRACKING_FILE = "tracking.yaml"  # the trackers it started with: a resume keeps them
TABLE_FILE, REPORT_FILE = "confirm.parquet", "confirm.md"
DEFAULT_LABEL = "default"
EVAL_KEYS = ("test_knn_acc", "probe_top1", "probe_top5")
COMPARED_KEYS = ("test_knn_acc", "probe_top1")  # compared with the default recipe, seed by seed


@dataclass(frozen=True)
class ConfirmRequest:
    sweep: str
    top: int
    seeds: int
    epochs: int | None = None
    with_default: bool = False
    address: str | None = None
    verbose: bool = False
    max_concurrent: int | None = None  # runs at a time (default: what the cluster fits)
    tracking: TrackingSettings = field(default_factory=TrackingSettings)  # --log: a run per retrain and its test


@dataclass(frozen=True)
class ConfirmRun:
    """One retrain: the sweep trial it confirms (or the default recipe), its seed and its full config."""

    label: str
    seed: int
    params: dict[str, Any]
    config: dict[str, Any]


@dataclass(frozen=True)
class ConfirmResult:
    confirm_dir: str
    rows: list[dict[str, Any]]
    table: str  # confirm.md's text


def plan_runs(sweep: SweepRecord, top: int, seeds: int, epochs: int | None, with_default: bool) -> list[ConfirmRun]:
    """The K best finished trials by the validation metric, S fresh seeds each. Raises UsageError."""
    if top < 1 or seeds < 1:
        raise UsageError(f"--top and --seeds must be positive (got {top} and {seeds})")
    if epochs is not None and epochs < 1:
        raise UsageError(f"--epochs must be positive, not {epochs}")
    ranked = sorted(sweep.finished(), key=lambda t: t.value, reverse=True)
    if top > len(ranked):
        raise UsageError(f"--top {top} is more than the sweep's {len(ranked)} finished trial(s)")
    base = sweep.space.train_config({"method": sweep.space.method_choices()[0]}, sweep.data_dir)
    length = epochs or sweep.space.max_epochs(base)
    configs = [(t.trial_id, t.params) for t in ranked[:top]]
    if with_default:
        configs.append((DEFAULT_LABEL, {}))
    runs = []
    for label, params in configs:
        cfg = sweep.space.train_config(params, sweep.data_dir).to_yaml_dict()
        if label == DEFAULT_LABEL:  # the fixed settings over the recipe of the sweep's default method: nothing searched
            method = {"method": sweep.space.method_choices()[0]}  # as the sweep's try_default trial ran it
            cfg = build_config(sweep.space.base_layer(sweep.data_dir), method).to_yaml_dict()
        for i in range(seeds):
            final = retrain_config(cfg, i, length)
            runs.append(ConfirmRun(label, final.seed, dict(params), final.to_yaml_dict()))
    return runs


def retrain_config(cfg: dict[str, Any], index: int, epochs: int) -> TrainConfig:
    """Confirm run `index` of a config: the fresh seed `cfg`'s seed + 1 + index (no sweep trial used it), `epochs`
    long, measured on the test split (the whole train split trains), label-free metrics off."""
    fresh = {"monitor": "test", **dict.fromkeys(LABEL_FREE, False), "seed": int(cfg["seed"]) + 1 + index}
    return build_config(cfg, fresh | {"epochs": epochs})


def run_confirm(request: ConfirmRequest) -> ConfirmResult:
    sweep_dir = absolute(request.sweep)
    sweep = load_sweep(sweep_dir)
    runs = plan_runs(sweep, request.top, request.seeds, request.epochs, request.with_default)
    confirm_dir = join(sweep_dir, CONFIRM_DIR)
    asked = yaml.safe_dump([asdict(r) for r in runs], sort_keys=True)
    resume = exists(join(confirm_dir, RUNS_FILE))
    if resume and read_text(join(confirm_dir, RUNS_FILE)) != asked:
        raise UsageError(f"{confirm_dir} holds a confirm of other runs: move it away to start a new one")
    if resume and exists(join(confirm_dir, TRACKING_FILE)):
        saved = yaml.safe_load(read_text(join(confirm_dir, TRACKING_FILE)))
        check_resumed_trackers(saved, request.tracking, "a resumed confirm")

    from ray.tune import grid_search

    from ssl_tune.data.training import open_training_data
    from ssl_tune.tune.progress import ConfirmEvents
    from ssl_tune.tune.trackers import tune_callbacks
    from ssl_tune.tune.trial import TrialPlan
    from ssl_tune.tune.tuner import can_restore, new_tuner, restore_tuner

    plan = TrialPlan.from_space(sweep.space, sweep.data_dir, confirm_dir)
    parameters = {"configs": [r.config for r in runs]}
    with ray_cluster(request.address, request.verbose):
        if not resume:  # once connected: a cluster that refuses the driver leaves nothing behind
            write_text(join(confirm_dir, TRACKING_FILE), yaml.safe_dump(request.tracking.to_dict()))
            write_text(join(confirm_dir, RUNS_FILE), asked)
        if resume and can_restore(confirm_dir):
            print(f"resuming confirm {confirm_dir}")
            tuner = restore_tuner(confirm_trial, plan, confirm_dir, parameters)
        else:
            streamed = open_training_data(TrainConfig.model_validate(runs[0].config)).streamed
            fits, _ = concurrency(sweep.space.sweep, cluster_resources(), streamed)
            limit = request.max_concurrent or fits or len(runs)
            epochs = max(r.config["epochs"] for r in runs)
            names = [f"{_config_name(r.label)}, seed {r.seed}" for r in runs]
            events = [] if request.verbose else [ConfirmEvents(names, epochs)]  # a line per run event, not Ray's tables
            tracked = [{"label": r.label, "seed": r.seed, **r.config} for r in runs]
            trackers = tune_callbacks(request.tracking, sweep.name, "confirm", {}, epochs, configs=tracked)
            print(f"confirm: {len(runs)} runs ({request.top} configs x {request.seeds} seeds), up to {limit} at a time")
            tuner = new_tuner(  # each run's result.json, TensorBoard, and trial_end.json once it has ended
                confirm_trial,
                plan,
                confirm_dir,
                epochs=epochs,
                verbose=request.verbose,
                parameters=parameters,
                callbacks=[*events, *trackers],
                param_space={"run": grid_search(list(range(len(runs))))},
                max_concurrent_trials=min(limit, len(runs)),
                trial_dirname_creator=_run_name,
                trial_name_creator=_run_name,
            )
        results = tuner.fit()
    from ssl_tune.tune.worker import EVAL_PREFIX

    finished = {r.config["run"]: r.metrics for r in results if r.metrics and f"{EVAL_PREFIX}probe_top1" in r.metrics}
    if len(finished) < len(runs):
        raise Interrupted(
            f"confirm stopped with {len(finished)} of {len(runs)} runs evaluated; resume with the same command"
        )
    rows = []
    for i, run in enumerate(runs):
        metrics = finished[i]
        row = {"label": run.label, "seed": run.seed, "epochs": int(metrics["epoch"])}
        row["params"] = yaml.safe_dump(run.params).strip()
        rows.append(row | {k: float(metrics[f"{EVAL_PREFIX}{k}"]) for k in EVAL_KEYS})
    rows = with_default_differences(rows)
    table = markdown_table(rows, sweep.metric)
    _write_outputs(confirm_dir, rows, table)
    return ConfirmResult(confirm_dir, rows, table)


def confirm_trial(params: dict[str, Any], plan: Any, configs: list[dict[str, Any]]) -> None:
    """Tune trainable: one confirm run (a Ray Train run), ending with its test-split evaluation."""
    from ssl_tune.tune.trial import fit_train_run

    fit_train_run(TrainConfig.model_validate(configs[params["run"]]), plan, final_eval=True)


def _config_name(label: str) -> str:
    return "default recipe" if label == DEFAULT_LABEL else f"trial {label}"


def _run_name(trial: Any) -> str:
    return f"run-{trial.config['run']}-{trial.trial_id}"


def versus_default(rows: list[dict[str, Any]], label: str, key: str) -> PairedDifference | None:
    """Config `label` against the default recipe on `key`, paired by seed (the seeds both ran); None without the
    default, or for the default itself."""
    if label == DEFAULT_LABEL:
        return None
    default = {r["seed"]: r[key] for r in rows if r["label"] == DEFAULT_LABEL}
    config = {r["seed"]: r[key] for r in rows if r["label"] == label and r["seed"] in default}
    if not config:
        return None
    seeds = sorted(config)
    return paired_difference([config[s] for s in seeds], [default[s] for s in seeds])


def with_default_differences(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """confirm.parquet's rows, each with its difference from the default recipe's run of the same seed
    (`<key>_vs_default`), and its config's mean difference, 95 % interval and verdict (`<key>_vs_default_mean`,
    `_low`, `_high`, `_verdict`): null for the default recipe's rows, and all rows without --with-default."""
    defaults = {r["seed"]: r for r in rows if r["label"] == DEFAULT_LABEL}
    out = []
    for row in rows:
        row = dict(row)
        for key in COMPARED_KEYS:
            diff = versus_default(rows, row["label"], key)
            paired = diff is not None and row["seed"] in defaults
            row[f"{key}_vs_default"] = row[key] - defaults[row["seed"]][key] if paired else None
            for name in ("mean", "low", "high", "verdict"):
                row[f"{key}_vs_default_{name}"] = getattr(diff, name) if diff is not None else None
        out.append(row)
    return out


def markdown_table(rows: list[dict[str, Any]], metric: str) -> str:
    """Mean ± std (over seeds) of the test-split numbers per config, in %; the default recipe last."""
    labels = list(dict.fromkeys(r["label"] for r in rows))
    lines = [
        f"Test-split accuracy (%), mean ± std over seeds; configs ranked by the sweep's {metric}.",
        "",
        "| config | seeds | epochs | test kNN | linear probe top-1 | linear probe top-5 | params |",
        "|---|---|---|---|---|---|---|",
    ]
    for label in labels:
        group = [r for r in rows if r["label"] == label]
        cells = []
        for key in EVAL_KEYS:
            values = [100 * r[key] for r in group]
            std = statistics.stdev(values) if len(values) > 1 else 0.0
            cells.append(f"{statistics.mean(values):.2f} ± {std:.2f}")
        name = "default recipe" if label == DEFAULT_LABEL else f"trial {label}"
        params = group[0]["params"].replace("\n", "; ") if group[0]["params"] != "{}" else ""
        lines.append(f"| {name} | {len(group)} | {group[0]['epochs']} | {' | '.join(cells)} | {params} |")
    compared = {label: [versus_default(rows, label, key) for key in COMPARED_KEYS] for label in labels}
    compared = {label: diffs for label, diffs in compared.items() if None not in diffs}
    if compared:
        lines += [
            "",
            "Against the default recipe, seed by seed (config − default, same seeds): the mean difference and its 95 %",
            "paired t interval; better only when the interval excludes 0.",
            "",
            "| config | test kNN vs default | linear probe top-1 vs default |",
            "|---|---|---|",
        ]
        for label, diffs in compared.items():
            cells = [diff.describe() for diff in diffs]
            lines.append(f"| {_config_name(label)} | {' | '.join(cells)} |")
    return "\n".join(lines) + "\n"


def _write_outputs(confirm_dir: str, rows: list[dict[str, Any]], table: str) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from ssl_tune.storage import filesystem

    fs, root = filesystem(confirm_dir)
    with fs.open_output_stream(f"{root}/{TABLE_FILE}") as f:
        pq.write_table(pa.Table.from_pylist(rows), f)
    write_text(join(confirm_dir, REPORT_FILE), table)


__all__ = ["ConfirmRequest", "ConfirmResult", "plan_runs", "run_confirm"]
