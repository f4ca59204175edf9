"""`ssl-tune eval`: the test-split kNN and linear probe of a run's checkpoint, written to eval.json."""

from __future__ import annotations

import json
import math
import re

from ssl_tune.cli import main
from ssl_tune.engine.checkpoint import load_checkpoint
from ssl_tune.engine.evaluate import EVAL_FILE, backbone_state, checkpoint_config


def _train(out, *extra: str) -> None:
    args = ["train", "--dataset", "synthetic", "--train-subset", "384", "--test-subset", "200", "--epochs", "1",
            "--batch-size", "128", "--out", str(out), "--no-progress",
            "--set", "method_params.proj_hidden_dim=64", "--set", "method_params.proj_output_dim=64",
            "--set", "method_params.pred_hidden_dim=16", *extra]  # fmt: skip
    assert main(args) == 0


def test_eval_of_a_run_writes_finite_test_numbers(tmp_path, capsys):
    run = tmp_path / "run"
    _train(run)
    capsys.readouterr()
    assert main(["eval", "--run", str(run)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "linear probe top-1" in lines[-1]
    assert_stage_lines(lines[:-1], train=384, test=200)
    result = json.loads((run / EVAL_FILE).read_text())
    assert result["train_images"] == 384 and result["test_images"] == 200 and result["epoch"] == 1
    for key in ("test_knn_acc", "probe_top1", "probe_top5", "probe_val_top1"):
        assert math.isfinite(result[key]) and 0 <= result[key] <= 1, key
    assert result["probe_top5"] >= result["probe_top1"]
    assert result["test_knn_acc"] > 0.1 and result["probe_top1"] > 0.1  # above chance on 10 classes

    # the same checkpoint named directly gives the same numbers (features are extracted the same way)
    checkpoint = run / "checkpoints" / "last.pt"
    assert main(["eval", "--checkpoint", str(checkpoint)]) == 0
    again = json.loads((checkpoint.parent / EVAL_FILE).read_text())
    assert again["test_knn_acc"] == result["test_knn_acc"] and again["probe_top1"] == result["probe_top1"]

    state = load_checkpoint(checkpoint)
    assert checkpoint_config(state).method == "simsiam"
    assert backbone_state(state) and not any(k.startswith("backbone.") for k in backbone_state(state))


def assert_stage_lines(lines: list[str], train: int, test: int) -> None:
    """A line at the start and end of each stage of evaluate_checkpoint (stderr is no terminal under pytest)."""
    assert len(lines) == 6, lines
    for (start, end), split, n in zip((lines[0:2], lines[2:4]), ("train", "test"), (train, test), strict=True):
        assert start == f"extracting features ({split}): {n} images ..."
        assert re.fullmatch(rf"extracting features \({split}\): {n} images in \d+\.\d s", end), end
    assert re.fullmatch(rf"fitting linear probe \({train} x \d+ features\) \.\.\.", lines[4]), lines[4]
    assert re.fullmatch(r"fitting linear probe: done in \d+\.\d s", lines[5]), lines[5]


def test_eval_without_a_checkpoint_is_refused(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["eval", "--run", str(empty)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "holds no checkpoint" in err, err
    assert list(empty.iterdir()) == []
    assert main(["eval", "--checkpoint", str(tmp_path / "missing.pt")]) == 2
    assert "does not exist" in capsys.readouterr().err
