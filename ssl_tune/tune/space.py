"""Search-space files (search_spaces/*.yaml): validation, and the Optuna define-by-run function.

A file has four sections:

    fixed:        TrainConfig keys held constant (nested or dotted), e.g. method, backbone, epochs
    params:       dotted TrainConfig key -> distribution, searched in every trial
    conditional:  method name -> {key -> distribution}, searched only when that method is drawn
    if_data_dir:  keys applied when the sweep is given --data-dir (e.g. switch synthetic -> cifar10)
    points_to_evaluate: parameter values to try first (e.g. a paper's recipe); unnamed ones are sampled
    asha:         grace_period, reduction_factor, max_epochs (defaults: 1, 2, fixed epochs); max_epochs is the
                  trials' length: it sets their `epochs`, so their lr and momentum schedules end with it
    sweep:        num_samples, max_concurrent, workers_per_trial, gpus_per_trial, cpus_per_worker, max_failures,
                  searcher (tpe|random), early_stopping (asha|none), budget_epochs, budget_seconds, try_default, ...

A distribution is `{type: loguniform|uniform|int|categorical, low, high, step, log, choices}`.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ssl_tune.config import (
    MAX_EPOCHS,
    TrainConfig,
    build_config,
    deep_merge,
    describe_validation_error,
    read_yaml,
)
from ssl_tune.errors import UsageError
from ssl_tune.methods import METHODS
from ssl_tune.metrics import LABEL_FREE
from ssl_tune.settings import Settings

Scalar = int | float | str | bool


class _Dist(BaseModel):
    """A distribution's keys. Not a `Settings`: its `type` discriminator takes no field validators."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class LogUniform(_Dist):
    type: Literal["loguniform"]
    low: float = Field(gt=0)
    high: float = Field(gt=0)

    @model_validator(mode="after")
    def _ordered(self) -> LogUniform:
        _check_order(self.low, self.high)
        return self


class Uniform(_Dist):
    type: Literal["uniform"]
    low: float
    high: float
    step: float | None = Field(None, gt=0)

    @model_validator(mode="after")
    def _ordered(self) -> Uniform:
        _check_order(self.low, self.high)
        return self


class IntRange(_Dist):
    type: Literal["int"]
    low: int
    high: int
    step: int = Field(1, gt=0)
    log: bool = False

    @model_validator(mode="after")
    def _ordered(self) -> IntRange:
        _check_order(self.low, self.high)
        if self.log and self.low <= 0:
            raise ValueError(f"a log scale needs low > 0 (got low={self.low})")
        if self.log and self.step != 1:
            raise ValueError("a log-scaled int range takes no step")
        return self


class Categorical(_Dist):
    type: Literal["categorical"]
    choices: list[Scalar] = Field(min_length=1)


Distribution = Annotated[LogUniform | Uniform | IntRange | Categorical, Field(discriminator="type")]


def _check_order(low: float, high: float) -> None:
    if low > high:
        raise ValueError(f"low ({low}) > high ({high})")
    if low == high:
        raise ValueError(f"low equals high ({low}): use `fixed` for a constant")


class AshaSettings(Settings):
    grace_period: int = Field(
        1, ge=1, le=MAX_EPOCHS, description="ASHA: epochs before a trial can first be stopped (the first rung)"
    )
    reduction_factor: float = Field(
        2.0, gt=1, le=100, description="ASHA: keep the top 1/this of the trials at each rung"
    )
    max_epochs: int | None = Field(None, ge=1, le=MAX_EPOCHS, description="ASHA: the last rung (default: fixed.epochs)")


