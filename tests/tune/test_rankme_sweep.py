"""A real sweep on unlabeled images (a flat folder of PNGs): with no labels there is no kNN, so the sweep
selects on RankMe by itself; asking for val_knn_acc there is refused before anything is written."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest
import torch
import yaml
from PIL import Image

from ssl_tune.cli import main
from ssl_tune.models.backbones import build_backbone
from ssl_tune.tune.results import load_sweep
from tests.helpers import run_cli, sweep_cmd, write_space

pytestmark = pytest.mark.slow

N_IMAGES = 300
EPOCHS = 1
SAMPLES = 1
FEATURE_DIM = build_backbone("resnet_tiny", 32).feature_dim


def _flat_pngs(folder: Path) -> Path:
    from ssl_tune.data.synthetic import generate

    folder.mkdir(parents=True)
    images, _ = generate(N_IMAGES, 32, seed=3)
    for i, img in enumerate(images):
        Image.fromarray(img.permute(1, 2, 0).numpy()).save(folder / f"{i:04d}.png")
    return folder


def _space(root: Path) -> Path:
    # merged over TINY_FIXED (simsiam, resnet_tiny, small heads)
    fixed = {"dataset": "imagefolder", "image_size": 32, "train_subset": N_IMAGES, "epochs": EPOCHS, "batch_size": 128}
    return write_space(root / "unlabeled.yaml", fixed=fixed, sweep={"num_samples": SAMPLES, "cpus_per_worker": 1})


@pytest.fixture(scope="module")
def rankme_sweep(tmp_path_factory):
    root = tmp_path_factory.mktemp("rankme")
    images = _flat_pngs(root / "pngs")
    proc = run_cli(sweep_cmd("--space", str(_space(root)), "--storage", str(root / "store"), "--data-dir", str(images)))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return root / "store" / "unlabeled", proc.stdout


def test_unlabeled_sweep_selects_on_rankme(rankme_sweep):
    sweep_dir, stdout = rankme_sweep
    sweep = load_sweep(str(sweep_dir))
    assert sweep.metric == "rankme"
    saved = yaml.safe_load((sweep_dir / "sweep.yaml").read_text())
    assert saved["space"]["sweep"]["metric"] == "rankme"  # settled before the trials ran, for --resume
    assert len(sweep.trials) == SAMPLES
    assert all(t.status.finished_normally for t in sweep.trials), [t.status for t in sweep.trials]
    for t in sweep.trials:
        rows = [json.loads(x) for x in (Path(t.trial_dir) / "result.json").read_text().splitlines() if x.strip()]
        assert [r["epoch"] for r in rows] == list(range(t.epochs_run + 1))
        for r in rows:
            # RankMe of N_IMAGES features of FEATURE_DIM dimensions: in [1, min(N, d)] (up to its eps)
            assert math.isfinite(r["rankme"]) and 1.0 <= r["rankme"] <= min(N_IMAGES, FEATURE_DIM) + 1e-3, r
            assert r.get("val_knn_acc") is None and r.get("test_knn_acc") is None, r  # no labels, no kNN
        assert t.metric == "rankme" and t.value == rows[-1]["rankme"]
        assert t.checkpoint is not None
    assert re.search(r"best trial \w+: rankme", stdout)


def test_export_of_a_rankme_sweep(rankme_sweep, tmp_path, capsys):
    sweep_dir, _ = rankme_sweep
    out = tmp_path / "export"
    assert main(["export", "--sweep", str(sweep_dir), "--out", str(out)]) == 0
    assert "rankme" in capsys.readouterr().out
    best = load_sweep(str(sweep_dir)).best()
    config = yaml.safe_load((out / "best.yaml").read_text())
    assert config["dataset"] == "imagefolder" and config["rankme"] is True and config["monitor"] == "val"
    assert config["lr"] == best.params["lr"]
    assert (out / "best_checkpoint.txt").read_text().strip() == best.checkpoint
    backbone = build_backbone("resnet_tiny", 32)
    backbone.load_state_dict(torch.load(out / "backbone.pt", weights_only=True))
    assert not (out / "eval.json").exists()  # nothing to evaluate without labels


def test_val_knn_on_unlabeled_data_is_refused(tmp_path, capsys):
    import ray

    images = _flat_pngs(tmp_path / "pngs")
    store = tmp_path / "store"
    argv = ["sweep", "--space", str(_space(tmp_path)), "--storage", str(store), "--data-dir", str(images)]
    code = main([*argv, "--metric", "val_knn_acc"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.count("\n") == 1 and "rankme" in err and "no labels" in err, err
    assert "Traceback" not in err
    assert not store.exists()
    assert not ray.is_initialized()
