"""The Python API: the CLI's commands as functions that take the same settings and return typed results.

    import ssl_tune

    result = ssl_tune.sweep("search_spaces/quickstart.yaml", storage="sweeps", settings={"num_samples": 4},
                            epochs=10)  # keyword overrides: the space's fixed settings, as `--set`
    print(result.best.trial_id, result.best.value, result.summary)
    best = ssl_tune.export(result, "runs/best")
    run = ssl_tune.train(best.out / "best.yaml", out="runs/retrain", epochs=20)
    print(run.final.val_knn_acc)
    print(ssl_tune.evaluate(run.out).probe_top1)  # also writes runs/retrain/eval.json

Settings may be a YAML path, a dict or the pydantic model (`TrainConfig`, `SearchSpace`). Bad settings raise
`ssl_tune.errors.UsageError` with the one-line message the CLI prints. `log=("mlflow",)` or `("wandb",)`
tracks the runs as `--log` does.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError

from ssl_tune.config import TrainConfig, build_config, deep_merge, describe_validation_error, read_yaml
from ssl_tune.engine.run_dir import DEFAULT_EXPERIMENT, TrainResult, saved_config
from ssl_tune.errors import UsageError
from ssl_tune.storage import absolute, check_bucket, is_uri, join, require_empty_output, split, write_text
from ssl_tune.tracking import RunIdentity, TrackingSettings, open_runs, read_record, write_record
from ssl_tune.tune.checks import SweepRequest
from ssl_tune.tune.space import SearchSpace, nest
from ssl_tune.tune.sweep import SweepResult

if TYPE_CHECKING:
    from ssl_tune.data.parquet import PackResult
    from ssl_tune.engine.evaluate import EvalResult
    from ssl_tune.tune.confirm import ConfirmResult
    from ssl_tune.tune.export import ExportResult

Settings = str | Path | Mapping[str, Any] | BaseModel
SweepDir = str | Path | SweepResult


def tracking(
    log: Sequence[str] = (),
    mlflow_uri: str | None = None,
    wandb_project: str | None = None,
    wandb_entity: str | None = None,
) -> TrackingSettings:
    """Checked tracker settings (the `--log`, `--mlflow-uri`, `--wandb-*` flags). Raises UsageError."""
    return TrackingSettings(tuple(log), mlflow_uri, wandb_project, wandb_entity).checked()


def _layer(settings: Settings | None, model: type[BaseModel]) -> dict[str, Any]:
    if settings is None:
        return {}
    if isinstance(settings, BaseModel):
        return settings.model_dump(mode="json")
    if isinstance(settings, str | Path):
        return read_yaml(settings)
    if isinstance(settings, Mapping):
        return dict(settings)
    raise UsageError(f"settings must be a YAML path, a dict or a {model.__name__}, not {type(settings).__name__}")


def _sweep_dir(sweep: SweepDir) -> str:
    return sweep.sweep_dir if isinstance(sweep, SweepResult) else str(sweep)


def train(
    config: Settings | list[Settings | None] | None = None,
    *,
    out: str | Path | None = None,
    resume: bool = False,
    force: bool = False,
    progress_bar: bool | None = None,
    log: Sequence[str] = (),
    mlflow_uri: str | None = None,
    wandb_project: str | None = None,
    wandb_entity: str | None = None,
    experiment: str = DEFAULT_EXPERIMENT,
    **overrides: Any,
) -> TrainResult:
    """Train one model, as `ssl-tune train`. The config is `config` (or a list of settings, later ones win), then
    `out` (its `out` key), then `overrides`: config keys, dotted for nested keys (e.g.
    `**{"method_params.temperature": 0.2}`). `resume=True` continues the run in `out`, over its saved config."""
    from ssl_tune.engine.run_dir import train as train_run

    trackers = tracking(log, mlflow_uri, wandb_project, wandb_entity)
    if resume and out is None:
        raise UsageError("--resume needs --out DIR (the run to continue)")
    base = saved_config(Path(str(out))) if resume else {}  # str(): `--set out=...` may give any YAML value
    out_key = {} if out is None else {"out": str(out) if isinstance(out, Path) else out}
    layers = [_layer(c, TrainConfig) for c in (config if isinstance(config, list) else [config])]
    cfg = build_config(base, *layers, out_key, nest(overrides))
    if cfg.out is None:
        raise UsageError("--out DIR is required (or 'out:' in the config)")
    return train_run(
        cfg, Path(cfg.out), resume=resume, force=force, progress_bar=progress_bar, tracking=trackers,
        experiment=experiment,
    )  # fmt: skip


def sweep(
    space: Settings | None = None,
    *,
    storage: str | Path = "sweeps",
    name: str | None = None,
    data_dir: str | Path | None = None,
    address: str | None = None,
    resume: bool = False,
    verbose: bool = False,
    settings: Mapping[str, Any] | None = None,
    asha: Mapping[str, Any] | None = None,
    fixed: Mapping[str, Any] | None = None,
    log: Sequence[str] = (),
    mlflow_uri: str | None = None,
    wandb_project: str | None = None,
    wandb_entity: str | None = None,
    **overrides: Any,
) -> SweepResult:
    """Run (or, with `resume=True` and `name`, continue) a sweep, as `ssl-tune sweep`.

    `settings` override the space's `sweep:` section (num_samples, max_concurrent, workers_per_trial, ...),
    `asha` its `asha:` section, and `fixed` then `overrides` its fixed settings (as `--set`; dotted keys nest).
    The sweep is named after the space's file, or `name` (required for a dict or a model)."""
    from ssl_tune.tune.sweep import run_sweep

    trackers = tracking(log, mlflow_uri, wandb_project, wandb_entity)
    space_path, model = None, None
    if isinstance(space, str | Path):
        space_path = str(space)
    elif space is not None:
        try:
            model = SearchSpace.model_validate(_layer(space, SearchSpace))
        except ValidationError as err:
            raise UsageError(f"search space: {describe_validation_error(err)}") from None
    request = SweepRequest(
        space_path=space_path,
        storage=str(storage),
        name=name,
        data_dir=str(data_dir) if data_dir is not None else None,
        address=address,
        resume=resume,
        sweep_settings=dict(settings or {}),
        asha_settings=dict(asha or {}),
        verbose=verbose,
        space=model,
        fixed_overrides=deep_merge(nest(dict(fixed or {})), nest(overrides)) if fixed or overrides else None,
        tracking=trackers,
    )
    return run_sweep(request)