class SweepSettings(Settings):
    num_samples: int = Field(8, ge=1, le=100_000, description="trials to run")
    max_concurrent: int | None = Field(
        None, ge=1, le=100_000, description="trials at a time (default: as many as the cluster fits)"
    )
    workers_per_trial: int = Field(1, ge=1, le=1024, description="Ray Train workers per trial (DDP when above 1)")
    gpus_per_trial: float = Field(
        0.0,
        ge=0,
        le=1024,
        description="GPUs per trial: a share of one for a single worker, one per worker for several, 0 for CPU",
    )
    cpus_per_worker: float = Field(1.0, gt=0, le=1024, description="CPUs reserved for each worker")
    max_failures: int = Field(2, ge=0, le=100, description="restarts of a failed trial from its last checkpoint")
    seed: int = Field(0, ge=0, lt=2**31, description="seed of Optuna's sampler")
    metric: Literal["val_knn_acc", "rankme", "lidar", "alpha_req"] | None = Field(
        None,
        description="what the sweep selects on; None: val_knn_acc on labeled data, rankme on unlabeled; rankme, "
        "lidar and alpha_req need no labels",
    )
    rank_across_methods: bool = Field(
        False,
        description="select on a label-free metric (rankme, lidar, alpha_req) although the space draws several "
        "methods: these metrics rank runs of one method, so a sweep across methods is refused without this",
    )
    try_default: bool = Field(
        False,
        description="the first trial runs the method's default recipe (its defaults for the searched keys), so the "
        "sweep reports its gain over the default",
    )
    reuse_processes: bool = Field(
        True,
        description="a single-worker trial trains in Tune's trial process, which later trials reuse (imports, data "
        "and epoch 0 kept); false: every trial starts a Ray Train worker group, as multi-worker trials do",
    )
    searcher: Literal["tpe", "random"] = Field(
        "tpe", description="Optuna's sampler: TPE (its first `tpe_startup_trials` are random) or random search"
    )
    tpe_startup_trials: int = Field(10, ge=0, le=100_000, description="TPE's random trials first (Optuna: 10)")
    early_stopping: Literal["asha", "none"] = Field(
        "asha", description="asha: stop trials behind at the rungs (the `asha` section); none: run every trial out"
    )
    budget_epochs: int | None = Field(
        None,
        ge=1,
        le=1_000_000_000,
        description="stop the sweep, running trials included, once its trials have trained this many epochs in "
        "all (epoch 0 not counted); num_samples still caps the trials",
    )
    budget_seconds: float | None = Field(
        None,
        gt=0,
        le=1e9,
        description="stop the sweep, running trials included, once its trials have spent this many trial-seconds "
        "in all (start-up, evaluation and training; budget.py); num_samples still caps the trials",
    )

    @model_validator(mode="after")
    def _gpus_as_the_hardware_has_them(self) -> SweepSettings:
        """A single-worker trial trains on one device: a share of one GPU, or one. A multi-worker trial (DDP) gets
        one whole GPU per rank: NCCL refuses two ranks on one device."""
        gpus, workers = self.gpus_per_trial, self.workers_per_trial
        if workers == 1 and gpus > 1:
            hint = f": use --workers-per-trial {gpus:g} (one GPU each)" if gpus == int(gpus) else ""
            raise ValueError(
                f"gpus_per_trial {gpus:g} with one worker would reserve {gpus:g} GPUs and train on one{hint}"
            )
        if workers > 1 and gpus and gpus != workers:
            raise ValueError(
                f"a trial of {workers} workers takes one whole GPU per worker: gpus_per_trial {workers}, or 0 for CPU "
                f"(not {gpus:g})"
            )
        return self


