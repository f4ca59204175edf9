"""`ssl-tune report`: plots of a finished sweep and one self-contained HTML page.

OUT/
  knn_per_epoch.png        the selection metric per epoch of every trial; ASHA-stopped, diverged and collapsed marked
  best_knn_vs_params.png   each trial's value (its selection metric at its last epoch) against each searched parameter
  param_importances.png    Optuna's parameter importances (when they can be computed)
  report.html              all of the above (images inline as data: URIs), a table of trials, the best config

Everything is computed first, then written to a temporary directory beside OUT that replaces OUT in one
rename, so a failure leaves no half-written report (and, with --force, the old one in place).
"""

from __future__ import annotations

import base64
import html
import io
import math
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ssl_tune.metrics import LABELS, SELECTION_METRIC, TrialStatus, finite, format_metric, scaled
from ssl_tune.storage import absolute, check_bucket, exists, join, read_text, require_empty_output, split, write_dir
from ssl_tune.tune.results import SWEEP_FILE, SweepRecord, TrialRecord, load_sweep
from ssl_tune.tune.space import Categorical, IntRange, LogUniform, SearchSpace

HTML_FILE = "report.html"
KNN_PLOT = "knn_per_epoch.png"
PARAMS_PLOT = "best_knn_vs_params.png"
IMPORTANCE_PLOT = "param_importances.png"

# how each end state is drawn: line style, marker at the trial's last epoch, colour of that marker
STATUS_STYLE: dict[TrialStatus, dict[str, Any]] = {
    TrialStatus.COMPLETED: {"linestyle": "-", "marker": "o", "color": "tab:green"},
    TrialStatus.STOPPED: {"linestyle": "--", "marker": "s", "color": "tab:blue"},
    TrialStatus.DIVERGED: {"linestyle": ":", "marker": "X", "color": "tab:red"},
    TrialStatus.COLLAPSED: {"linestyle": "-.", "marker": "v", "color": "tab:purple"},
    TrialStatus.ERROR: {"linestyle": ":", "marker": "x", "color": "black"},
    TrialStatus.UNFINISHED: {"linestyle": ":", "marker": ".", "color": "tab:gray"},
}
STATUS_LABEL = {
    TrialStatus.COMPLETED: "completed (all epochs)",
    TrialStatus.STOPPED: "stopped early by ASHA",
    TrialStatus.DIVERGED: "diverged (NaN loss)",
    TrialStatus.COLLAPSED: "collapsed (embedding std)",
    TrialStatus.ERROR: "error",
    TrialStatus.UNFINISHED: "unfinished",
}
TRIAL_LEGEND_MAX = 12  # above this many trials, only the end states get a legend


@dataclass
class Importances:
    values: dict[str, float]  # empty when they could not be computed
    note: str  # why not, or how they were computed


@dataclass(frozen=True)
class ReportResult:
    """What `report` wrote: the folder, the best trial, how many trials, and the file names."""

    out: str
    best: TrialRecord
    trials: int
    files: list[str]


def report(sweep_dir: str, out: str | Path, force: bool = False) -> ReportResult:
    """Check the input, render everything in memory, then write `out` (a folder or a URI; see
    `storage.write_dir`). Raises UsageError."""
    location, out = absolute(sweep_dir), absolute(str(out))
    check_bucket(out)
    sweep = load_sweep(location)
    best = sweep.best()  # UsageError when no trial finished
    require_empty_output(out, force=force)

    config = sweep.space.train_config(best.params, sweep.data_dir).to_yaml_dict()
    config.pop("out", None)
    best_yaml = yaml.safe_dump(config, sort_keys=False)
    importances = param_importances(location, sweep.metric)
    images = {KNN_PLOT: _png(knn_figure(sweep)), PARAMS_PLOT: _png(params_figure(sweep))}
    if importances.values:
        images[IMPORTANCE_PLOT] = _png(importances_figure(importances.values))
    page = render_html(sweep, best, best_yaml, images, importances)
    write_dir(out, {**images, HTML_FILE: page.encode()})
    return ReportResult(out, best, len(sweep.trials), sorted([*images, HTML_FILE]))


# --- Optuna ----------------------------------------------------------------------------------------


def _study_name(sweep_dir: str) -> str:
    saved = yaml.safe_load(read_text(join(sweep_dir, SWEEP_FILE))) or {}
    return str(saved.get("name") or split(sweep_dir)[1])


