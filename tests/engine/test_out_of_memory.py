"""A CUDA out-of-memory error (simulated: raised from a patched training step, as no GPU is here) ends a run with
one line naming its batch and how it shares its GPU, and a sweep does not retry the trial: the same batch would
fail again."""

from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path

import pytest
import torch

from ssl_tune.cli import main
from ssl_tune.engine.run import TrainingRun
from tests.cli.test_train_cli import SMALL, read_metrics
from tests.helpers import run_cli, sweep_cmd, write_space

OOM = "CUDA out of memory. Tried to allocate 2.00 GiB (simulated)"


def test_train_ends_an_out_of_memory_run_with_one_line(tmp_path, capsys, monkeypatch):
    step = TrainingRun.train_step

    def fails_in_epoch_two(self, views, progress):
        if progress.epoch >= 1:
            raise torch.OutOfMemoryError(OOM)
        return step(self, views, progress)

    monkeypatch.setattr(TrainingRun, "train_step", fails_in_epoch_two)
    out = tmp_path / "run"
    assert main(["train", *SMALL, "--epochs", "3", "--out", str(out)]) == 1  # a run stopped on its own terms
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in err[0], err
    assert "training stopped at epoch 2: out of device memory at batch_size 128" in err[0]
    assert "lower batch_size" in err[0]
    rows = read_metrics(out)
    assert [r["epoch"] for r in rows] == [0, 1, 2] and rows[-1]["status"] == "out_of_memory"
    assert not (out / "backbone.pt").exists()


PATCH = textwrap.dedent('''
    """Test-only: every process of this sweep (Ray's trial workers included) gets a TrainingRun whose step raises
    a CUDA out-of-memory error from epoch 2 on, for batches of 128 images or more."""
    import importlib.abc
    import importlib.util
    import sys


    class _PatchTrainStep(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if name != "ssl_tune.engine.run":
                return None
            sys.meta_path.remove(self)
            spec = importlib.util.find_spec(name)
            run_module = spec.loader.exec_module

            def exec_module(module):
                run_module(module)
                step = module.TrainingRun.train_step

                def train_step(self, views, progress):
                    if self.cfg.batch_size >= 128 and progress.epoch >= 1:
                        import torch

                        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (simulated)")
                    return step(self, views, progress)

                module.TrainingRun.train_step = train_step

            spec.loader.exec_module = exec_module
            return spec


    sys.meta_path.insert(0, _PatchTrainStep())
''')


@pytest.mark.slow
def test_a_sweep_trial_out_of_memory_is_one_line_and_not_retried(tmp_path):
    patch_dir = tmp_path / "patch"
    patch_dir.mkdir()
    (patch_dir / "sitecustomize.py").write_text(PATCH)
    space = write_space(
        tmp_path / "space.yaml",
        params={"batch_size": {"type": "categorical", "choices": [64, 128]}},
        points_to_evaluate=[{"batch_size": 64}, {"batch_size": 128}],
        sweep={"num_samples": 2, "max_failures": 2, "try_default": False, "max_concurrent": 1},
        asha={"grace_period": 3},
    )
    env = {"PYTHONPATH": os.pathsep.join([str(patch_dir), os.environ.get("PYTHONPATH", "")])}
    proc = run_cli(sweep_cmd("--space", str(space), "--storage", str(tmp_path / "sw"), "--name", "oom"), env=env)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-3000:]
    ends_line = [line for line in output.splitlines() if "out_of_memory at epoch" in line]
    assert len(ends_line) == 1, output[-3000:]  # one trial, one attempt
    assert "out_of_memory at epoch 2" in ends_line[0]
    assert (
        ": out of device memory at batch_size 128 (128 images per worker, resnet_tiny, no GPU): lower" in ends_line[0]
    )
    assert "Traceback" not in output and "OutOfMemoryError" not in output
    assert "2 trials, 0 errors" in output and "1 trials ran out of device memory and were not retried" in output
    ends = {}
    for trial in Path(tmp_path / "sw" / "oom").glob("trial-*"):
        rows = [json.loads(r) for r in (trial / "result.json").read_text().splitlines()]
        ends[rows[0]["config"]["batch_size"]] = (
            json.loads((trial / "trial_end.json").read_text())["status"],
            [r["epoch"] for r in rows],
        )
    assert ends[128] == ("out_of_memory", [0, 1, 2]), ends
    assert ends[64] == ("completed", [0, 1, 2, 3]), ends
