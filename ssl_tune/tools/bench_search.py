"""`ssl-tune bench-search`: does the search find a better model than the default recipe, at equal compute?

For one method and its preset's space it runs, with the same seed and the same compute budget, summed over trials:
epochs trained (`--budget-trials` whole trials), or trial-seconds (`--budget-seconds`: start-up, evaluation and
training, `tune/budget.py`). Every strategy runs trials until its budget is spent, so one whose trials end early
(diverged, or stopped by ASHA) tops up with more; the report shows both measures for every strategy:

- (b) `random`: random search, every trial run to the end;
- (c) `tpe`: Optuna's TPE, every trial run to the end;
- (d) `tpe_asha`: TPE with ASHA early stopping, ssl-tune's default, as many trials as the budget allows.

Each sweep selects on the validation split only. Then `confirm` retrains each strategy's best config, and (a) the
method's default recipe, with the same fresh seeds and tests them on the test split: mean ± std of the test kNN
and linear probe, and each strategy against the default seed by seed (the mean difference and its 95 % paired t
interval, `ssl_tune.stats`; a target is met only when the interval's lower bound reaches it). It also measures
ASHA's premise on the trials run to the end: the Spearman correlation between each rung's validation kNN and the
last epoch's.

Everything lands in `--out`: one sweep per strategy (`sweeps/<method>-<strategy>`, confirm inside), `curves.parquet`
(every epoch of every trial of every strategy, its `strategy` column first), `state.json`
(finished stages and their wall time) and the report, `search_quality.json` and `search_quality.md`. Run the same
command again to resume: finished stages are kept, an interrupted sweep or confirm resumes.
"""

from __future__ import annotations

import json
import math
import statistics
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ssl_tune.config import build_config, parse_set
from ssl_tune.errors import UsageError
from ssl_tune.stats import TOO_WIDE, PairedDifference, paired_difference
from ssl_tune.storage import write_text
from ssl_tune.tune.confirm import DEFAULT_LABEL
from ssl_tune.tune.curves import curve_rows, curves_table, write_curves
from ssl_tune.tune.results import SWEEP_FILE, SweepRecord, TrialRecord, load_sweep
from ssl_tune.tune.space import SearchSpace, load_space

STATE_FILE = "state.json"
UNCHECKED = ("out", "address", "verbose")  # request fields a resumed benchmark may change
REPORT = "search_quality"


@dataclass(frozen=True)
class Strategy:
    name: str
    label: str
    searcher: str  # sweep.searcher
    early_stopping: str  # sweep.early_stopping


STRATEGIES = {
    s.name: s
    for s in (
        Strategy("random", "(b) random search", "random", "none"),
        Strategy("tpe", "(c) TPE", "tpe", "none"),
        Strategy("tpe_asha", "(d) TPE + ASHA", "tpe", "asha"),
    )
}
DEFAULT_ROW = "(a) default recipe"


@dataclass(frozen=True)
class Preset:
    spaces: str  # folder of <method>.yaml
    budget_trials: int  # the budget, in trials run to the end (x the space's epochs)
    seeds: int  # confirm seeds per config
    overrides: tuple[str, ...] = ()  # --set over the space's fixed settings


PRESETS = {
    # resnet_tiny, 5,000 CIFAR-10 images (1,000 for validation), 8 epochs: 11 to 22 minutes per method on 2 cores
    "cpu": Preset("search_spaces/cpu", budget_trials=6, seeds=3),
    # as cpu, on the same images made grey and 16 px, where the CIFAR recipes' crops and colour jitter do not fit;
    # 5 seeds (t = 2.78, not 4.30 at 3): a 16 px run costs a fraction of a 32 px one
    "shifted": Preset("search_spaces/shifted", budget_trials=6, seeds=5),
    # resnet18 on full CIFAR-10, 100 epochs; one GPU per 4 trials as the spaces set (not measured yet)
    "gpu": Preset("search_spaces", budget_trials=16, seeds=3, overrides=("epochs=100", "warmup_epochs=10")),
}


@dataclass(frozen=True)
class SearchBenchRequest:
    method: str
    out: str
    preset: str = "cpu"
    data_dir: str | None = None
    strategies: tuple[str, ...] = tuple(STRATEGIES)
    budget_trials: int | None = None  # default: the preset's
    budget_seconds: float | None = None  # a budget in trial-seconds instead of epochs
    seeds: int | None = None  # default: the preset's
    overrides: tuple[str, ...] = ()  # --set KEY=VALUE over the space's fixed settings
    space: str | None = None  # default: <preset's folder>/<method>.yaml
    address: str | None = None  # a Ray cluster (default: a local one)
    verbose: bool = False