def param_importances(sweep_dir: str, objective: str = SELECTION_METRIC) -> Importances:
    """Importances of the searched parameters from the sweep's Optuna study (read only).

    PED-ANOVA (Optuna's own, no scikit-learn needed; fANOVA, Optuna's default, needs scikit-learn).
    """
    from ssl_tune.tune.searcher import fetch_optuna_journal, optuna_journal_path

    name = _study_name(sweep_dir)
    path = optuna_journal_path(sweep_dir, name)
    with suppress(OSError):  # a bucket sweep read on another machine than its driver: its journal's copy
        fetch_optuna_journal(sweep_dir, name)
    if not exists(path):
        return Importances({}, f"cannot be computed: no Optuna journal at {path}")
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        storage = JournalStorage(JournalFileBackend(path))
        names = optuna.get_all_study_names(storage)
        if not names:
            return Importances({}, f"cannot be computed: the Optuna journal {path} holds no study")
        study = optuna.load_study(study_name=name if name in names else names[0], storage=storage)
    except Exception as err:  # a journal cut short, or of another Optuna version
        return Importances(
            {}, f"cannot be computed: the Optuna study in {path} is unreadable ({type(err).__name__}: {err})"
        )
    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if len(complete) < 2:
        return Importances({}, f"cannot be computed: Optuna has {len(complete)} completed trial(s), it needs 2")
    searched = sorted({p for t in complete for p in t.params})
    if len(searched) < 2:
        return Importances({}, f"not computed: only one parameter ({', '.join(searched) or 'none'}) was searched")
    try:
        values = optuna.importance.get_param_importances(
            study, evaluator=optuna.importance.PedAnovaImportanceEvaluator()
        )
    except Exception as err:  # e.g. every trial has the same value, or no parameter common to all trials
        return Importances({}, f"cannot be computed ({type(err).__name__}: {err})")
    if not values:
        return Importances({}, "cannot be computed: no parameter was drawn in every completed trial")
    return Importances(dict(values), f"PED-ANOVA over {len(complete)} completed Optuna trials (objective: {objective})")


# --- plots -----------------------------------------------------------------------------------------


def _figure(width: float, height: float) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    return buf.getvalue()


def _knn_points(trial: TrialRecord) -> tuple[list[int], list[float]]:
    epochs, values = [], []
    for row in trial.results:
        if (value := finite(row.get(trial.metric))) is not None:
            epochs.append(int(row.get("epoch", 0)))
            values.append(scaled(trial.metric, value))
    return epochs, values


def _status_handles(statuses: set[TrialStatus]) -> list[Any]:
    from matplotlib.lines import Line2D

    return [
        Line2D(
            [],
            [],
            color="0.3",
            linestyle=s["linestyle"],
            marker=s["marker"],
            markerfacecolor=s["color"],
            markeredgecolor=s["color"],
            label=STATUS_LABEL[name],
        )
        for name, s in STATUS_STYLE.items()
        if name in statuses
    ]


def knn_figure(sweep: SweepRecord) -> Any:
    """The selection metric per epoch, a line per trial; line style and end marker say how the trial ended."""
    fig = _figure(11, 5)
    ax = fig.add_subplot()
    colors = _trial_colors(len(sweep.trials))
    label_trials = len(sweep.trials) <= TRIAL_LEGEND_MAX
    trial_handles = []
    for trial, color in zip(sweep.trials, colors, strict=True):
        style = STATUS_STYLE[trial.status]
        epochs, values = _knn_points(trial)
        if not epochs:
            continue
        (line,) = ax.plot(
            epochs,
            values,
            color=color,
            linestyle=style["linestyle"],
            linewidth=1.5,
            label=f"{trial.trial_id} ({trial.status})",
        )
        trial_handles.append(line)
        end_epoch = trial.epochs_run if trial.status is TrialStatus.DIVERGED else epochs[-1]
        if end_epoch != epochs[-1]:  # a diverged trial has no kNN for its last epoch: mark it at the last one it had
            ax.plot([epochs[-1], end_epoch], [values[-1], values[-1]], color=color, linestyle=":", linewidth=1.0)
        ax.plot(
            [end_epoch],
            [values[-1]],
            linestyle="none",
            marker=style["marker"],
            markersize=10,
            markerfacecolor=style["color"],
            markeredgecolor="black",
            zorder=3,
        )
    ax.set_xlabel("epoch")
    ax.set_ylabel(LABELS[sweep.metric])
    ax.set_title(f"{sweep.metric} per epoch ({len(sweep.trials)} trials; marker = how each trial ended)")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.grid(alpha=0.3)
    # beside the plot, not over the lines
    if label_trials and trial_handles:
        fig.legend(handles=trial_handles, loc="outside right upper", fontsize="x-small", title="trial")
    statuses = {t.status for t in sweep.trials}
    fig.legend(handles=_status_handles(statuses), loc="outside right lower", title="end state", fontsize="small")
    return fig


