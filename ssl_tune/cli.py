"""The `ssl-tune` command line. Each subcommand validates its input before it writes anything. Those of the
Python API (train, sweep, export, eval, confirm, data pack) parse their flags, call `ssl_tune.api`, which checks
them, and print its results."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ssl_tune import __version__
from ssl_tune.errors import Interrupted, TrainingStopped, UsageError
from ssl_tune.metrics import format_metric
from ssl_tune.storage import join


class _Parser(argparse.ArgumentParser):
    """argparse that reports errors as one line with exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message}\n")


# flag -> config key for the options that `train` takes directly (all may also come from --config)
TRAIN_FLAGS: dict[str, tuple[str, type]] = {
    "--method": ("method", str),
    "--backbone": ("backbone", str),
    "--dataset": ("dataset", str),
    "--data-dir": ("data_dir", str),
    "--epochs": ("epochs", int),
    "--batch-size": ("batch_size", int),
    "--lr": ("lr", float),
    "--optimizer": ("optimizer", str),
    "--train-subset": ("train_subset", int),
    "--test-subset": ("test_subset", int),
    "--image-size": ("image_size", int),
    "--precision": ("precision", str),
    "--device": ("device", str),
    "--seed": ("seed", int),
    "--out": ("out", str),
}


def _add_set(p: argparse.ArgumentParser, help: str) -> None:
    """The repeatable `--set KEY=VALUE` (read by `config.parse_set`)."""
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help=help)


def _add_tracking(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--log",
        dest="trackers",
        action="append",
        default=[],
        metavar="TRACKER",
        help="also track the runs in mlflow or wandb (repeatable; pip install 'ssl-tune[mlflow]' / '[wandb]')",
    )
    p.add_argument(
        "--mlflow-uri", help="MLflow tracking URI or folder (default $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db)"
    )
    p.add_argument("--wandb-project", help="W&B project (default $WANDB_PROJECT, else ssl-tune)")
    p.add_argument("--wandb-entity", help="W&B entity (default $WANDB_ENTITY)")


def _tracking(args: argparse.Namespace) -> dict[str, Any]:
    """The tracking flags as the API's keywords (the API checks them)."""
    return {"log": args.trackers, "mlflow_uri": args.mlflow_uri, "wandb_project": args.wandb_project,
            "wandb_entity": args.wandb_entity}  # fmt: skip


def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train one SSL model, with a kNN accuracy per epoch",
        description="Train one SSL model. Options may also come from --config FILE.yaml.",
    )
    for flag, (key, typ) in TRAIN_FLAGS.items():
        p.add_argument(flag, dest=key, type=typ, default=None, metavar=key.upper())
    p.add_argument("--download", action="store_true", default=None, help="download the dataset if missing")
    p.add_argument("--config", type=Path, help="YAML file of config keys")
    _add_set(p, "override a config key (dotted for nested keys, e.g. method_params.temperature=0.2)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.add_argument("--force", action="store_true", help="overwrite a non-empty --out")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--experiment", default="ssl-tune", help="the MLflow experiment / W&B group (default ssl-tune)")
    _add_tracking(p)
    p.set_defaults(handler=_run_train)


def _run_train(args: argparse.Namespace) -> int:
    from ssl_tune import api
    from ssl_tune.config import parse_set

    keys = {key: getattr(args, key) for key, _ in TRAIN_FLAGS.values() if getattr(args, key) is not None}
    if args.download:
        keys["download"] = True
    keys.update(parse_set(args.overrides))  # --set over the flags (which are all top-level keys)
    out = keys.pop("out", None)  # --out, or --set out=...
    result = api.train(
        [args.config, keys], out=out, resume=args.resume, force=args.force,
        progress_bar=False if args.no_progress else None, experiment=args.experiment, **_tracking(args),
    )  # fmt: skip
    knn = result.final.knn()
    shown = format_metric(*knn) if knn else "no kNN (unlabeled data)"
    print(f"done: {shown} after {result.final.epoch} epochs -> {result.out}")
    return 0


