"""`ssl-tune train` end to end: outputs, bad input refused with exit 2, kill and --resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from ssl_tune.cli import main
from tests.helpers import REPO, SMALL_SIMSIAM

SMALL = [
    "--method",
    "simsiam",
    "--backbone",
    "resnet_tiny",
    "--dataset",
    "synthetic",
    "--train-subset",
    "512",
    "--test-subset",
    "128",
    "--batch-size",
    "128",
    "--no-progress",
]
SMALL += [arg for k, v in SMALL_SIMSIAM.items() for arg in ("--set", f"method_params.{k}={v}")]


def read_metrics(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_train_writes_metrics_checkpoint_tensorboard_and_config(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", *SMALL, "--epochs", "2", "--out", str(out)]) == 0
    rows = read_metrics(out)
    assert [r["epoch"] for r in rows] == [0, 1, 2]
    for r in rows[1:]:
        assert {"epoch", "loss", "test_knn_acc", "lr", "epoch_time_s"} <= r.keys()
        assert r["loss"] is not None and 0.0 <= r["test_knn_acc"] <= 1.0 and r["epoch_time_s"] > 0
    assert rows[0]["loss"] is None and 0.0 <= rows[0]["test_knn_acc"] <= 1.0
    assert (out / "checkpoints" / "last.pt").is_file() and (out / "backbone.pt").is_file()
    assert list((out / "tensorboard").glob("events.out.tfevents.*"))
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["epochs"] == 2 and saved["method_params"]["proj_hidden_dim"] == 256
    assert "knn" in capsys.readouterr().out


class _Trained(Exception):
    """Raised instead of training: its args are what `train` was given."""


def _config_of_train(monkeypatch, argv: list[str]):
    """The config and run directory `ssl-tune train ARGV` would train with (built by the API), training nothing."""

    def trained(cfg, out, **_):
        raise _Trained(cfg, out)

    monkeypatch.setattr("ssl_tune.engine.run_dir.train", trained)
    with pytest.raises(_Trained) as ran:
        main(["train", *argv])
    return ran.value.args


def test_config_file_flags_and_set_precedence(tmp_path, monkeypatch):
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text("method: simsiam\nepochs: 3\nlr: 0.1\nbatch_size: 64\naugment: {hue: 0.05}\nout: a\n")
    argv = ["--config", str(cfg_file), "--epochs", "5", "--set", "lr=0.2", "--set", "augment.blur_prob=0.5"]
    cfg, out = _config_of_train(monkeypatch, [*argv, "--out", str(tmp_path / "b")])
    assert (cfg.epochs, cfg.lr, cfg.batch_size) == (5, 0.2, 64)  # flag > file, --set > file
    assert cfg.augment.hue == 0.05 and cfg.augment.blur_prob == 0.5
    assert cfg.weight_decay == 1e-5  # simsiam's own default
    assert cfg.out == str(tmp_path / "b") and out == tmp_path / "b"  # --out > file, and the saved config has it
    cfg, out = _config_of_train(monkeypatch, [*argv, "--out", "b", "--set", f"out={tmp_path / 'c'}"])
    assert cfg.out == str(tmp_path / "c") and out == tmp_path / "c"  # --set > flag
    cfg, out = _config_of_train(monkeypatch, argv)
    assert cfg.out == "a" and out == Path("a")  # the file's


def test_missing_out_is_refused_with_the_clis_message(tmp_path, capsys):
    assert main(["train", *SMALL]) == 2
    assert capsys.readouterr().err == "ssl-tune train: error: --out DIR is required (or 'out:' in the config)\n"
    assert main(["train", *SMALL, "--resume"]) == 2
    assert capsys.readouterr().err == "ssl-tune train: error: --resume needs --out DIR (the run to continue)\n"


def _corrupt_cifar(tmp_path: Path, cifar_dir: Path) -> Path:
    root = tmp_path / "corrupt"
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for f in (cifar_dir / "cifar-10-batches-py").iterdir():
        (folder / f.name).symlink_to(f)
    (folder / "data_batch_3").unlink()
    (folder / "data_batch_3").write_bytes(b"not the official file")
    return root


BAD_INPUTS = {
    "unknown method": (["--method", "simsiamese"], "unknown method 'simsiamese'"),
    "unknown backbone": (["--backbone", "resnet7"], "unknown backbone 'resnet7'"),
    "unknown dataset": (["--dataset", "mnist"], "unknown dataset 'mnist'"),
    "no dataset in dir": (["--dataset", "cifar10", "--data-dir", "{empty}"], "no cifar10 in"),
    "md5 mismatch": (["--dataset", "cifar10", "--data-dir", "{corrupt}"], "data_batch_3: md5 mismatch"),
    "unknown --set key": (["--set", "learning_rate=0.1"], "unknown config key 'learning_rate'"),
    "ill-typed --set": (["--set", "epochs=many"], "config key 'epochs'"),
    "boolean for a number": (["--set", "epochs=yes"], "config key 'epochs': expected a number, not the boolean True"),
    "boolean for a nested number": (["--set", "augment.flip_prob=true"], "'augment.flip_prob': expected a number"),
    "ill-typed nested --set": (["--set", "method_params.pred_hidden_dim=wide"], "method_params.pred_hidden_dim"),
    "batch larger than subset": (["--batch-size", "1024"], "batch_size 1024 is larger than the training set"),
    "kNN bank larger than subset": (["--set", "knn_bank_subset=100000"], "knn_bank_subset 100000 is larger"),
    "zero epochs": (["--epochs", "0"], "config key 'epochs': Input should be greater than 0"),
    "negative epochs": (["--epochs", "-3"], "config key 'epochs'"),
    "missing config": (["--config", "{missing}"], "cannot read config"),
    "malformed config": (["--config", "{malformed}"], "is not valid YAML"),
    "config not a mapping": (["--config", "{listcfg}"], "must be a YAML mapping"),
    "--set without =": (["--set", "epochs"], "--set expects key=value"),
    "--set of a train option": (["--set", "force=true"], "unknown config key 'force'"),
}


@pytest.mark.parametrize("case", BAD_INPUTS, ids=list(BAD_INPUTS))
def test_bad_input_exits_2_with_one_line_and_writes_nothing(case, tmp_path, capsys, cifar_dir):
    args, expected = BAD_INPUTS[case]
    (tmp_path / "empty").mkdir()
    (tmp_path / "malformed.yaml").write_text("epochs: [1, 2\nlr: 0.1\n")
    (tmp_path / "list.yaml").write_text("- epochs\n- 3\n")
    paths = {
        "empty": tmp_path / "empty",
        "missing": tmp_path / "nope.yaml",
        "malformed": tmp_path / "malformed.yaml",
        "listcfg": tmp_path / "list.yaml",
    }
    if case == "md5 mismatch":
        paths["corrupt"] = _corrupt_cifar(tmp_path, cifar_dir)
    args = [a.format(**paths) for a in args]
    out = tmp_path / "out"
    code = main(["train", *SMALL, "--epochs", "1", *args, "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and expected in err, err
    assert "Traceback" not in err
    assert not out.exists()


def test_existing_output_needs_resume_or_force(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("precious")
    assert main(["train", *SMALL, "--epochs", "1", "--out", str(out)]) == 2
    assert "--force" in capsys.readouterr().err
    assert (out / "keep.txt").read_text() == "precious"
    assert main(["train", *SMALL, "--epochs", "1", "--out", str(out), "--force"]) == 0
    assert not (out / "keep.txt").exists() and (out / "metrics.jsonl").is_file()


def test_bad_input_from_a_real_process_has_no_traceback(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "ssl_tune", "train", "--method", "nope", "--out", str(tmp_path / "o")],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()] and "Traceback" not in proc.stderr
    assert not (tmp_path / "o").exists()


def test_help_lists_subcommands():
    proc = subprocess.run([sys.executable, "-m", "ssl_tune", "--help"], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0
    for command in ("train", "sweep", "export", "eval", "confirm", "report", "cluster", "data", "bench"):
        assert command in proc.stdout, command


@pytest.mark.slow
def test_kill_after_second_epoch_then_resume_matches_uninterrupted_run(tmp_path):
    epochs = 4
    run_args = [*SMALL, "--train-subset", "2048", "--test-subset", "256", "--epochs", str(epochs), "--seed", "7"]
    killed = tmp_path / "killed"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "ssl_tune", "train", *run_args, "--out", str(killed)],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.time() + 300
    try:
        while time.time() < deadline:
            metrics = killed / "metrics.jsonl"
            if metrics.is_file() and any(json.loads(x)["epoch"] == 2 for x in metrics.read_text().splitlines()):
                break
            assert proc.poll() is None, proc.stdout.read()
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    done = [r["epoch"] for r in read_metrics(killed)]
    assert 2 in done and done[-1] < epochs, f"the kill came too late: {done}"

    assert main(["train", *run_args, "--out", str(killed), "--resume"]) == 0
    assert [r["epoch"] for r in read_metrics(killed)] == list(range(epochs + 1))

    clean = tmp_path / "clean"
    assert main(["train", *run_args, "--out", str(clean)]) == 0
    a = torch.load(killed / "checkpoints" / "last.pt", weights_only=True)["model"]
    b = torch.load(clean / "checkpoints" / "last.pt", weights_only=True)["model"]
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    killed_rows, clean_rows = read_metrics(killed), read_metrics(clean)
    assert [r["loss"] for r in killed_rows] == [r["loss"] for r in clean_rows]
    assert [r["test_knn_acc"] for r in killed_rows] == [r["test_knn_acc"] for r in clean_rows]


def test_resume_without_checkpoint_is_refused(tmp_path, capsys):
    assert main(["train", *SMALL, "--out", str(tmp_path / "none"), "--resume"]) == 2
    assert "no checkpoint" in capsys.readouterr().err