def _trial_colors(n: int) -> list[Any]:
    from matplotlib import colormaps

    cmap = colormaps["tab20" if n > 10 else "tab10"]
    return [cmap(i % cmap.N) for i in range(n)]


def _distribution(space: SearchSpace, name: str) -> Any:
    if name in space.params:
        return space.params[name]
    method, _, key = name.partition(":")
    return space.conditional.get(method, {}).get(key)


def params_figure(sweep: SweepRecord) -> Any:
    """A subplot per searched parameter: each trial's value (its last epoch's kNN) against the parameter's (log or
    category axis)."""
    space = sweep.space
    drawn = {name for t in sweep.trials for name in t.params}
    names = [n for n in space.hparam_names() if n in drawn] + sorted(drawn - set(space.hparam_names()))
    cols = min(3, max(1, len(names)))
    rows = max(1, math.ceil(len(names) / cols))
    fig = _figure(4.2 * cols, 3.4 * rows)
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax in axes[len(names) :]:
        ax.set_visible(False)
    if not names:
        axes[0].set_visible(True)
        axes[0].text(0.5, 0.5, "no searched parameters", ha="center", va="center")
        axes[0].set_axis_off()
    for ax, name in zip(axes, names, strict=False):
        dist = _distribution(space, name)
        categories = _categories(dist, [t.params[name] for t in sweep.trials if name in t.params])
        for status in STATUS_STYLE:
            xs, ys = [], []
            for t in sweep.trials:
                if t.status == status and name in t.params and t.value is not None:
                    value = t.params[name]
                    xs.append(categories.index(value) if categories is not None else value)
                    ys.append(scaled(t.metric, t.value))
            if xs:
                s = STATUS_STYLE[status]
                ax.scatter(
                    xs,
                    ys,
                    marker=s["marker"],
                    color=s["color"],
                    s=45,
                    label=STATUS_LABEL[status],
                    edgecolors="black" if s["marker"] not in ("x", ".") else None,
                    linewidths=0.5,
                )
        if categories is not None:
            ax.set_xticks(range(len(categories)), [str(c) for c in categories])
            ax.set_xlim(-0.5, len(categories) - 0.5)
        elif isinstance(dist, LogUniform) or (isinstance(dist, IntRange) and dist.log):
            _log_axis(ax, dist.low, dist.high)
        elif dist is not None:
            pad = 0.04 * (dist.high - dist.low)
            ax.set_xlim(dist.low - pad, dist.high + pad)  # the whole searched range
        ax.set_xlabel(name + (" (log)" if ax.get_xscale() == "log" else ""))
        ax.set_ylabel(LABELS[sweep.metric] + ", last epoch")
        ax.grid(alpha=0.3)
    if names:
        handles = _status_handles({t.status for t in sweep.trials if t.value is not None})
        if handles:
            fig.legend(handles=handles, loc="outside lower center", ncols=len(handles), fontsize="small")
        fig.suptitle("each trial's kNN accuracy at its last epoch against each searched parameter")
    return fig


