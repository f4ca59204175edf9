"""`ssl-tune export`: the best trial's full config (retrains as is), a Parquet table of all trials, the path of
the best checkpoint, its backbone as a plain torchvision state_dict (`backbone.pt`), and the trial's `eval.json`
when `ssl-tune eval --sweep` wrote one."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from ssl_tune.engine.checkpoint import checkpoint_file, load_checkpoint
from ssl_tune.engine.evaluate import EVAL_FILE, backbone_state
from ssl_tune.storage import absolute, check_bucket, exists, join, read_text, require_empty_output, write_dir
from ssl_tune.tune.results import SweepRecord, TrialRecord, load_sweep

BACKBONE_FILE = "backbone.pt"

FIXED_COLUMNS = (
    "trial_id", "status", "epochs_run", "metric", "value", "checkpoint", "trial_dir"
)  # fmt: skip


def trials_table(sweep: SweepRecord) -> pa.Table:
    """One row per trial: its searched parameters (null where a conditional one was not drawn) and outcome."""
    param_names = sorted({name for t in sweep.trials for name in t.params})
    rows: list[dict[str, Any]] = []
    for t in sweep.trials:
        row = {
            "trial_id": t.trial_id,
            "status": t.status.value,
            "epochs_run": t.epochs_run,
            "metric": t.metric,
            "value": t.value,  # the selection metric at its last trained epoch
            "checkpoint": t.checkpoint,
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


@dataclass(frozen=True)
class ExportResult:
    """What `export` wrote: the folder, the best trial, the number of trials and the best checkpoint ("" if none)."""

    out: str
    best: TrialRecord
    trials: int
    checkpoint: str


def export(sweep_dir: str, out: str | Path, force: bool = False) -> ExportResult:
    """Write best.yaml, trials.parquet and best_checkpoint.txt into `out` (a folder or a URI), all at once.
    Checks everything first."""
    out = absolute(str(out))
    check_bucket(out)
    sweep = load_sweep(absolute(sweep_dir))
    best = sweep.best()
    config = sweep.space.train_config(best.params, sweep.data_dir).to_yaml_dict()
    config.pop("out", None)
    table = trials_table(sweep)
    require_empty_output(out, force=force)
    header = (
        f"# best trial {best.trial_id} of {sweep.sweep_dir}: {best.metric} {best.value:.4f}\n"
        f"# retrain: ssl-tune train --config {join(out, 'best.yaml')} --out runs/best\n"
    )
    parquet = pa.BufferOutputStream()
    pq.write_table(table, parquet)
    checkpoint = best.checkpoint or ""
    files = {
        "best.yaml": (header + yaml.safe_dump(config, sort_keys=False)).encode(),
        "trials.parquet": parquet.getvalue().to_pybytes(),
        "best_checkpoint.txt": (checkpoint + "\n").encode(),
    }
    if checkpoint:  # the torchvision model's plain state_dict: loads without ssl-tune
        files[BACKBONE_FILE] = _backbone_bytes(checkpoint)
    if exists(evaluation := join(best.trial_dir, EVAL_FILE)):  # `ssl-tune eval --sweep` wrote it
        files[EVAL_FILE] = read_text(evaluation).encode()
    write_dir(out, files)
    return ExportResult(out, best, table.num_rows, checkpoint)


def _backbone_bytes(checkpoint: str) -> bytes:
    import io

    import torch

    state = load_checkpoint(checkpoint_file(checkpoint))
    buf = io.BytesIO()
    torch.save(backbone_state(state), buf)
    return buf.getvalue()
