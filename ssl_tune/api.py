"""The Python API: the CLI's commands as functions that take the same settings and return typed results.

    import ssl_tune

    result = ssl_tune.sweep("search_spaces/quickstart.yaml", storage="sweeps", settings={"num_samples": 4},
                            epochs=10)  # keyword overrides: the space's fixed settings, as `--set`
    print(result.best.trial_id, result.best.best_value, result.summary)
    best = ssl_tune.export(result, "runs/best")
    run = ssl_tune.train(best.out / "best.yaml", out="runs/retrain", epochs=20)
    print(run.final.val_knn_acc)

Settings may be a YAML path, a dict or the pydantic model (`TrainConfig`, `SearchSpace`). Bad settings raise
`ssl_tune.errors.UsageError` with the one-line message the CLI prints. `log=("mlflow",)` or `("wandb",)`
tracks the runs as `--log` does.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError

from ssl_tune.config import TrainConfig, build_config, describe_validation_error, read_yaml
from ssl_tune.engine.run_dir import DEFAULT_EXPERIMENT, TrainResult, saved_config
from ssl_tune.errors import UsageError
from ssl_tune.tracking import TrackingSettings
from ssl_tune.tune.space import SearchSpace, nest
from ssl_tune.tune.sweep import SweepRequest, SweepResult

if TYPE_CHECKING:
    from ssl_tune.tune.confirm import ConfirmResult
    from ssl_tune.tune.export import ExportResult

Settings = str | Path | Mapping[str, Any] | BaseModel


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


def train(
    config: Settings | None = None,
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
    """Train one model, as `ssl-tune train`. `overrides` are config keys (dotted for nested keys, e.g.
    `**{"method_params.temperature": 0.2}`) over `config`; `resume=True` continues the run in `out`."""
    from ssl_tune.engine.run_dir import train as train_run

    trackers = tracking(log, mlflow_uri, wandb_project, wandb_entity)
    base = saved_config(Path(out)) if resume and out is not None else {}
    cfg = build_config(base, _layer(config, TrainConfig), nest(overrides))
    where = out if out is not None else cfg.out
    if where is None:
        raise UsageError("out= is required (or 'out' in the config)")
    if resume and out is None:
        raise UsageError("resume=True needs out= (the run to continue)")
    return train_run(
        cfg, Path(where), resume=resume, force=force, progress_bar=progress_bar, tracking=trackers,
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
        fixed_overrides={**nest(dict(fixed or {})), **nest(overrides)} if fixed or overrides else None,
        tracking=trackers,
    )
    return run_sweep(request)


def export(sweep: str | Path | SweepResult, out: str | Path, *, force: bool = False) -> ExportResult:
    """Write a sweep's best config, its trials table and best backbone into `out`, as `ssl-tune export`."""
    from ssl_tune.tune.export import export as export_sweep

    sweep_dir = sweep.sweep_dir if isinstance(sweep, SweepResult) else str(sweep)
    return export_sweep(sweep_dir, Path(out), force=force)


def confirm(
    sweep: str | Path | SweepResult,
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

    trackers = tracking(log, mlflow_uri, wandb_project, wandb_entity)
    sweep_dir = sweep.sweep_dir if isinstance(sweep, SweepResult) else str(sweep)
    if max_concurrent is not None and max_concurrent <= 0:
        raise UsageError(f"max_concurrent must be positive, not {max_concurrent}")
    request = ConfirmRequest(
        sweep_dir, top, seeds, epochs, with_default, address, verbose, max_concurrent, tracking=trackers
    )
    return run_confirm(request)


__all__ = ["confirm", "export", "sweep", "tracking", "train"]
