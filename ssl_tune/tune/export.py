"""`ssl-tune export`: the best trial's full config (retrains as is), a Parquet table of all trials,
and the path of the best checkpoint."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from ssl_tune.errors import UsageError
from ssl_tune.storage import absolute, atomic_write
from ssl_tune.tune.results import SweepRecord, load_sweep

FIXED_COLUMNS = ("trial_id", "status", "epochs_run", "best_knn_acc", "last_knn_acc", "best_checkpoint", "trial_dir")


def trials_table(sweep: SweepRecord) -> pa.Table:
    """One row per trial: its searched parameters (null where a conditional one was not drawn) and outcome."""
    param_names = sorted({name for t in sweep.trials for name in t.params})
    rows: list[dict[str, Any]] = []
    for t in sweep.trials:
        row = {
            "trial_id": t.trial_id,
            "status": t.status,
            "epochs_run": t.epochs_run,
            "best_knn_acc": t.best_knn,
            "last_knn_acc": t.last_knn,
            "best_checkpoint": t.best_checkpoint,
            "trial_dir": t.trial_dir,
        }
        row.update({name: t.params.get(name) for name in param_names})
        rows.append(row)
    columns = list(FIXED_COLUMNS) + param_names
    return pa.Table.from_pylist(rows, schema=_schema(rows, columns))


def _schema(rows: list[dict[str, Any]], columns: list[str]) -> pa.Schema:
    fields = []
    for name in columns:
        values = [r[name] for r in rows if r[name] is not None]
        if all(isinstance(v, bool) for v in values) and values:
            typ = pa.bool_()
        elif all(isinstance(v, int) and not isinstance(v, bool) for v in values) and values:
            typ = pa.int64()
        elif all(isinstance(v, int | float) and not isinstance(v, bool) for v in values) and values:
            typ = pa.float64()
        else:
            typ = pa.string()
            for r in rows:
                r[name] = None if r[name] is None else str(r[name])
        fields.append(pa.field(name, typ))
    return pa.schema(fields)


def export(sweep_dir: str, out: Path, force: bool = False) -> dict[str, Any]:
    """Write best.yaml, trials.parquet and best_checkpoint.txt into `out`. Checks everything first."""
    sweep = load_sweep(absolute(sweep_dir))
    best = sweep.best()
    config = sweep.space.train_config(best.params, sweep.data_dir).to_yaml_dict()
    config.pop("out", None)
    table = trials_table(sweep)
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not force:
        raise UsageError(f"--out {out} is not empty: pass --force to overwrite it")
    if force and out.is_dir():
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    header = (
        f"# best trial {best.trial_id} of {sweep.sweep_dir}: knn_acc {best.best_knn:.4f}\n"
        f"# retrain: ssl-tune train --config {out / 'best.yaml'} --out runs/best\n"
    )
    atomic_write(out / "best.yaml", lambda f: f.write((header + yaml.safe_dump(config, sort_keys=False)).encode()))
    atomic_write(out / "trials.parquet", lambda f: pq.write_table(table, f))
    checkpoint = best.best_checkpoint or ""
    atomic_write(out / "best_checkpoint.txt", lambda f: f.write((checkpoint + "\n").encode()))
    return {"best": best, "trials": table.num_rows, "checkpoint": checkpoint, "out": out}
