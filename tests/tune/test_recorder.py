"""The sweep driver's per-trial records: end states, plotted scalars, and TensorBoard HParams sessions."""

from __future__ import annotations

import math

from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2

from ssl_tune.metrics import TrialStatus
from ssl_tune.tune.recorder import scalar_items, session_end, session_start, trial_status


def _plugin_data(summary) -> plugin_data_pb2.HParamsPluginData:
    (value,) = summary.value
    assert value.metadata.plugin_data.plugin_name == metadata.PLUGIN_NAME
    return plugin_data_pb2.HParamsPluginData.FromString(value.metadata.plugin_data.content)


def test_trial_status_from_the_last_result():
    assert trial_status({"epoch": 5, "status": "ok"}, errored=False, max_epochs=5) is TrialStatus.COMPLETED
    assert trial_status({"epoch": 2, "status": "ok"}, errored=False, max_epochs=5) is TrialStatus.STOPPED
    assert trial_status({"epoch": 2, "status": "diverged"}, errored=False, max_epochs=5) is TrialStatus.DIVERGED
    assert trial_status({"epoch": 5, "status": "collapsed"}, errored=False, max_epochs=5) is TrialStatus.COLLAPSED
    assert trial_status({"epoch": 5, "status": "ok"}, errored=True, max_epochs=5) is TrialStatus.ERROR
    assert trial_status({}, errored=False, max_epochs=5) is TrialStatus.STOPPED  # ended before its first result


def test_scalar_items_keep_finite_metrics_only():
    result = {
        "epoch": 3,
        "val_knn_acc": 0.5,
        "loss": float("nan"),
        "lr": 0.1,
        "teacher_entropy": 2.0,
        "status": "ok",
        "time_total_s": 12.0,  # Tune's own bookkeeping: not a metric of ours
        "done": False,
    }
    assert scalar_items(result) == {"val_knn_acc": 0.5, "lr": 0.1, "teacher_entropy": 2.0}


def test_hparams_session_start_types_each_value():
    data = _plugin_data(session_start({"lr": 0.1, "epochs": 3, "method": "simsiam", "compile": True, "x": None}, "t1"))
    info = data.session_start_info
    assert info.group_name == "t1"
    assert math.isclose(info.hparams["lr"].number_value, 0.1) and info.hparams["epochs"].number_value == 3
    assert info.hparams["method"].string_value == "simsiam" and info.hparams["compile"].bool_value is True
    assert "x" not in info.hparams


def test_hparams_session_end_status():
    def end(status: TrialStatus) -> int:
        return _plugin_data(session_end(status)).session_end_info.status

    assert end(TrialStatus.COMPLETED) == end(TrialStatus.STOPPED) == api_pb2.STATUS_SUCCESS
    assert end(TrialStatus.DIVERGED) == end(TrialStatus.COLLAPSED) == end(TrialStatus.ERROR) == api_pb2.STATUS_FAILURE
    assert end(TrialStatus.UNFINISHED) == api_pb2.STATUS_UNKNOWN