def export(sweep: SweepDir, out: str | Path, *, force: bool = False) -> ExportResult:
    """Write a sweep's best config, its trials table and best backbone into `out`, as `ssl-tune export`."""
    from ssl_tune.tune.export import export as export_sweep

    return export_sweep(_sweep_dir(sweep), str(out), force=force)


def evaluate(
    run: str | Path | None = None,
    *,
    checkpoint: str | Path | None = None,
    sweep: SweepDir | None = None,
    data_dir: str | Path | None = None,
    device: str = "auto",
    log: Sequence[str] = (),
    mlflow_uri: str | None = None,
    wandb_project: str | None = None,
    wandb_entity: str | None = None,
) -> EvalResult:
    """Test-split kNN and linear probe of a `train` run, a `checkpoint` (a file or a Ray Train checkpoint folder)
    or a `sweep`'s best trial, as `ssl-tune eval`. Writes eval.json beside it (`eval_file` of the result) and,
    with `log`, adds the numbers to the tracker run that trained it (else to a new run)."""
    from ssl_tune.engine.evaluate import EVAL_FILE, evaluate_checkpoint

    trackers = tracking(log, mlflow_uri, wandb_project, wandb_entity)
    path, folder, identity = _eval_target(run, checkpoint, sweep)
    result = evaluate_checkpoint(path, None if data_dir is None else str(data_dir), device)
    out = join(folder, EVAL_FILE)
    write_text(out, json.dumps(result.to_dict(), indent=2) + "\n")
    if trackers:
        _track_eval(trackers, identity, result, folder)
    return replace(result, eval_file=out)


def _eval_target(
    run: str | Path | None, checkpoint: str | Path | None, sweep: SweepDir | None
) -> tuple[str, str, RunIdentity]:
    """The checkpoint to evaluate (a path or a URI), the folder its eval.json goes in, and the tracker run that
    its numbers belong to."""
    import uuid

    from ssl_tune.engine.checkpoint import checkpoint_file

    if sum(target is not None for target in (run, checkpoint, sweep)) != 1:
        raise UsageError("evaluate takes one of run=, checkpoint= or sweep=")
    if sweep is not None:
        from ssl_tune.tune.results import load_sweep

        found = load_sweep(absolute(_sweep_dir(sweep)))
        best = found.best()
        if not best.checkpoint:
            raise UsageError(f"the best trial {best.trial_id} of {_sweep_dir(sweep)} kept no checkpoint")
        # the trial's own tracker run: MLflow finds it by its trial-id tag, W&B by its id
        identity = RunIdentity(found.name, f"trial-{best.trial_id}", best.trial_id, "sweep")
        return best.checkpoint, best.trial_dir, identity
    given = absolute(str(run if run is not None else checkpoint))  # one of them
    check_bucket(given)
    path = checkpoint_file(given)
    folder = given if run is not None or path != given else split(given)[0]
    return path, folder, RunIdentity("ssl-tune", split(folder)[1], uuid.uuid4().hex[:12], "eval")