@dataclass
class StrategyResult:
    """One row of the report."""

    name: str
    label: str
    trials: int = 0
    search_epochs: int = 0  # compute spent searching: epochs trained, summed over trials
    search_seconds: float = 0.0  # ... and trial-seconds (start-up, evaluation and training), summed over trials
    best_val: float | None = None  # the selected trial's validation kNN (what the sweep selected on)
    params: dict[str, Any] = field(default_factory=dict)
    test_knn: list[float] = field(default_factory=list)  # one per confirm seed, in the order of `seeds`
    seeds: list[int] = field(default_factory=list)  # the confirm seeds (every strategy and the default share them)
    probe_top1: list[float] = field(default_factory=list)
    confirm_epochs: int = 0
    same_config_as: str | None = None  # its best config was already confirmed by this strategy
    wall_s: float = 0.0


@dataclass
class SearchBenchReport:
    method: str
    preset: str
    budget_epochs: int | None  # the budget: epochs, or
    budget_seconds: float | None  # trial-seconds
    max_epochs: int
    seeds: int
    rows: list[StrategyResult]
    rung_correlation: list[dict[str, Any]]  # {epoch, rung, trials, spearman}
    wall_s: float  # the sweeps' and confirms' wall time, resumes included


def check_request(request: SearchBenchRequest) -> SearchSpace:
    """The space the benchmark runs, checked. Raises UsageError."""
    if request.preset not in PRESETS:
        raise UsageError(f"--preset {request.preset!r}: choose one of {', '.join(PRESETS)}")
    unknown = [s for s in request.strategies if s not in STRATEGIES]
    if unknown or not request.strategies:
        raise UsageError(f"--strategies {','.join(unknown) or '(none)'}: choose among {', '.join(STRATEGIES)}")
    for name, value in (("--budget-trials", request.budget_trials), ("--seeds", request.seeds)):
        if value is not None and value < 1:
            raise UsageError(f"{name} must be at least 1, not {value}")
    if request.budget_seconds is not None and not 0 < request.budget_seconds <= 1e9:
        raise UsageError(f"--budget-seconds must be positive, not {request.budget_seconds:g}")
    if request.budget_seconds is not None and request.budget_trials is not None:
        raise UsageError("give the budget in one measure: --budget-trials or --budget-seconds")
    preset = PRESETS[request.preset]
    path = Path(request.space or Path(preset.spaces) / f"{request.method}.yaml")
    if not path.is_file():
        raise UsageError(f"no {request.preset} space for method {request.method!r}: {path} does not exist")
    parse_set(request.overrides)
    return load_space(path, request.data_dir)


def run_search_bench(request: SearchBenchRequest) -> SearchBenchReport:
    """Run (or resume) the benchmark into `request.out`; returns the report it wrote there."""
    bench = _Bench(request, check_request(request))
    with bench.stack:
        rows = bench.run()
    sweeps = [load_sweep(str(bench.sweep_dir(n))) for n in request.strategies]
    report = SearchBenchReport(
        request.method, request.preset, bench.budget_epochs, request.budget_seconds, bench.max_epochs, bench.seeds,
        rows, rung_correlation(sweeps, bench.space, bench.max_epochs), bench.stages_wall_s(),
    )  # fmt: skip
    rows_by_strategy = [
        {"strategy": n, **r} for n, s in zip(request.strategies, sweeps, strict=True) for r in curve_rows(s)
    ]
    write_curves(str(bench.out), curves_table(rows_by_strategy, first=("strategy",)))
    write_text(str(bench.out / f"{REPORT}.json"), json.dumps(asdict(report), indent=1))
    write_text(str(bench.out / f"{REPORT}.md"), format_report(report))
    return report


