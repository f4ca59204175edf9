"""`curves.parquet`: every epoch of every trial of a sweep (or of a benchmark's sweeps), in one table, so that a
later tool can replay search strategies (another searcher, other ASHA rungs) on recorded curves without retraining.

A row per (trial, epoch), epoch 0 (the random network) included, as the sweep's files hold them (each epoch once,
as the trial's latest attempt reported it): the trial's id, how it ended, its searched parameters (`config`, JSON),
its seed, the epoch, every metric the epoch reported (null where a trial has none of that name), and `seconds`,
the trial's wall time up to that epoch's report (Tune's `time_total_s`: start-up, evaluation and training).
"""

from __future__ import annotations

import io
import json
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from ssl_tune.metrics import EPOCH, STATUS
from ssl_tune.storage import join, write_bytes
from ssl_tune.tune.results import TOTAL_KEY, SweepRecord

CURVES_FILE = "curves.parquet"
# Tune's bookkeeping in result.json, not the epoch's metrics
TUNE_KEYS = frozenset(
    {
        "timestamp", "done", "should_checkpoint", "training_iteration", "trial_id", "date", "time_this_iter_s",
        TOTAL_KEY, "pid", "hostname", "node_ip", "config", "time_since_restore", "iterations_since_restore",
        "checkpoint_dir_name", "checkpoint_path",
    }
)  # fmt: skip
FIXED_COLUMNS = ("trial_id", "end_status", "config", "seed", EPOCH, "seconds", STATUS)


def curve_rows(sweep: SweepRecord) -> list[dict[str, Any]]:
    """The rows of `sweep`'s curves (see the module's docstring)."""
    rows = []
    for trial in sweep.trials:
        seed = sweep.space.train_config(trial.params, sweep.data_dir).seed
        config = json.dumps(trial.params, sort_keys=True)
        for result in trial.results:
            row: dict[str, Any] = {
                "trial_id": trial.trial_id,
                "end_status": trial.status.value,
                "config": config,
                "seed": seed,
                EPOCH: int(result[EPOCH]),
                "seconds": _number(result.get(TOTAL_KEY)),
                STATUS: result.get(STATUS),
            }
            for key, value in result.items():
                if key not in TUNE_KEYS and key not in row and (number := _number(value)) is not None:
                    row[key] = number
            rows.append(row)
    return rows


def curves_table(rows: list[dict[str, Any]], first: tuple[str, ...] = ()) -> pa.Table:
    """The rows as a table: `first` and the fixed columns, then every metric (float64, sorted by name)."""
    fixed = [*first, *FIXED_COLUMNS]
    metrics = sorted({key for row in rows for key in row} - set(fixed))
    types = {EPOCH: pa.int64(), "seed": pa.int64(), "seconds": pa.float64()}
    schema = pa.schema([(name, types.get(name, pa.string())) for name in fixed])
    schema = pa.schema([*schema, *((name, pa.float64()) for name in metrics)])
    return pa.Table.from_pylist([{name: row.get(name) for name in schema.names} for row in rows], schema=schema)


def write_curves(location: str, table: pa.Table) -> str:
    """Write `table` as `location`/curves.parquet in one atomic write; returns its path."""
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    path = join(location, CURVES_FILE)
    write_bytes(path, buffer.getvalue())
    return path


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)