def _track_eval(trackers: TrackingSettings, identity: RunIdentity, result: EvalResult, folder: str) -> None:
    """Add the test-split numbers to the tracker run that trained the checkpoint (its folder's tracking.json,
    or a sweep trial's run), or to a new run."""
    previous = read_record(folder)
    local = None if is_uri(folder) else Path(folder)  # W&B's own files stay on a local disk
    runs = open_runs(trackers, identity, {"checkpoint": result.checkpoint}, previous, folder=local)
    values = {f"eval_{k}": getattr(result, k) for k in ("test_knn_acc", "probe_top1", "probe_top5")}  # as confirm
    for tracked in runs:
        tracked.log_metrics(values, step=result.epoch)
        tracked.end(None if previous.get(tracked.tracker) or identity.stage == "sweep" else "completed")
    write_record(folder, runs)


def confirm(
    sweep: SweepDir,
    *,
    top: int = 1,
    seeds: int = 3,
    epochs: int | None = None,
    with_default: bool = False,
    address: str | None = None,
    verbose: bool = False,
    max_concurrent: int | None = None,
    log: Sequence[str] = (),
    mlflow_uri: str | None = None,
    wandb_project: str | None = None,
    wandb_entity: str | None = None,
) -> ConfirmResult:
    """Retrain a sweep's `top` configs with `seeds` fresh seeds each and test them, as `ssl-tune confirm`."""
    from ssl_tune.tune.confirm import ConfirmRequest, run_confirm

    if max_concurrent is not None and max_concurrent <= 0:
        raise UsageError(f"--max-concurrent must be positive, not {max_concurrent}")
    trackers = tracking(log, mlflow_uri, wandb_project, wandb_entity)
    request = ConfirmRequest(
        _sweep_dir(sweep), top, seeds, epochs, with_default, address, verbose, max_concurrent, tracking=trackers
    )
    return run_confirm(request)


def pack(
    source: str,
    out: str | Path,
    *,
    data_dir: str | Path | None = None,
    shard_mb: float = 64.0,
    shard_size: int | None = None,
    image_size: int | None = None,
    train_subset: int | None = None,
    test_subset: int | None = None,
    skip_corrupt: bool = False,
    download: bool = False,
    force: bool = False,
) -> PackResult:
    """Write dataset `source` (both splits) as Parquet shards to `out`, a directory or a URI (s3://, gs://, ...),
    as `ssl-tune data pack`; train on it with dataset `parquet` and `data_dir=out`. An image folder is packed
    file by file (JPEG files as their own bytes); with `skip_corrupt` its files that do not decode are left
    out and counted. All input is checked before anything is written."""
    from ssl_tune.data import DATASETS, load_data
    from ssl_tune.data.imagefolder import DEFAULT_SIZE, list_folder
    from ssl_tune.data.parquet import (
        REPLACE_HINT,
        PackResult,
        ShardLimits,
        resolve_location,
        write_dataset,
        write_folder,
    )

    sources = [name for name in DATASETS if name != "parquet"]
    if source not in sources:
        raise UsageError(f"--source: {DATASETS.unknown(source, among=sources)}")
    positive = {
        "shard_size": shard_size,
        "image_size": image_size,
        "train_subset": train_subset,
        "test_subset": test_subset,
    }
    for flag, value in positive.items():
        if value is not None and value <= 0:
            raise UsageError(f"--{flag.replace('_', '-')} must be positive, not {value}")
    ShardLimits(shard_mb, shard_size)  # checks them
    if skip_corrupt and source != "imagefolder":
        raise UsageError("--skip-corrupt applies to --source imagefolder (other sources are checked as they load)")
    location = str(out)
    check_bucket(location)
    fs, root = resolve_location(location)
    require_empty_output(location, force=force, hint=REPLACE_HINT)  # before the (slow) read of the source
    common = {"shard_mb": shard_mb, "shard_size": shard_size, "force": force, "filesystem": fs}
    if source == "imagefolder":  # file by file: JPEG bytes kept, never the whole folder in memory
        if not data_dir:
            raise UsageError("dataset 'imagefolder' needs --data-dir")
        listing = list_folder(Path(data_dir).expanduser(), train_subset=train_subset, test_subset=test_subset)
        if listing.labeled_set is not None:
            raise UsageError(f"{data_dir} is a pool with a labeled set beside it: pack cannot keep the labeled set yet")
        size = image_size or DEFAULT_SIZE
        return write_folder(listing, root, image_size=size, skip_corrupt=skip_corrupt, **common)
    data = load_data(
        source, data_dir, download=download, image_size=image_size, train_subset=train_subset, test_subset=test_subset
    )
    return PackResult(write_dataset(data, root, source=source, **common), skipped=0)


__all__ = ["confirm", "evaluate", "export", "pack", "sweep", "tracking", "train"]
