"""A real sweep on CIFAR-10 whose `test_batch` is garbage: the sweep never reads the test split (any read fails
the md5 check), selects on `val_knn_acc`, and only `ssl-tune eval` touches the test split, afterwards."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest
import torch

from ssl_tune.cli import main
from ssl_tune.models.backbones import build_backbone
from ssl_tune.tune.results import load_sweep
from tests.helpers import TINY_FIXED, run_cli, sweep_cmd, write_space

pytestmark = pytest.mark.slow

EPOCHS = 1
SAMPLES = 1
GARBAGE = b"not the official CIFAR-10 test batch" * 1000


def _cifar_without_test(root: Path, cifar_dir: Path) -> Path:
    """A CIFAR-10 dir: symlinks to the five real train batches and batches.meta, and a garbage test_batch."""
    real = cifar_dir / "cifar-10-batches-py"
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["batches.meta"]:
        (folder / name).symlink_to(real / name)
    (folder / "test_batch").write_bytes(GARBAGE)
    return root


@pytest.fixture(scope="module")
def sweep_on_garbage_test(tmp_path_factory, cifar_dir):
    root = tmp_path_factory.mktemp("never_test")
    data_dir = _cifar_without_test(root / "data", cifar_dir)
    fixed = {**TINY_FIXED, "dataset": "cifar10", "train_subset": 512, "epochs": EPOCHS, "batch_size": 128}
    space = write_space(root / "cifar.yaml", fixed=fixed, sweep={"num_samples": SAMPLES, "cpus_per_worker": 1})
    store = root / "store"
    proc = run_cli(
        sweep_cmd("--space", str(space), "--storage", str(store), "--name", "cifar", "--data-dir", str(data_dir))
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return store / "cifar", data_dir, proc.stdout


def _rows(trial_dir: str) -> list[dict]:
    text = (Path(trial_dir) / "result.json").read_text()
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_sweep_selects_on_val_knn_and_reports_no_test_number(sweep_on_garbage_test):
    sweep_dir, data_dir, stdout = sweep_on_garbage_test
    assert (data_dir / "cifar-10-batches-py" / "test_batch").read_bytes() == GARBAGE  # untouched
    sweep = load_sweep(str(sweep_dir))
    assert sweep.metric == "val_knn_acc"
    assert sweep.data_dir == str(data_dir.resolve())
    assert len(sweep.trials) == SAMPLES
    assert all(t.status.finished_normally for t in sweep.trials), [t.status for t in sweep.trials]
    for t in sweep.trials:
        rows = _rows(t.trial_dir)
        assert [r["epoch"] for r in rows] == list(range(t.epochs_run + 1))
        for r in rows:
            assert 0.0 <= r["val_knn_acc"] <= 1.0, r
            assert not any(k.startswith("test_") for k in r), r  # no test number, not even a null
        assert t.metric == "val_knn_acc" and t.value == rows[-1]["val_knn_acc"] and rows[-1]["epoch"] > 0
    assert re.search(r"best trial \w+: val_knn_acc", stdout)


def test_eval_reads_the_test_split_only_when_asked(sweep_on_garbage_test, cifar_dir, tmp_path, capsys):
    sweep_dir, _, _ = sweep_on_garbage_test
    best = load_sweep(str(sweep_dir)).best()
    eval_file = Path(best.trial_dir) / "eval.json"

    # the data dir the sweep ran on: eval is the first thing to read test_batch, and it is garbage
    assert main(["eval", "--sweep", str(sweep_dir), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "test_batch" in err and "md5 mismatch" in err, err
    assert "Traceback" not in err
    assert not eval_file.exists()

    # the real dataset: kNN and linear probe on the test split, written beside the best trial
    assert main(["eval", "--sweep", str(sweep_dir), "--data-dir", str(cifar_dir), "--device", "cpu"]) == 0
    assert str(eval_file) in capsys.readouterr().out
    result = json.loads(eval_file.read_text())
    for key in ("test_knn_acc", "probe_top1", "probe_top5", "probe_val_top1"):
        assert math.isfinite(result[key]) and 0.0 <= result[key] <= 1.0, (key, result)
    assert result["probe_top5"] >= result["probe_top1"]
    assert math.isfinite(result["probe_weight_decay"]) and result["probe_weight_decay"] >= 0
    assert result["train_images"] == 512 and result["test_images"] == TINY_FIXED["test_subset"]
    # the checkpoint of the trial's value: its last epoch's
    kept = [r for r in _rows(best.trial_dir) if best.checkpoint_of(r) == best.checkpoint]
    assert [r["epoch"] for r in kept] == [result["epoch"]] == [best.epochs_run]
    assert kept[0]["val_knn_acc"] == best.value
    assert Path(result["checkpoint"]).is_relative_to(Path(best.checkpoint))

    # export carries the evaluation and the backbone along
    out = tmp_path / "export"
    assert main(["export", "--sweep", str(sweep_dir), "--out", str(out)]) == 0
    assert json.loads((out / "eval.json").read_text()) == result
    backbone = build_backbone("resnet_tiny", 32)
    backbone.load_state_dict(torch.load(out / "backbone.pt", weights_only=True))
    assert (out / "best_checkpoint.txt").read_text().strip() == best.checkpoint