class SearchSpace(Settings):
    """A validated search-space file."""

    description: str = Field("", description="free text about the space")
    fixed: dict[str, Any] = Field(
        default_factory=dict, description="run-config keys held constant in every trial (nested or dotted)"
    )
    params: dict[str, Distribution] = Field(
        default_factory=dict, description="searched keys: a distribution each (loguniform, uniform, int, categorical)"
    )
    conditional: dict[str, dict[str, Distribution]] = Field(
        default_factory=dict, description="per method: keys searched only when `method` draws that method"
    )
    if_data_dir: dict[str, Any] = Field(default_factory=dict, description="fixed keys applied when --data-dir is given")
    points_to_evaluate: list[dict[str, Scalar]] = Field(
        default_factory=list, description="configs tried first (a paper's recipe); keys left out are sampled"
    )
    asha: AshaSettings = Field(default_factory=AshaSettings, description="the ASHA scheduler (the asha.* keys)")
    sweep: SweepSettings = Field(
        default_factory=SweepSettings, description="how the sweep runs (sweep.*, or the flags)"
    )

    # --- what the file can produce -----------------------------------------------------------------

    def method_choices(self) -> list[str]:
        dist = self.params.get("method")
        if isinstance(dist, Categorical):
            return [str(c) for c in dist.choices]
        return [str(self.fixed.get("method", TrainConfig.model_fields["method"].default))]

    def base_layer(self, data_dir: str | None = None) -> dict[str, Any]:
        """The fixed settings (with `if_data_dir` and the data dir applied when one is given)."""
        layer = nest(self.fixed)
        if data_dir is not None:
            layer = deep_merge(layer, nest(self.if_data_dir))
            layer["data_dir"] = data_dir
        return layer

    def max_epochs(self, base: TrainConfig) -> int:
        """The trials' length (ASHA's max_t): `asha.max_epochs`, which sets their `epochs`, else the fixed epochs."""
        return self.asha.max_epochs or base.epochs

    def train_config(self, params: dict[str, Any], data_dir: str | None = None) -> TrainConfig:
        """The full run config for one trial's sampled `params` (flat `key` or `method:key` names).

        A sweep's runs always monitor the validation split (held out of the train split), and measure the
        label-free metric the sweep selects on (its config key is the metric's name): nothing a sweep decides
        reads the test split. `asha.max_epochs` is their length (schedules included): a trial that runs to it
        completes its recipe, never one cut mid-schedule.
        """
        layer = nest({_strip_method(k): v for k, v in params.items()})
        sweep: dict[str, Any] = {"monitor": "val"}
        if self.sweep.metric in LABEL_FREE:
            sweep[self.sweep.metric] = True
        if self.asha.max_epochs is not None:
            sweep["epochs"] = self.asha.max_epochs
        return build_config(self.base_layer(data_dir), layer, sweep)

    def default_point(self, data_dir: str | None = None) -> dict[str, Scalar]:
        """The default recipe as a point of the space: every searched key its method defines, the conditional
        ones included, at its value in the config the fixed settings and the (first) method's defaults give.
        Optuna samples no key of it (`sweep.try_default` pins them all)."""
        method = self.method_choices()[0]
        config = self.train_config({"method": method}, data_dir).to_yaml_dict()
        names = [*self.params, *(conditional_name(method, key) for key in self.conditional.get(method, {}))]
        point: dict[str, Scalar] = {}
        for name in names:
            value: Any = config
            for part in _strip_method(name).split("."):
                value = value.get(part) if isinstance(value, dict) else None
            if value is None:
                raise UsageError(
                    f"try_default: the default recipe leaves {name} unset (derived when the run starts), so its trial "
                    "cannot pin it: search it without try_default"
                )
            point[name] = value
        return point

    def initial_points(self, data_dir: str | None = None) -> list[dict[str, Scalar]]:
        """What Optuna tries first: the default recipe (`sweep.try_default`), then `points_to_evaluate`."""
        points = [dict(p) for p in self.points_to_evaluate]
        return [self.default_point(data_dir), *points] if self.sweep.try_default else points

    def hparam_names(self) -> list[str]:
        names = list(self.params)
        for method, dists in self.conditional.items():
            names += [conditional_name(method, k) for k in dists]
        return names

    def distribution(self, name: str) -> Distribution | None:
        """The distribution of a searched parameter by its trial-config name (`key` or `method:key`)."""
        if ":" in name:
            method, key = name.split(":", 1)
            return self.conditional.get(method, {}).get(key)
        return self.params.get(name)


def conditional_name(method: str, key: str) -> str:
    """The trial-config name of a conditional parameter (unique per method, so Optuna's ranges stay apart)."""
    return f"{method}:{key}"


def is_point(params: dict[str, Any], point: dict[str, Scalar]) -> bool:
    """Whether a trial's `params` hold every key of `point` at its value (floats to 1e-9): e.g. the default recipe's
    trial (`SearchSpace.default_point`)."""
    return all(_same(params.get(k), v) for k, v in point.items())


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        return isinstance(a, int | float) and isinstance(b, int | float) and math.isclose(a, b, rel_tol=1e-9)
    return a == b


def _strip_method(name: str) -> str:
    return name.split(":", 1)[1] if ":" in name else name


def nest(flat: dict[str, Any]) -> dict[str, Any]:
    """{'a.b': 1, 'a': {'c': 2}} -> {'a': {'b': 1, 'c': 2}}: dotted keys become nested sections."""
    out: dict[str, Any] = {}
    for key, value in flat.items():
        *parents, leaf = str(key).split(".")
        layer: dict[str, Any] = {leaf: value}
        for parent in reversed(parents):
            layer = {parent: layer}
        out = deep_merge(out, layer)
    return out


# --- loading and checking --------------------------------------------------------------------------


def load_space(path: str | Path, data_dir: str | None = None) -> SearchSpace:
    """Read and fully check a search-space file. Raises UsageError with a one-line message."""
    path = Path(path)
    raw = read_yaml(path)
    try:
        space = SearchSpace.model_validate(raw)
    except ValidationError as err:
        raise UsageError(f"search space {path}: {describe_validation_error(err)}") from None
    try:
        check_space(space, data_dir)
    except UsageError as err:
        raise UsageError(f"search space {path}: {err}") from None
    return space


