"""The Python API (`ssl_tune.train`, `sweep`, `export`, `evaluate`, `pack`): the CLI's settings in, typed results
out."""

from __future__ import annotations

import pytest
import yaml

import ssl_tune
from ssl_tune.config import TrainConfig
from ssl_tune.data.parquet import PackResult
from ssl_tune.engine.run_dir import TrainResult
from ssl_tune.errors import UsageError
from ssl_tune.tune.checks import check_sweep
from ssl_tune.tune.results import load_sweep
from ssl_tune.tune.sweep import SweepResult
from tests.helpers import TINY_FIXED, run_cli, sweep_cmd, write_space

TINY_TRAIN = {
    "method": "simclr", "backbone": "resnet_tiny", "dataset": "synthetic", "train_subset": 256, "test_subset": 64,
    "batch_size": 64, "image_size": 16, "epochs": 3,
}  # fmt: skip


@pytest.mark.slow  # three short trainings
def test_train_takes_a_dict_a_yaml_path_or_the_model_and_keyword_overrides(tmp_path):
    result = ssl_tune.train(TINY_TRAIN, out=tmp_path / "a", epochs=1, **{"method_params.temperature": 0.3})
    assert isinstance(result, TrainResult) and result.final.epoch == 1 and result.out == tmp_path / "a"
    saved = yaml.safe_load((tmp_path / "a" / "config.yaml").read_text())
    assert saved["epochs"] == 1 and saved["method_params"]["temperature"] == 0.3
    # the saved YAML and the model retrain the same config
    again = ssl_tune.train(tmp_path / "a" / "config.yaml", out=tmp_path / "b", progress_bar=False)
    model = TrainConfig.model_validate(saved)
    third = ssl_tune.train(model, out=tmp_path / "c", progress_bar=False)
    assert again.final.test_knn_acc == pytest.approx(result.final.test_knn_acc)
    assert third.final.test_knn_acc == pytest.approx(result.final.test_knn_acc)


def test_bad_settings_raise_the_clis_one_line_usage_error(tmp_path):
    with pytest.raises(UsageError, match="epochs"):
        ssl_tune.train(TINY_TRAIN, out=tmp_path / "x", epochs=0)
    with pytest.raises(UsageError, match="--out DIR is required"):
        ssl_tune.train(TINY_TRAIN)
    with pytest.raises(UsageError, match="name the sweep"):
        ssl_tune.sweep(yaml.safe_load(write_space(tmp_path / "s.yaml").read_text()), storage=tmp_path)
    with pytest.raises(UsageError, match="unknown tracker"):
        ssl_tune.sweep(write_space(tmp_path / "s.yaml"), storage=tmp_path, log=["neptune"])
    assert not (tmp_path / "x").exists() and not (tmp_path / "s").exists()


def test_sweep_merges_fixed_and_keyword_overrides_section_by_section(tmp_path, monkeypatch):
    checked = []  # what the sweep would run: check_sweep() checks everything before Ray starts
    monkeypatch.setattr("ssl_tune.tune.sweep.run_sweep", lambda request: checked.append(check_sweep(request)))
    space = write_space(tmp_path / "s.yaml")
    ssl_tune.sweep(space, storage=tmp_path, fixed={"augment": {"flip_prob": 0.3}}, **{"augment.blur_prob": 0.1})
    fixed = checked[0].space.fixed
    assert (fixed["augment"]["flip_prob"], fixed["augment"]["blur_prob"]) == (0.3, 0.1)
    assert fixed["method_params"] == TINY_FIXED["method_params"]  # the space's own, kept


def test_pack_returns_the_manifest_and_refuses_bad_input_before_writing(tmp_path):
    result = ssl_tune.pack("synthetic", tmp_path / "p", train_subset=40, test_subset=20, image_size=16, shard_size=20)
    assert isinstance(result, PackResult) and result.skipped == 0 and result.manifest.image_size == 16
    assert [sum(s.rows for s in result.manifest.splits[split]) for split in ("train", "test")] == [40, 20]
    assert len(result.manifest.splits["train"]) == 2 and (tmp_path / "p" / "dataset.json").is_file()
    for kwargs, message in [
        ({"source": "parquet"}, "--source: unknown dataset 'parquet'"),
        ({"train_subset": 0}, "--train-subset must be positive, not 0"),
        ({"skip_corrupt": True}, "--skip-corrupt applies to --source imagefolder"),
    ]:
        with pytest.raises(UsageError, match=message):
            ssl_tune.pack(**{"source": "synthetic", "out": tmp_path / "q", **kwargs})
    assert not (tmp_path / "q").exists()


def test_evaluate_takes_one_target_and_refuses_a_folder_without_a_checkpoint(tmp_path):
    with pytest.raises(UsageError, match="one of run=, checkpoint= or sweep="):
        ssl_tune.evaluate()
    with pytest.raises(UsageError, match="one of run=, checkpoint= or sweep="):
        ssl_tune.evaluate(tmp_path, checkpoint=tmp_path)
    with pytest.raises(UsageError, match="holds no checkpoint"):
        ssl_tune.evaluate(tmp_path)
    with pytest.raises(UsageError, match="unknown tracker"):
        ssl_tune.evaluate(tmp_path, log=["neptune"])
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow  # two sweeps on a real local Ray cluster
def test_the_api_sweep_finds_the_same_best_trial_as_the_cli_on_the_same_seeded_sweep(tmp_path):
    # one trial at a time and no early stop: the sampler's proposals and every trial's training are seeded
    space = write_space(
        tmp_path / "seeded.yaml",
        fixed={**TINY_FIXED, "epochs": 2},
        sweep={"num_samples": 3, "max_concurrent": 1, "seed": 7},
        asha={"grace_period": 2},
    )
    proc = run_cli(sweep_cmd("--space", str(space), "--storage", str(tmp_path / "cli"), "--name", "seeded"))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    cli_best = load_sweep(str(tmp_path / "cli" / "seeded")).best()

    result = ssl_tune.sweep(space, storage=tmp_path / "api")  # named after the space's file, as the CLI does
    assert isinstance(result, SweepResult) and result.trials == 3 and result.errors == 0
    assert result.sweep_dir == str(tmp_path / "api" / "seeded")
    assert result.best.params == cli_best.params
    assert result.best.value == cli_best.value
    assert [r["val_knn_acc"] for r in result.best.results] == [r["val_knn_acc"] for r in cli_best.results]
    assert any(line.startswith(f"best trial {result.best.trial_id}") for line in result.summary)

    exported = ssl_tune.export(result, tmp_path / "best")
    assert exported.best.trial_id == result.best.trial_id
    assert yaml.safe_load((tmp_path / "best" / "best.yaml").read_text())["lr"] == pytest.approx(cli_best.params["lr"])