class _Bench:
    """One benchmark folder: its settings, its `state.json` (the stages done), and one Ray cluster for every sweep
    and confirm, started when the first stage that needs one runs."""

    def __init__(self, request: SearchBenchRequest, space: SearchSpace) -> None:
        self.request, self.space = request, space
        self.preset = PRESETS[request.preset]
        self.out = Path(request.out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.state_path = self.out / STATE_FILE
        self.state: dict[str, Any] = json.loads(self.state_path.read_text()) if self.state_path.exists() else {}
        # as state.json holds it (tuples as lists); where it runs and how loud may change
        asked = {k: v for k, v in json.loads(json.dumps(asdict(request))).items() if k not in UNCHECKED}
        saved = {k: v for k, v in self.state.get("request", asked).items() if k not in UNCHECKED}
        if saved != asked:
            raise UsageError(f"{self.out} holds a benchmark of other settings ({self.state_path}): use another --out")
        self.state["request"] = asked
        self.fixed = parse_set([*self.preset.overrides, *request.overrides])
        self.max_epochs = space.asha.max_epochs or build_config(space.base_layer(request.data_dir), self.fixed).epochs
        self.trials = request.budget_trials or self.preset.budget_trials
        self.seeds = request.seeds or self.preset.seeds
        self.budget_epochs = None if request.budget_seconds else self.trials * self.max_epochs
        self.stack = ExitStack()
        self._cluster_open = False

    def stages_wall_s(self) -> float:
        """The sweeps' and confirms' wall time, summed over every run of the benchmark (resumes included)."""
        return sum(v["wall_s"] for k, v in self.state.items() if k != "request")

    def sweep_dir(self, strategy: str) -> Path:
        return self.out / "sweeps" / f"{self.request.method}-{strategy}"

    def _stage(self, key: str, work: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        """A stage's record: read back when done before, else run (in the Ray cluster) and saved."""
        if key not in self.state:
            if not self._cluster_open:
                from ssl_tune.tune.cluster import ray_cluster

                self.stack.enter_context(ray_cluster(self.request.address, self.request.verbose))
                self._cluster_open = True
            started = time.time()
            self.state[key] = {**work(), "wall_s": time.time() - started}
            write_text(str(self.state_path), json.dumps(self.state, indent=1))
        return self.state[key]

    def run(self) -> list[StrategyResult]:
        import ssl_tune

        request = self.request
        rows: list[StrategyResult] = []
        confirmed: dict[str, StrategyResult] = {}  # params yaml -> the row that confirmed it
        for i, name in enumerate(request.strategies):
            strategy, sweep_dir = STRATEGIES[name], self.sweep_dir(name)

            def search(strategy: Strategy = strategy, sweep_dir: Path = sweep_dir) -> dict[str, Any]:
                ssl_tune.sweep(
                    request.space or Path(self.preset.spaces) / f"{request.method}.yaml",
                    storage=sweep_dir.parent,
                    name=sweep_dir.name,
                    data_dir=request.data_dir,
                    resume=(sweep_dir / SWEEP_FILE).exists(),
                    settings=_sweep_settings(strategy, self.trials, self.max_epochs, request.budget_seconds),
                    fixed=self.fixed,
                )
                return {}

            searched = self._stage(f"sweep:{name}", search)
            sweep = load_sweep(str(sweep_dir))
            best = sweep.best()
            row = StrategyResult(
                name, strategy.label, len(sweep.trials), sweep.trained_epochs, sweep.trial_seconds, best.value
            )
            row.params, row.wall_s = dict(best.params), searched["wall_s"]
            with_default = i == 0  # (a): confirmed once, beside the first strategy's best
            same = confirmed.get(_params_key(best.params))
            if same is not None and not with_default:  # the same config, already retrained with the same seeds
                row.same_config_as = same.name
                row.test_knn, row.probe_top1, row.seeds = same.test_knn, same.probe_top1, same.seeds
                row.confirm_epochs = same.confirm_epochs
            else:

                def retrain(sweep_dir: Path = sweep_dir, with_default: bool = with_default) -> dict[str, Any]:
                    result = ssl_tune.confirm(sweep_dir, top=1, seeds=self.seeds, with_default=with_default)
                    return {"rows": result.rows}

                retrained = self._stage(f"confirm:{name}", retrain)["rows"]
                _fill(row, [r for r in retrained if r["label"] != DEFAULT_LABEL])
                if with_default:
                    default = StrategyResult("default", DEFAULT_ROW, params=sweep.space.default_point(request.data_dir))
                    _fill(default, [r for r in retrained if r["label"] == DEFAULT_LABEL])
                    rows.append(default)
            confirmed.setdefault(_params_key(best.params), row)
            rows.append(row)
        return rows


def _sweep_settings(
    strategy: Strategy, trials: int, max_epochs: int, budget_seconds: float | None = None
) -> dict[str, Any]:
    """Equal compute for every strategy: `trials` x `max_epochs` epochs, or `budget_seconds` trial-seconds. Each
    runs trials until its budget is spent: num_samples only caps them, as many as the budget could pay for if
    every trial ended after one epoch (a trial diverges, ASHA stops it), so a strategy whose trials end early
    tops up with more instead of underspending."""
    settings: dict[str, Any] = {"searcher": strategy.searcher, "early_stopping": strategy.early_stopping}
    if budget_seconds is not None:
        return settings | {"budget_seconds": budget_seconds, "num_samples": 2 * trials * max_epochs}
    return settings | {"budget_epochs": trials * max_epochs, "num_samples": trials * max_epochs}


def _params_key(params: dict[str, Any]) -> str:
    return yaml.safe_dump(params, sort_keys=True)


def _fill(row: StrategyResult, confirm_rows: list[dict[str, Any]]) -> None:
    if not confirm_rows:
        raise UsageError(f"confirm of {row.name} holds no run")
    row.seeds = [int(r["seed"]) for r in confirm_rows]
    row.test_knn = [float(r["test_knn_acc"]) for r in confirm_rows]
    row.probe_top1 = [float(r["probe_top1"]) for r in confirm_rows]
    row.confirm_epochs = sum(int(r["epochs"]) for r in confirm_rows)


# --- ASHA's premise ------------------------------------------------------------------------------------------


def spearman(x: list[float], y: list[float]) -> float:
    """Spearman's rank correlation (ties take their average rank). NaN for fewer than 3 pairs or a constant."""
    if len(x) != len(y):
        raise ValueError("x and y differ in length")
    if len(x) < 3:
        return math.nan
    rx, ry = _ranks(x), _ranks(y)
    mx, my = statistics.fmean(rx), statistics.fmean(ry)
    cov = sum((a - mx) * (b - my) for a, b in zip(rx, ry, strict=True))
    var = math.sqrt(sum((a - mx) ** 2 for a in rx) * sum((b - my) ** 2 for b in ry))
    return cov / var if var else math.nan


def kendall_tau(x: list[float], y: list[float]) -> float:
    """Kendall's tau-b (ties counted as neither concordant nor discordant, and corrected for). NaN for fewer than
    2 pairs or a constant.

    >>> kendall_tau([1, 2, 3, 4], [10, 20, 30, 40]), kendall_tau([1, 2, 3], [3, 2, 1])
    (1.0, -1.0)
    >>> kendall_tau([1, 2, 3], [1, 3, 2])  # 2 pairs in order, 1 out
    0.3333333333333333
    """
    if len(x) != len(y):
        raise ValueError("x and y differ in length")
    concordant = discordant = ties_x = ties_y = 0
    for i in range(len(x)):
        for j in range(i + 1, len(x)):
            dx, dy = x[i] - x[j], y[i] - y[j]
            if dx == 0 and dy == 0:
                continue
            if dx == 0:
                ties_x += 1
            elif dy == 0:
                ties_y += 1
            elif (dx > 0) == (dy > 0):
                concordant += 1
            else:
                discordant += 1
    pairs_x, pairs_y = concordant + discordant + ties_x, concordant + discordant + ties_y
    if not pairs_x or not pairs_y:
        return math.nan
    return (concordant - discordant) / math.sqrt(pairs_x * pairs_y)


def _ranks(values: list[float]) -> list[float]:
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def asha_rungs(space: SearchSpace, max_epochs: int) -> list[int]:
    """The epochs at which ASHA compares trials: grace x factor^k below the last epoch."""
    rungs, epoch = [], float(min(space.asha.grace_period, max_epochs))
    while epoch < max_epochs:
        rungs.append(math.ceil(epoch))
        epoch *= space.asha.reduction_factor
    return rungs


def rung_correlation(sweeps: list[SweepRecord], space: SearchSpace, max_epochs: int) -> list[dict[str, Any]]:
    """Per epoch before the last (ASHA's rungs marked): Spearman between that epoch's validation kNN and the last
    epoch's, over the configs that ran to the end in the sweeps without early stopping (ASHA's own sweep would only
    show its survivors), each once. Every epoch, not only the rungs, so the report shows where a first rung would
    start to rank trials as their end does."""
    full: dict[str, TrialRecord] = {}  # one per config: a config both sweeps drew (same seed) trains the same
    for sweep in sweeps:
        if sweep.space.sweep.early_stopping != "none":
            continue
        for t in sweep.trials:
            if t.epochs_run == max_epochs and t.value_at(max_epochs) is not None:
                full.setdefault(_params_key(t.params), t)
    out, rungs = [], asha_rungs(space, max_epochs)
    for epoch in range(1, max_epochs):
        pairs = [(t.value_at(epoch), t.value_at(max_epochs)) for t in full.values() if t.value_at(epoch) is not None]
        rho = spearman([a for a, _ in pairs], [b for _, b in pairs])
        rho_or_none = None if math.isnan(rho) else rho
        out.append({"epoch": epoch, "rung": epoch in rungs, "trials": len(pairs), "spearman": rho_or_none})
    return out


# --- the report ----------------------------------------------------------------------------------------------


def _mean_std(values: list[float]) -> str:
    if not values:
        return "-"
    mean = 100 * statistics.fmean(values)
    std = 100 * statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{mean:.2f} ± {std:.2f} %"


def versus(row: StrategyResult, other: StrategyResult) -> PairedDifference | None:
    """`row`'s confirmed test kNN against `other`'s, paired by seed (the seeds both ran); None if they share none."""
    theirs = dict(zip(other.seeds, other.test_knn, strict=True))
    mine = {s: v for s, v in zip(row.seeds, row.test_knn, strict=True) if s in theirs}
    if not mine:
        return None
    return paired_difference([mine[s] for s in sorted(mine)], [theirs[s] for s in sorted(mine)])


def format_report(report: SearchBenchReport) -> str:
    rows = report.rows
    default = next((r for r in rows if r.name == "default"), None)
    lines = [
        f"# Search quality: {report.method}, preset {report.preset}",
        "",
        f"Budget per strategy: {_budget(report)}, every strategy topping up with trials until it is spent; "
        f"selection on the validation split; confirmed with {report.seeds} fresh seeds on the test split. Search "
        "compute in both measures: epochs trained, and trial-seconds (start-up, evaluation and training).",
        "",
        "| strategy | trials | search epochs | search trial-seconds | best val kNN | test kNN (confirmed) "
        "| vs default (paired by seed) | linear probe top-1 |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        gain = "-"
        if default is not None and r is not default and (diff := versus(r, default)) is not None:
            gain = diff.describe()
        val = f"{100 * r.best_val:.2f} %" if r.best_val is not None else "-"
        knn = _mean_std(r.test_knn) + (f" (same config as {r.same_config_as})" if r.same_config_as else "")
        trials = str(r.trials) if r is not default else "-"
        epochs = str(r.search_epochs) if r is not default else "0"
        seconds = f"{r.search_seconds:.0f}" if r is not default else "0"
        cells = (r.label, trials, epochs, seconds, val, knn, gain, _mean_std(r.probe_top1))
        lines.append(f"| {' | '.join(cells)} |")
    lines += ["", "ASHA's premise: Spearman between an epoch's validation kNN and the last epoch's, over the trials"]
    lines += ["that the strategies without early stopping ran to the end:", ""]
    lines += ["| epoch | ASHA rung | trials | Spearman |", "|---|---|---|---|"]
    for c in report.rung_correlation:
        rho = "-" if c["spearman"] is None else f"{c['spearman']:.2f}"
        lines.append(f"| {c['epoch']} | {'yes' if c.get('rung') else ''} | {c['trials']} | {rho} |")
    lines += ["", *targets(report), *_separation(report), "", f"wall time: {report.wall_s / 60:.1f} min"]
    return "\n".join(lines) + "\n"


def _budget(report: SearchBenchReport) -> str:
    if report.budget_seconds is not None:
        return f"{report.budget_seconds:.0f} trial-seconds"
    return f"{report.budget_epochs} epochs ({report.max_epochs}-epoch trials)"


def targets(report: SearchBenchReport) -> list[str]:
    """The issue's targets on the confirmed test kNN, paired by seed: (d) beats (a) by >= 3 points, and (d) is not
    below (b). Met only when the 95 % interval's lower bound reaches the target; not met when its upper bound is
    below it; else too wide to decide."""
    by_name = {r.name: r for r in report.rows}
    out = []
    d, a, b = by_name.get("tpe_asha"), by_name.get("default"), by_name.get("random")
    for name, other, gain in (("(d) >= (a) + 3 points", a, 0.03), ("(d) not below (b)", b, 0.0)):
        diff = versus(d, other) if d and other else None
        if diff is not None:
            out.append(f"target {name}: {diff.describe()} -> {diff.target(gain)}")
    return out


def _separation(report: SearchBenchReport) -> list[str]:
    """A line when no strategy's interval against the default excludes 0: the budget cannot tell them apart."""
    default = next((r for r in report.rows if r.name == "default"), None)
    diffs = [versus(r, default) for r in report.rows if default is not None and r is not default]
    verdicts = {d.verdict for d in diffs if d is not None}
    if verdicts and verdicts.isdisjoint({"better", "worse"}):
        return [
            "",
            f"The budget is too small to separate the strategies: every paired interval against the default holds 0 "
            f"({TOO_WIDE} with {report.seeds} seeds).",
        ]
    return []
