"""A real sweep selecting on LiDAR: its trials measure LiDAR each epoch, ASHA's rungs and Optuna's study hold their
LiDAR (not the kNN accuracy they also monitor), and export picks on it. A space drawing several methods is
refused on a label-free metric in one line, unless --rank-across-methods insists."""

from __future__ import annotations

import json
import math
from pathlib import Path

import optuna
import pytest
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend

from ssl_tune.cli import main
from ssl_tune.tune.results import load_sweep
from ssl_tune.tune.scheduler import ASHA_STATE_FILE
from ssl_tune.tune.searcher import OPTUNA_FILE, TUNE_TRIAL_ID
from tests.helpers import run_cli, sweep_cmd, write_space

SAMPLES, EPOCHS = 3, 2
LABEL_FREE_FIXED = {"epochs": EPOCHS, "lidar_images": 64, "lidar_views": 4, "image_size": 16}


@pytest.fixture(scope="module")
def lidar_sweep(tmp_path_factory):
    root = tmp_path_factory.mktemp("lidar")
    space = write_space(
        root / "lidar.yaml",
        fixed=LABEL_FREE_FIXED,
        asha={"grace_period": 1, "reduction_factor": 2},
        sweep={"num_samples": SAMPLES, "max_concurrent": 1},
    )
    proc = run_cli(sweep_cmd("--space", str(space), "--storage", str(root / "store"), "--metric", "lidar"))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return root / "store" / "lidar"


def _rows(trial) -> list[dict]:
    return [json.loads(x) for x in (Path(trial.trial_dir) / "result.json").read_text().splitlines() if x.strip()]


@pytest.mark.slow
def test_a_sweep_selects_on_lidar(lidar_sweep):
    sweep = load_sweep(str(lidar_sweep))
    assert sweep.metric == "lidar" and len(sweep.trials) == SAMPLES
    at_rung: dict[str, float] = {}
    for t in sweep.trials:
        assert t.status.finished_normally, t.status
        rows = _rows(t)
        for r in rows:
            assert math.isfinite(r["lidar"]) and 1.0 <= r["lidar"] <= 64, r
            assert "val_knn_acc" in r  # the kNN is still monitored, beside
        assert t.value == rows[-1]["lidar"] and t.peak()[1] == max(r["lidar"] for r in rows if r["epoch"] > 0)
        at_rung[t.trial_id] = next(r["lidar"] for r in rows if r["epoch"] == 1)

    # ASHA's rung at epoch 1 recorded each trial's LiDAR
    rungs = json.loads((lidar_sweep / ASHA_STATE_FILE).read_text())["rungs"]
    recorded = {
        tid: v for bracket in rungs for milestone, values in bracket if milestone == 1 for tid, v in values.items()
    }
    assert recorded == pytest.approx(at_rung)

    # Optuna was told each trial's last LiDAR
    study = optuna.load_study(
        study_name=None, storage=JournalStorage(JournalFileBackend(str(lidar_sweep / OPTUNA_FILE)))
    )
    told = {ot.user_attrs[TUNE_TRIAL_ID]: ot.value for ot in study.trials}
    assert told == pytest.approx({t.trial_id: _rows(t)[-1]["lidar"] for t in sweep.trials})
    assert sweep.best().trial_id == max(sweep.trials, key=lambda t: t.value).trial_id


@pytest.mark.parametrize("metric", ["lidar", "alpha_req", "rankme"])
def test_a_label_free_metric_across_methods_is_refused(tmp_path, capsys, metric):
    import ray

    space = write_space(
        tmp_path / "mixed.yaml",
        fixed=LABEL_FREE_FIXED,
        params={"method": {"type": "categorical", "choices": ["simsiam", "byol"]}},
    )
    store = tmp_path / "store"
    code = main(["sweep", "--space", str(space), "--storage", str(store), "--metric", metric])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.count("\n") == 1 and f"--metric {metric} ranks runs of one method" in err, err
    assert "--rank-across-methods" in err and "simsiam, byol" in err
    assert not store.exists() and not ray.is_initialized()


def test_rank_across_methods_lets_it_through():
    from ssl_tune.tune.checks import check_one_method
    from ssl_tune.tune.space import SearchSpace

    mixed = {"params": {"method": {"type": "categorical", "choices": ["simsiam", "byol"]}}}
    check_one_method(SearchSpace.model_validate(mixed), "val_knn_acc")  # labels compare across methods
    check_one_method(SearchSpace.model_validate({**mixed, "sweep": {"rank_across_methods": True}}), "lidar")


@pytest.mark.parametrize("metric", ["lidar", "alpha_req", "rankme"])
def test_a_sweep_measures_the_label_free_metric_it_selects_on(metric):
    from ssl_tune.tune.space import SearchSpace

    space = SearchSpace.model_validate({"params": {"lr": {"type": "loguniform", "low": 0.01, "high": 1.0}},
                                        "sweep": {"metric": metric}})  # fmt: skip
    cfg = space.train_config({"lr": 0.1})
    measured = {name for name in ("rankme", "lidar", "alpha_req") if getattr(cfg, name)}
    assert measured == {metric} and cfg.monitor == "val"