def check_space(space: SearchSpace, data_dir: str | None = None) -> None:
    """Every method the space can draw, with each parameter at its extremes, must be a valid config."""
    if not space.params and not space.conditional:
        raise UsageError("nothing to search: the space has no params (put constants under fixed, ranges under params)")
    if "monitor" in space.fixed or "monitor" in space.params:
        raise UsageError("'monitor' is the sweep's: it selects on the validation split and never reads the test split")
    if any(_strip_method(name) == "epochs" for name in space.hparam_names()):
        raise UsageError("'epochs' is the trials' length, ASHA's max_t: set it under fixed or with --max-epochs")
    methods = space.method_choices()
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        where = "params.method" if "method" in space.params else "fixed.method"
        raise UsageError(f"{where}: {METHODS.unknown(unknown[0])}")
    for method in space.conditional:
        if method not in methods:
            raise UsageError(f"conditional section '{method}' is not among the methods this space draws")
    if "method" in space.conditional.get(methods[0], {}):
        raise UsageError("'method' cannot be conditional")
    for i, point in enumerate(space.points_to_evaluate):
        for name, value in point.items():
            dist = space.distribution(name)
            if dist is None:
                raise UsageError(f"points_to_evaluate[{i}]: '{name}' is not a searched parameter")
            if not _contains(dist, value):
                raise UsageError(f"points_to_evaluate[{i}]: {name}={value!r} is outside its distribution")
    if space.sweep.try_default:
        for name, value in space.default_point(data_dir).items():
            dist = space.distribution(name)
            if dist is None or not _contains(dist, value):
                raise UsageError(
                    f"try_default: the default {name}={value!r} is outside its distribution (widen the range)"
                )
    for method in methods:
        dists = {k: d for k, d in space.params.items() if k != "method"}
        dists.update(space.conditional.get(method, {}))
        for point in _probe_points(dists):
            try:
                space.train_config({"method": method, **point}, data_dir)
            except UsageError as err:
                raise UsageError(f"with method={method}: {err}") from None


def _probe_points(dists: dict[str, Distribution]) -> list[dict[str, Scalar]]:
    """Both ends of every range, a point inside (a float range on an integer key fails there), and every
    categorical choice (the others at their low ends)."""
    low = {k: _corner(d, 0) for k, d in dists.items()}
    points = [low, {k: _corner(d, 1) for k, d in dists.items()}, {k: _inside(d) for k, d in dists.items()}]
    for key, dist in dists.items():
        if isinstance(dist, Categorical):
            points += [{**low, key: choice} for choice in dist.choices[1:-1]]
    return points


def _contains(dist: Distribution, value: Scalar) -> bool:
    if isinstance(dist, Categorical):
        return any(value == c and isinstance(value, bool) == isinstance(c, bool) for c in dist.choices)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    if isinstance(dist, IntRange) and not isinstance(value, int):
        return False
    return dist.low <= value <= dist.high


def _corner(dist: Distribution, which: int) -> Scalar:
    if isinstance(dist, Categorical):
        return dist.choices[-1 if which else 0]
    return dist.high if which else dist.low


def _inside(dist: Distribution) -> Scalar:
    """A value strictly inside a float range, off any round number; the low end of other distributions."""
    if isinstance(dist, LogUniform):
        return dist.low**0.618 * dist.high**0.382
    if isinstance(dist, Uniform):
        if dist.step is not None:
            return dist.low + dist.step if dist.low + dist.step <= dist.high else dist.low
        return dist.low + 0.382 * (dist.high - dist.low)
    return _corner(dist, 0)


# --- Optuna --------------------------------------------------------------------------------------


def suggest(trial: Any, name: str, dist: Distribution) -> Scalar:
    if isinstance(dist, LogUniform):
        return trial.suggest_float(name, dist.low, dist.high, log=True)
    if isinstance(dist, Uniform):
        return trial.suggest_float(name, dist.low, dist.high, step=dist.step)
    if isinstance(dist, IntRange):
        return trial.suggest_int(name, dist.low, dist.high, step=dist.step, log=dist.log)
    return trial.suggest_categorical(name, dist.choices)


class DefineByRun:
    """Optuna define-by-run: the method first (if searched), then shared and that method's parameters.

    A class, not a closure, so that Ray Tune can pickle the searcher's state for --resume.
    """

    def __init__(self, space: SearchSpace) -> None:
        self.space = space

    def __call__(self, trial: Any) -> None:
        space = self.space
        method = suggest(trial, "method", space.params["method"]) if "method" in space.params else None
        for name, dist in space.params.items():
            if name != "method":
                suggest(trial, name, dist)
        method = str(method or space.method_choices()[0])
        for key, dist in space.conditional.get(method, {}).items():
            suggest(trial, conditional_name(method, key), dist)