def _add_sweep(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "sweep",
        help="search hyperparameters with Ray Tune + Optuna, ASHA on kNN accuracy",
        description="Search a method's hyperparameters on a Ray cluster (local by default).",
    )
    p.add_argument("--space", help="search-space YAML (search_spaces/*.yaml)")
    p.add_argument("--num-samples", type=int, help="number of trials")
    p.add_argument("--max-concurrent", type=int, help="trials at a time (default: what the cluster fits)")
    p.add_argument("--workers-per-trial", type=int, help="Ray Train workers (DDP ranks) per trial")
    p.add_argument("--gpus-per-trial", type=float, help="GPUs per trial; fractions pack trials on one GPU")
    p.add_argument("--cpus-per-worker", type=float, help="CPUs per Ray Train worker")
    p.add_argument("--max-failures", type=int, help="restarts of a trial after worker or driver failures")
    p.add_argument(
        "--metric",
        help="what to select on: val_knn_acc (labeled data; the default), or one that needs no labels: rankme (the "
        "default on unlabeled data), lidar, alpha_req (α's distance from a band)",
    )
    p.add_argument(
        "--rank-across-methods",
        action="store_true",
        default=None,
        help="select on a label-free metric although the space draws several methods (they rank runs of one)",
    )
    p.add_argument("--searcher", choices=["tpe", "random"], help="Optuna's TPE (the default) or random search")
    p.add_argument(
        "--early-stopping", choices=["asha", "none"], help="asha (the default) or none: every trial runs out"
    )
    p.add_argument("--budget-epochs", type=int, help="stop the sweep once its trials trained this many epochs")
    p.add_argument("--budget-seconds", type=float, help="stop the sweep once its trials spent this many trial-seconds")
    p.add_argument("--grace-period", type=int, help="ASHA: epochs before a trial can be stopped")
    p.add_argument("--reduction-factor", type=float, help="ASHA: keep 1/r of the trials at each rung")
    p.add_argument(
        "--max-epochs", type=int, help="the trials' length in epochs (their schedules end with it; ASHA's max_t)"
    )
    p.add_argument("--storage", default="sweeps", help="local dir or s3://, gs:// URI (default: ./sweeps)")
    p.add_argument("--name", help="sweep name (default: the space file's name)")
    p.add_argument("--data-dir", help="dataset directory for every trial")
    p.add_argument("--address", help="Ray cluster address (default: start a local cluster)")
    _add_set(p, "override a fixed setting of the space, e.g. epochs=20")
    p.add_argument("--resume", action="store_true", help="continue an interrupted sweep (--name, --storage)")
    p.add_argument("--verbose", action="store_true", help="show the Ray workers' logs")
    _add_tracking(p)
    p.set_defaults(handler=_run_sweep)


def _run_sweep(args: argparse.Namespace) -> int:
    from ssl_tune import api
    from ssl_tune.config import parse_set

    result = api.sweep(
        args.space,
        storage=args.storage,
        name=args.name,
        data_dir=args.data_dir,
        address=args.address,
        resume=args.resume,
        fixed=parse_set(args.overrides),
        verbose=args.verbose,
        **_tracking(args),
        settings={
            "num_samples": args.num_samples,
            "max_concurrent": args.max_concurrent,
            "workers_per_trial": args.workers_per_trial,
            "gpus_per_trial": args.gpus_per_trial,
            "cpus_per_worker": args.cpus_per_worker,
            "max_failures": args.max_failures,
            "metric": args.metric,
            "rank_across_methods": args.rank_across_methods,
            "searcher": args.searcher,
            "early_stopping": args.early_stopping,
            "budget_epochs": args.budget_epochs,
            "budget_seconds": args.budget_seconds,
        },
        asha={
            "grace_period": args.grace_period,
            "reduction_factor": args.reduction_factor,
            "max_epochs": args.max_epochs,
        },
    )
    print()
    print("\n".join(result.summary))
    print(f"{result.trials} trials, {result.errors} errors, in {result.sweep_dir}")
    if result.out_of_memory:
        print(
            f"{result.out_of_memory} trials ran out of device memory and were not retried: lower batch_size or pack"
            " fewer trials per GPU (sweep.gpus_per_trial); each trial's log has its batch and packing"
        )
    print("next:")
    print(f"  tensorboard --logdir {result.sweep_dir}")
    print(f"  ssl-tune export --sweep {result.sweep_dir} --out best/")
    print(f"  ssl-tune confirm --sweep {result.sweep_dir} --top 1 --seeds 3 --with-default")
    return 0