def _log_axis(ax: Any, low: float, high: float) -> None:
    """A log x-axis over the searched range, labelled at 1-2-5 steps when it spans few decades."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    ax.set_xscale("log")
    ax.set_xlim(low / 1.15, high * 1.15)
    subs = (1.0, 2.0, 5.0) if high / low < 100 else (1.0,)
    ax.xaxis.set_major_locator(LogLocator(base=10, subs=subs))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:.3g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())


def _categories(dist: Any, values: list[Any]) -> list[Any] | None:
    """The x positions of a categorical parameter (its choices, in the file's order), else None."""
    if isinstance(dist, Categorical):
        return list(dist.choices) + [v for v in dict.fromkeys(values) if v not in dist.choices]
    if dist is None and any(not isinstance(v, int | float) or isinstance(v, bool) for v in values):
        return list(dict.fromkeys(values))
    return None


def importances_figure(values: dict[str, float]) -> Any:
    ordered = sorted(values.items(), key=lambda kv: kv[1])
    fig = _figure(7, 1.2 + 0.45 * len(ordered))
    ax = fig.add_subplot()
    ax.barh([k for k, _ in ordered], [v for _, v in ordered], color="tab:blue")
    for i, (_, v) in enumerate(ordered):
        ax.text(v, i, f" {v:.2f}", va="center", fontsize="small")
    ax.set_xlim(0, max(1.0, max(v for _, v in ordered) * 1.15))
    ax.set_xlabel("importance (PED-ANOVA, sums to 1)")
    ax.set_title("Optuna parameter importances")
    return fig


# --- the page --------------------------------------------------------------------------------------

CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
table { border-collapse: collapse; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; }
th { background: #f2f2f2; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.best { background: #fff6d5; }
pre { background: #f6f6f6; padding: 1em; overflow-x: auto; }
img { max-width: 100%; }
.note { color: #555; font-style: italic; }
"""


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value)


def _img(name: str, data: bytes, alt: str) -> str:
    encoded = base64.b64encode(data).decode("ascii")
    return f'<img alt="{html.escape(alt)}" title="{html.escape(name)}" src="data:image/png;base64,{encoded}">'


def render_html(
    sweep: SweepRecord, best: TrialRecord, best_yaml: str, images: dict[str, bytes], importances: Importances
) -> str:
    esc = html.escape
    params = sorted({name for t in sweep.trials for name in t.params})
    counts: dict[str, int] = {}
    for t in sweep.trials:
        counts[t.status] = counts.get(t.status, 0) + 1
    columns = ["trial", "status", "epochs", f"{sweep.metric} (last epoch)", *params]
    head = "".join(f"<th>{esc(h)}</th>" for h in columns)
    rows = []
    for t in sorted(sweep.trials, key=lambda t: -(t.value if t.value is not None else -1.0)):
        cells = [
            f"<td>{esc(t.trial_id)}</td>",
            f"<td>{esc(t.status)}</td>",
            f'<td class="num">{t.epochs_run}</td>',
            f'<td class="num">{"" if t.value is None else f"{scaled(t.metric, t.value):.2f}"}</td>',
            *(f'<td class="num">{esc(_fmt(t.params.get(p)))}</td>' for p in params),
        ]
        rows.append(f"<tr{' class=best' if t is best else ''}>{''.join(cells)}</tr>")
    if importances.values:
        imp_rows = "".join(
            f'<tr><td>{esc(k)}</td><td class="num">{v:.3f}</td></tr>'
            for k, v in sorted(importances.values.items(), key=lambda kv: -kv[1])
        )
        importance_html = (
            _img(IMPORTANCE_PLOT, images[IMPORTANCE_PLOT], "Optuna parameter importances")
            + f'<p class="note">{esc(importances.note)}</p>'
            + f"<table><tr><th>parameter</th><th>importance</th></tr>{imp_rows}</table>"
        )
    else:
        importance_html = f'<p class="note">Parameter importances {esc(importances.note)}.</p>'
    summary = ", ".join(f"{n} {esc(s)}" for s, n in sorted(counts.items()))
    best_params = ", ".join(f"{esc(k)}={esc(_fmt(v))}" for k, v in sorted(best.params.items()))
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>ssl-tune sweep report: {esc(Path(sweep.sweep_dir).name)}</title>
<style>{CSS}</style>
</head>
<body>
<h1>Sweep report</h1>
<p>Sweep <code>{esc(sweep.sweep_dir)}</code>: {len(sweep.trials)} trials ({summary}).</p>
<p>Best trial <b>{esc(best.trial_id)}</b>: <b>{esc(format_metric(best.metric, best.value))}</b>
after {best.epochs_run} epochs, with {best_params}.</p>
<h2>{esc(sweep.metric)} per epoch</h2>
{_img(KNN_PLOT, images[KNN_PLOT], f"{sweep.metric} per epoch of every trial")}
<h2>Best {esc(sweep.metric)} against each searched parameter</h2>
{_img(PARAMS_PLOT, images[PARAMS_PLOT], f"{sweep.metric} at each trial's last epoch against each searched parameter")}
<h2>Parameter importances</h2>
{importance_html}
<h2>Best config</h2>
<p>Retrain it with <code>ssl-tune train --config best.yaml --out runs/best</code> (or
<code>ssl-tune export</code>, which writes this file).</p>
<pre id="best-config">{esc(best_yaml)}</pre>
<h2>Trials</h2>
<table>
<tr>{head}</tr>
{chr(10).join(rows)}
</table>
</body>
</html>
"""


# --- writing ---------------------------------------------------------------------------------------
