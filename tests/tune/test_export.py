"""`ssl-tune export` on a sweep directory written as Tune and the recorder write it (files only, no Ray)."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch
import torchvision
import yaml

from ssl_tune.cli import main
from ssl_tune.engine.checkpoint import TRIAL_CHECKPOINT, save_checkpoint
from ssl_tune.errors import UsageError
from ssl_tune.models.backbones import build_backbone
from ssl_tune.tune.export import export
from ssl_tune.tune.results import END_FILE, SWEEP_FILE
from ssl_tune.tune.space import SearchSpace
from tests.helpers import TINY_FIXED


def _method_state() -> dict[str, torch.Tensor]:
    """A method's state_dict as checkpoints hold it: the backbone's keys under `backbone.`, heads beside."""
    torch.manual_seed(0)
    backbone = build_backbone("resnet18", 32)
    return {**{f"backbone.{k}": v for k, v in backbone.state_dict().items()}, "projector.0.weight": torch.ones(2)}


def _sweep(root: Path, trials: dict[str, tuple[dict, list[float], str | None]]) -> Path:
    """A sweep dir: sweep.yaml, and per trial params.json, result.json (one row per epoch) and trial_end.json."""
    space = SearchSpace.model_validate(
        {"fixed": TINY_FIXED, "params": {"lr": {"type": "loguniform", "low": 1e-3, "high": 2.0}}}
    )
    sweep = root / "sweep"
    sweep.mkdir()
    record = {"space": space.model_dump(mode="json"), "data_dir": None, "name": "sweep"}
    (sweep / SWEEP_FILE).write_text(yaml.safe_dump(record))
    for trial_id, (params, knn, status) in trials.items():
        folder = sweep / f"trial-{trial_id}"
        folder.mkdir()
        (folder / "params.json").write_text(json.dumps(params))
        checkpoint = folder / "ckpt"
        checkpoint.mkdir()
        save_checkpoint({"model": _method_state(), "config": {"backbone": "resnet18"}}, checkpoint / TRIAL_CHECKPOINT)
        rows = [{"epoch": e, "val_knn_acc": v, "checkpoint_path": str(checkpoint)} for e, v in enumerate(knn)]
        (folder / "result.json").write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"epoch": 9, "knn')
        if status is not None:
            (folder / END_FILE).write_text(json.dumps({"status": status}))
    return sweep


def test_export_picks_the_best_finished_trial_and_writes_all_files(tmp_path, capsys):
    sweep = _sweep(
        tmp_path,
        {
            "a": ({"lr": 0.1}, [0.2, 0.3, 0.4], "completed"),
            "b": ({"lr": 0.5}, [0.2, 0.45], "stopped"),  # the best of the finished trials
            "c": ({"lr": 1.5}, [0.2, float("nan")], "diverged"),
            "d": ({"lr": 0.01}, [0.2, 0.9], None),  # unfinished: never chosen
        },
    )
    out = tmp_path / "best"
    done = export(str(sweep), out)
    assert done.best.trial_id == "b" and done.trials == 4 and done.checkpoint.endswith("trial-b/ckpt")
    best = yaml.safe_load((out / "best.yaml").read_text())
    assert best["lr"] == 0.5 and best["method"] == "simsiam" and "out" not in best
    table = pq.read_table(out / "trials.parquet").to_pylist()
    by_id = {row["trial_id"]: row for row in table}
    assert by_id["a"]["value"] == 0.4 and by_id["a"]["lr"] == 0.1
    assert by_id["b"]["value"] == 0.45 and by_id["b"]["checkpoint"] == done.checkpoint
    assert by_id["c"]["value"] is None  # diverged: its last epoch is NaN
    assert by_id["c"]["status"] == "diverged" and by_id["d"]["status"] == "unfinished"
    assert (out / "best_checkpoint.txt").read_text().strip() == done.checkpoint

    # backbone.pt is the torchvision model's own state_dict: it loads as docs/guides/sweeps.md shows, without ssl-tune
    model = torchvision.models.resnet18()
    model.conv1 = torch.nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)  # the CIFAR stem
    model.maxpool, model.fc = torch.nn.Identity(), torch.nn.Identity()
    model.load_state_dict(torch.load(out / "backbone.pt", weights_only=True))
    expected = {k.removeprefix("backbone."): v for k, v in _method_state().items() if k.startswith("backbone.")}
    assert all(torch.equal(model.state_dict()[k], v) for k, v in expected.items())
    assert not (out / "eval.json").exists()  # no `ssl-tune eval --sweep` yet
    (sweep / "trial-b" / "eval.json").write_text('{"test_knn_acc": 0.5}\n')
    export(str(sweep), out, force=True)
    assert json.loads((out / "eval.json").read_text()) == {"test_knn_acc": 0.5}

    with pytest.raises(UsageError, match="is not empty"):
        export(str(sweep), out)
    assert main(["export", "--sweep", str(sweep), "--out", str(out), "--force"]) == 0
    assert "best trial b" in capsys.readouterr().out


def test_export_refuses_a_sweep_without_a_finished_trial(tmp_path):
    sweep = _sweep(tmp_path, {"a": ({"lr": 0.1}, [0.2, 0.3], None)})
    with pytest.raises(UsageError, match="no finished trial"):
        export(str(sweep), tmp_path / "out")
    assert not (tmp_path / "out").exists()
    with pytest.raises(UsageError, match="not an ssl-tune sweep"):
        export(str(tmp_path), tmp_path / "out")