def _add_export(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="write a sweep's best config, a table of its trials and the best checkpoint")
    p.add_argument("--sweep", required=True, help="the sweep directory (<storage>/<name>)")
    p.add_argument("--out", required=True, help="where to write best.yaml and trials.parquet (a folder or a URI)")
    p.add_argument("--force", action="store_true", help="overwrite a non-empty --out")
    p.set_defaults(handler=_run_export)


def _run_export(args: argparse.Namespace) -> int:
    from ssl_tune import api

    done = api.export(args.sweep, args.out, force=args.force)
    best = done.best
    shown = format_metric(best.metric, best.value)
    print(f"best trial {best.trial_id}: {shown} ({best.epochs_run} epochs) {best.params}")
    print(f"wrote {join(done.out, 'best.yaml')}, {join(done.out, 'trials.parquet')} ({done.trials} trials)")
    print(f"best checkpoint: {done.checkpoint or '(not retained)'}")
    print(f"retrain: ssl-tune train --config {join(done.out, 'best.yaml')} --out runs/best")
    return 0


def _add_eval(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval",
        help="test-split kNN and linear probe of a run, a checkpoint, or a sweep's best trial; writes eval.json",
        description="Evaluate a trained backbone on the test split: weighted kNN (k=200, T=0.1, the whole train "
        "split as the bank) and a linear probe on frozen features (weight decay chosen on the validation split). "
        "Writes eval.json beside the run.",
    )
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("--run", help="an `ssl-tune train` run directory (a folder or a URI)")
    target.add_argument("--checkpoint", help="a checkpoint file or a Ray Train checkpoint folder (or their URI)")
    target.add_argument("--sweep", help="a sweep directory: its best trial's best checkpoint")
    p.add_argument("--data-dir", help="where the dataset is now (default: as the run had it)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    _add_tracking(p)
    p.set_defaults(handler=_run_eval)


def _run_eval(args: argparse.Namespace) -> int:
    from ssl_tune import api

    result = api.evaluate(
        args.run, checkpoint=args.checkpoint, sweep=args.sweep, data_dir=args.data_dir, device=args.device,
        **_tracking(args),
    )  # fmt: skip
    print(
        f"test kNN {100 * result.test_knn_acc:.2f}%, linear probe top-1 {100 * result.probe_top1:.2f}% "
        f"top-5 {100 * result.probe_top5:.2f}% (weight decay {result.probe_weight_decay:g}), "
        f"{result.train_images} train / {result.test_images} test images, epoch {result.epoch}, "
        f"{result.seconds:.1f} s -> {result.eval_file}"
    )
    return 0


def _add_confirm(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "confirm",
        help="retrain a sweep's top configs with fresh seeds and evaluate them on the test split",
        description="Retrain the K best trials of a sweep (by its validation metric) with S fresh seeds each, on "
        "the whole train split, as Ray Train runs; evaluate each on the test split (kNN and linear probe); write "
        "<sweep>/confirm/confirm.parquet and confirm.md. Run the same command again to resume.",
    )
    p.add_argument("--sweep", required=True, help="the sweep directory (<storage>/<name>)")
    p.add_argument("--top", type=int, required=True, help="how many of the best trials (K)")
    p.add_argument("--seeds", type=int, required=True, help="fresh seeds per config (S)")
    p.add_argument("--epochs", type=int, help="epochs per run (default: the sweep's full length)")
    p.add_argument("--with-default", action="store_true", help="also run the method's default recipe")
    p.add_argument("--max-concurrent", type=int, help="runs at a time (default: what the cluster fits)")
    p.add_argument("--address", help="Ray cluster address (default: start a local cluster)")
    p.add_argument("--verbose", action="store_true", help="show the Ray workers' logs")
    _add_tracking(p)
    p.set_defaults(handler=_run_confirm)


def _run_confirm(args: argparse.Namespace) -> int:
    from ssl_tune import api

    result = api.confirm(
        args.sweep, top=args.top, seeds=args.seeds, epochs=args.epochs, with_default=args.with_default,
        address=args.address, verbose=args.verbose, max_concurrent=args.max_concurrent, **_tracking(args),
    )  # fmt: skip
    print(f"\n{result.table}")
    print(f"wrote {len(result.rows)} runs to {result.confirm_dir}")
    return 0


def _add_report(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report",
        help="plot a finished sweep into PNGs and one self-contained HTML page",
        description="Plot a finished sweep: kNN accuracy per epoch of every trial, best kNN against each searched "
        "parameter, Optuna's parameter importances, and the best config, as PNGs and one HTML page.",
    )
    p.add_argument("--sweep", required=True, help="the sweep directory (<storage>/<name>)")
    p.add_argument("--out", required=True, help="where to write report.html and the PNGs (a folder or a URI)")
    p.add_argument("--force", action="store_true", help="replace a non-empty --out")
    p.set_defaults(handler=_run_report)


def _run_report(args: argparse.Namespace) -> int:
    from ssl_tune.tune.report import HTML_FILE, report

    done = report(args.sweep, args.out, force=args.force)
    shown = format_metric(done.best.metric, done.best.value)
    print(f"best trial {done.best.trial_id}: {shown} of {done.trials} trials")
    print(f"wrote {', '.join(done.files)} to {done.out}")
    print(f"open: {join(done.out, HTML_FILE)}")
    return 0


# the benchmarks, `ssl-tune bench NAME`: (help, description)
BENCHMARKS: dict[str, tuple[str, str]] = {
    "pipeline": (
        "throughput of our device-side pipeline vs a torchvision DataLoader baseline, and the kNN share",
        "Time our pipeline (uint8 data on the device, batched per-sample views) against a conventional one "
        "(torchvision.transforms.v2 per image in DataLoader workers) feeding the same model, loss and optimiser; "
        "time one kNN evaluation against an epoch; optionally K packed trainings on one device.",
    ),
    "sweep": (
        "start-up, efficiency and trials/hour of a small sweep, against Ray Train per trial",
        "Run one fixed small sweep (the quickstart space by default) on a local Ray cluster with trials in reused "
        "processes, then the same sweep with a Ray Train worker group per trial (the baseline), and report each "
        "trial's start-up, the sweep efficiency (epoch time summed over trials / (wall x slots)) and trials per "
        "hour, read from the sweeps' own files.",
    ),
    "search": (
        "search quality: random search, TPE and TPE + ASHA against the default recipe, at equal compute",
        "For one method, run random search, TPE and TPE + ASHA with the same budget (epochs summed over trials), "
        "each selecting on the validation split; confirm each best config and the default recipe with fresh seeds "
        "on the test split; report mean +- std test kNN and linear probe, the compute, and the Spearman "
        "correlation between ASHA's rungs and the last epoch. Resumes when run again with the same --out.",
    ),
}


def _add_bench(sub: argparse._SubParsersAction) -> None:
    """`bench pipeline|sweep|search`. Plain `bench FLAGS` is `bench pipeline FLAGS`, and `bench-sweep` and
    `bench-search` are `bench sweep` and `bench search`: the names they had before the group."""
    arguments = {"pipeline": _bench_pipeline_args, "sweep": _bench_sweep_args, "search": _bench_search_args}
    description = (
        BENCHMARKS["pipeline"][1]
        + " `bench FLAGS` is `bench pipeline FLAGS`; the others: `bench sweep`, `bench search`."
    )
    bench = sub.add_parser("bench", help="benchmarks: pipeline (the default), sweep, search", description=description)
    _bench_pipeline_args(bench)
    kinds = bench.add_subparsers(dest="benchmark", metavar="BENCHMARK", parser_class=_Parser)  # not required
    for name, add_arguments in arguments.items():
        summary, description = BENCHMARKS[name]
        add_arguments(kinds.add_parser(name, help=summary, description=description))
    for name in ("sweep", "search"):
        alias = sub.add_parser(f"bench-{name}", help=f"the same as `bench {name}`", description=BENCHMARKS[name][1])
        arguments[name](alias)


def _bench_pipeline_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--method", default="simsiam", help="a registered method (default simsiam)")
    p.add_argument("--backbone", default="resnet_tiny", help="default resnet_tiny")
    p.add_argument("--batch-size", type=int, default=256, help="default 256")
    p.add_argument("--steps", type=int, default=30, help="timed steps per pipeline (default 30)")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps before them (default 3)")
    p.add_argument("--device", default="auto", help="cpu, cuda or auto (default)")
    p.add_argument("--dataset", default="synthetic", help="synthetic (default), cifar10, ...")
    p.add_argument("--data-dir", help="dataset directory")
    p.add_argument("--train-subset", type=int, help="use the first N training images")
    p.add_argument("--test-subset", type=int, help="use the first N test images (kNN)")
    p.add_argument("--workers", type=int, help="baseline DataLoader workers (default min(4, CPUs))")
    p.add_argument("--packed", type=int, default=0, metavar="K", help="also time 1..K concurrent trainings")
    p.add_argument("--repeats", type=int, default=1, help="alternate the two pipelines R times, report medians")
    p.add_argument("--seed", type=int, default=0)
    _add_set(p, "override a run-config key (dotted for nested keys)")
    p.add_argument(
        "--streamed",
        action="store_true",
        help="parquet data: the decode rate of the streamed shards, and training img/s streamed vs in memory",
    )
    p.add_argument("--json", type=Path, help="write the results as JSON to this file")
    p.set_defaults(handler=_run_bench)


def _run_bench(args: argparse.Namespace) -> int:
    from dataclasses import fields

    from ssl_tune.tools.bench import BenchRequest, check_request, format_report, run_bench, write_json

    names = [f.name for f in fields(BenchRequest) if f.name != "overrides"]
    if args.streamed and args.packed:
        raise UsageError("--streamed and --packed measure different things: pass one")
    request = BenchRequest(**{k: getattr(args, k) for k in names}, overrides=tuple(args.overrides))
    cfg = check_request(request)
    if args.json is not None and not args.json.parent.is_dir():
        raise UsageError(f"--json {args.json}: directory {args.json.parent} does not exist")
    if args.streamed:
        from ssl_tune.tools.bench import format_stream_report, run_stream_bench

        result = run_stream_bench(request, cfg)
        print(format_stream_report(result))
    else:
        result = run_bench(request, cfg)
        print(format_report(result))
    if args.json is not None:
        write_json(result, args.json)
        print(f"wrote {args.json}")
    return 0


def _bench_sweep_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--space", default="search_spaces/quickstart.yaml", help="default search_spaces/quickstart.yaml")
    p.add_argument("--data-dir", help="dataset directory (the space's if_data_dir applies)")
    p.add_argument("--num-samples", type=int, help="trials per sweep (default: the space's)")
    p.add_argument("--grace-period", type=int, help="ASHA's first rung (= the epochs: no early stopping)")
    p.add_argument("--no-baseline", dest="baseline", action="store_false", help="skip the Ray Train baseline")
    p.add_argument("--storage", help="keep the sweeps here (default: a temporary folder, removed after)")
    _add_set(p, "override a fixed setting of the space")
    p.add_argument("--json", type=Path, help="write the results as JSON to this file")
    p.set_defaults(handler=_run_bench_sweep)


def _run_bench_sweep(args: argparse.Namespace) -> int:
    from ssl_tune.tools.bench_sweep import BenchSweepRequest, format_report, run_bench_sweep, write_json

    if args.json is not None and not args.json.parent.is_dir():
        raise UsageError(f"--json {args.json}: directory {args.json.parent} does not exist")
    if args.num_samples is not None and args.num_samples < 1:
        raise UsageError(f"--num-samples {args.num_samples}: must be at least 1")
    request = BenchSweepRequest(
        space=args.space,
        data_dir=args.data_dir,
        num_samples=args.num_samples,
        baseline=args.baseline,
        storage=args.storage,
        overrides=tuple(args.overrides),
        asha={"grace_period": args.grace_period},
    )
    timings = run_bench_sweep(request)
    print(format_report(timings))
    if args.json is not None:
        write_json(timings, str(args.json))
        print(f"wrote {args.json}")
    return 0


def _bench_search_args(p: argparse.ArgumentParser) -> None:
    from ssl_tune.tools.bench_search import PRESETS, STRATEGIES

    p.add_argument("--method", required=True, help="the method (its <preset>/<method>.yaml space)")
    p.add_argument(
        "--preset", default="cpu", choices=sorted(PRESETS), help="cpu (default), shifted (grey 16 px CIFAR) or gpu"
    )
    p.add_argument("--data-dir", help="dataset directory (the folder holding cifar-10-batches-py)")
    p.add_argument("--out", required=True, help="the benchmark's folder: sweeps, state and report")
    p.add_argument("--strategies", default=",".join(STRATEGIES), help=f"default {','.join(STRATEGIES)}")
    p.add_argument("--budget-trials", type=int, help="budget in whole trials (x the space's epochs)")
    p.add_argument("--budget-seconds", type=float, help="budget in trial-seconds (start-up, evaluation, training)")
    p.add_argument("--seeds", type=int, help="confirm seeds per config (default: the preset's, 3; shifted: 5)")
    p.add_argument("--space", help="a search space instead of the preset's <method>.yaml")
    _add_set(p, "override a fixed setting of the space")
    p.add_argument("--address", help="Ray cluster address (default: $RAY_ADDRESS, else a local cluster)")
    p.add_argument("--verbose", action="store_true", help="Ray's own progress output")
    p.set_defaults(handler=_run_bench_search)


def _run_bench_search(args: argparse.Namespace) -> int:
    from ssl_tune.tools.bench_search import SearchBenchRequest, check_request, format_report, run_search_bench

    request = SearchBenchRequest(
        method=args.method,
        out=args.out,
        preset=args.preset,
        data_dir=args.data_dir,
        strategies=tuple(s.strip() for s in args.strategies.split(",") if s.strip()),
        budget_trials=args.budget_trials,
        budget_seconds=args.budget_seconds,
        seeds=args.seeds,
        overrides=tuple(args.overrides),
        space=args.space,
        address=args.address,
        verbose=args.verbose,
    )
    check_request(request)
    report = run_search_bench(request)
    print(format_report(report), end="")
    print(f"wrote {Path(args.out) / 'search_quality.md'} and search_quality.json")
    return 0


def _command_group(sub: argparse._SubParsersAction, name: str, help: str) -> argparse._SubParsersAction:
    """A command with subcommands of its own, e.g. `ssl-tune cluster check`."""
    group = sub.add_parser(name, help=help)
    return group.add_subparsers(dest=f"{name}_command", metavar="COMMAND", parser_class=_Parser, required=True)


def _add_cluster(sub: argparse._SubParsersAction) -> None:
    commands = _command_group(sub, "cluster", "check cluster files (ray up YAMLs, KubeRay manifests)")
    check = commands.add_parser(
        "check",
        help="validate cluster files offline, before they cost money",
        description="Validate `ray up` YAMLs with Ray's own offline config validation, and KubeRay RayCluster / "
        "RayJob manifests field by field, against the rules ssl-tune needs; with --space, also that the worker "
        "types can run one trial of that search space. Exit 2 if any file has an error.",
    )
    check.add_argument("files", nargs="+", type=Path, metavar="FILE", help="ray up YAMLs and KubeRay manifests")
    check.add_argument("--space", help="a search-space YAML: the cluster must fit one trial of it (its sweep section)")
    check.add_argument("--workers-per-trial", type=int, help="override the space's workers_per_trial")
    check.add_argument("--gpus-per-trial", type=float, help="override the space's gpus_per_trial")
    check.add_argument("--cpus-per-worker", type=float, help="override the space's cpus_per_worker")
    check.set_defaults(handler=_run_cluster_check)


def _run_cluster_check(args: argparse.Namespace) -> int:
    from ssl_tune.tools.cluster_check import check_file, trial_shape

    shape = (args.workers_per_trial, args.gpus_per_trial, args.cpus_per_worker)
    trial = None
    if args.space is not None or any(v is not None for v in shape):
        trial = trial_shape(args.space, *shape)
    failed = False
    for path in args.files:
        report = check_file(path, trial)
        for message in report.errors:
            print(f"{path}: error: {message}", file=sys.stderr)
        for message in report.warnings:
            print(f"{path}: warning: {message}", file=sys.stderr)
        if report.errors:
            failed = True
        else:
            fits = f"; fits a trial of {trial.describe()}" if trial else ""
            for cluster in report.clusters:
                print(f"{path}: ok: {cluster.describe()}{fits}")
    return 2 if failed else 0


def _add_data(sub: argparse._SubParsersAction) -> None:
    commands = _command_group(sub, "data", "prepare datasets (Parquet shards for clusters)")
    pack = commands.add_parser(
        "pack",
        help="write a dataset as Parquet shards to a directory or bucket",
        description="Write a dataset (both splits; an unlabeled folder: its images, label -1) as Parquet shards "
        "of images, labels and indices, to a directory or a URI (s3://, gs://, abfs://): JPEG files as their own "
        "bytes, any other image as PNG. Train on it with --dataset parquet --data-dir OUT.",
    )
    pack.add_argument("--source", required=True, help="the dataset to pack: cifar10, cifar100, imagefolder, ...")
    pack.add_argument("--data-dir", help="where the source dataset lives")
    pack.add_argument("--out", required=True, help="a directory or URI for the shards")
    pack.add_argument("--shard-mb", type=float, default=64.0, help="target shard size in MiB (default 64)")
    pack.add_argument("--shard-size", type=int, help="also at most N images per shard")
    pack.add_argument(
        "--image-size",
        type=int,
        help="the side images are stored at (imagefolder: decoded to it, default 96; others: resized)",
    )
    pack.add_argument("--train-subset", type=int, help="pack only the first N training images")
    pack.add_argument("--test-subset", type=int, help="pack only the first N test images")
    pack.add_argument("--skip-corrupt", action="store_true", help="imagefolder: leave out files that do not decode")
    pack.add_argument("--download", action="store_true", help="download the source dataset if missing")
    pack.add_argument("--force", action="store_true", help="replace the contents of a non-empty --out")
    pack.set_defaults(handler=_run_data_pack)
    check = commands.add_parser(
        "check",
        help="check a packed dataset: every shard's schema and rows, every image decoded",
        description="Check every shard that dataset.json lists (present, schema, row count, indices) and decode "
        "every image. Prints a summary line and exits 0, or prints each corrupt row and exits 2.",
    )
    check.add_argument("location", help="a directory or URI made by `ssl-tune data pack`")
    check.set_defaults(handler=_run_data_check)


def _run_data_pack(args: argparse.Namespace) -> int:
    from ssl_tune import api

    done = api.pack(
        args.source, args.out, data_dir=args.data_dir, shard_mb=args.shard_mb, shard_size=args.shard_size,
        image_size=args.image_size, train_subset=args.train_subset, test_subset=args.test_subset,
        skip_corrupt=args.skip_corrupt, download=args.download, force=args.force,
    )  # fmt: skip
    manifest = done.manifest
    counts = {split: (sum(s.rows for s in shards), len(shards)) for split, shards in manifest.splits.items()}
    encoding = manifest.to_json()["encoding"]
    line = f"packed {args.source} ({manifest.image_size}px, {encoding}): {counts['train'][0]} train images in "
    line += f"{counts['train'][1]} shard{'s' if counts['train'][1] != 1 else ''}"
    line += f", {counts['test'][0]} test images in {counts['test'][1]}" if manifest.labeled else " (unlabeled)"
    if args.skip_corrupt:
        line += f", skipped {done.skipped} corrupt file{'s' if done.skipped != 1 else ''}"
    print(f"{line} -> {args.out}")
    return 0


def _run_data_check(args: argparse.Namespace) -> int:
    from ssl_tune.data.parquet import check_dataset

    report = check_dataset(args.location)
    for bad in report.bad:
        print(f"corrupt: {bad}")
    if report.bad:
        raise UsageError(
            f"{args.location}: {len(report.bad)} corrupt image{'s' if len(report.bad) != 1 else ''}, the first: "
            f"{report.bad[0]} (training with skip_corrupt: true leaves them out)"
        )
    print(f"ok: {report.summary(args.location)}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="ssl-tune", description="Hyperparameter search for self-supervised image models.")
    parser.add_argument("--version", action="version", version=f"ssl-tune {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    _add_train(sub)
    _add_sweep(sub)
    _add_export(sub)
    _add_eval(sub)
    _add_confirm(sub)
    _add_report(sub)
    _add_cluster(sub)
    _add_data(sub)
    _add_bench(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    try:
        return args.handler(args)
    except UsageError as err:
        print(f"ssl-tune {args.command}: error: {err}", file=sys.stderr)
        return 2
    except TrainingStopped as err:
        print(f"ssl-tune {args.command}: {err}", file=sys.stderr)
        return 1
    except Interrupted as err:
        print(f"ssl-tune {args.command}: interrupted: {err}", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print(f"ssl-tune {args.command}: interrupted", file=sys.stderr)
        return 130
