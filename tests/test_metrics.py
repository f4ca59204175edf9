"""The typed epoch metrics and statuses that every log, report and sweep reads."""

from __future__ import annotations

import math

from ssl_tune.engine.runlog import SCALARS, format_epoch
from ssl_tune.metrics import SELECTION_METRIC, EpochMetrics, TrialStatus, finite


def _epoch(**kw) -> EpochMetrics:
    base = dict(epoch=2, val_knn_acc=0.4, lr=0.1, epoch_time_s=3.0, eval_time_s=0.5, images_per_s=100.0)
    return EpochMetrics(**{**base, **kw})


def test_to_dict_is_flat_and_round_trips():
    m = _epoch(loss=1.5, status=TrialStatus.COLLAPSED, extras={"teacher_entropy": 2.5})
    d = m.to_dict()
    assert d["status"] == "collapsed" and isinstance(d["status"], str) and d["teacher_entropy"] == 2.5
    assert "extras" not in d and d[SELECTION_METRIC] == 0.4
    assert EpochMetrics.from_dict(d) == m
    assert EpochMetrics.from_dict({**d, "status": "ok"}).stopped is False and m.stopped


def test_from_dict_ignores_non_numeric_unknown_keys():
    d = {**_epoch().to_dict(), "hostname": "x", "done": True, "nan_extra": float("nan")}
    assert EpochMetrics.from_dict(d).extras == {}


def test_statuses():
    assert TrialStatus("stopped").finished_normally and TrialStatus.COMPLETED.finished_normally
    assert not any(TrialStatus(s).finished_normally for s in ("ok", "diverged", "collapsed", "error", "unfinished"))
    assert f"{TrialStatus.DIVERGED}" == "diverged" and TrialStatus.DIVERGED == "diverged"


def test_finite():
    assert finite(1) == 1.0 and finite(0.5) == 0.5
    assert finite(True) is None and finite(float("nan")) is None and finite(math.inf) is None and finite("1") is None


def test_scalars_and_console_line():
    assert SELECTION_METRIC in SCALARS and "status" not in SCALARS and "epoch" not in SCALARS
    line = format_epoch(_epoch(loss=1.25, status=TrialStatus.DIVERGED, val_knn_acc=float("nan")), epochs=5)
    assert line.startswith("epoch   2/5") and "loss 1.2500" in line and "val knn n/a" in line and "[diverged]" in line
