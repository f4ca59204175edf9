"""`imagefolder` as an unlabeled pool (`train/`, flat) with a small labeled set beside it (`labeled/<class>/`): SSL
trains on the pool only, the kNN reads a fixed, seeded, stratified bank/query split of the labeled set, `eval`
reads the same split, and each bad layout is one line. Real PNG files."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ssl_tune.cli import main
from ssl_tune.config import build_config
from ssl_tune.data import load_data
from ssl_tune.data.synthetic import generate
from ssl_tune.engine.evaluate import evaluate_backbone
from ssl_tune.engine.run import TrainingRun
from ssl_tune.errors import UsageError
from tests.data.test_imagefolder import write_pngs
from tests.helpers import small_params

SIZE, POOL, PER_CLASS, CLASSES = 16, 96, 24, 3


def pool_folder(root: Path, per_class: int = PER_CLASS, classes: int = CLASSES) -> Path:
    images, _ = generate(POOL, SIZE, seed=1)
    write_pngs(root / "train", images)
    labeled, labels = generate(per_class * classes * 4, SIZE, seed=2)  # the generator's classes
    for c in range(classes):
        write_pngs(root / "labeled" / f"class_{c}", labeled[labels == c][:per_class])
    return root


def _bytes(images: torch.Tensor) -> set[bytes]:
    return {img.numpy().tobytes() for img in images}


def _cfg(root: Path, **overrides) -> object:
    return build_config(
        {"dataset": "imagefolder", "data_dir": str(root), "image_size": SIZE, "batch_size": 32, "epochs": 1,
         "device": "cpu", "monitor": "val", "knn_k": 5, "method_params": small_params("simsiam"), **overrides}
    )  # fmt: skip


def test_the_pool_is_unlabeled_and_the_labeled_set_is_split_in_half(tmp_path):
    data = load_data("imagefolder", pool_folder(tmp_path), image_size=SIZE)
    assert data.has_labeled_set and not data.labeled and data.num_train == POOL and data.num_classes == CLASSES
    assert len(data.labeled_labels) == PER_CLASS * CLASSES
    held = data.labeled_splits()
    assert len(held.train_images) == len(held.test_images) == PER_CLASS * CLASSES // 2
    assert torch.bincount(held.test_labels).tolist() == [PER_CLASS // 2] * CLASSES  # stratified
    assert not _bytes(held.train_images) & _bytes(held.test_images)  # bank and queries disjoint
    again = data.labeled_splits()
    assert torch.equal(again.test_images, held.test_images)  # fixed


def test_ssl_trains_on_the_pool_only_and_the_knn_reads_the_labeled_set(tmp_path):
    root = pool_folder(tmp_path)
    data = load_data("imagefolder", root, image_size=SIZE)
    run = TrainingRun(_cfg(root), data)
    assert run.num_train == POOL and run.knn_metric == "val_knn_acc"
    labeled = _bytes(data.labeled_images)
    assert not _bytes(run.train_source.images) & labeled  # no labeled image is a training image
    assert _bytes(run.bank_images) | _bytes(run.query_images) == labeled
    run.initial_metrics()
    metrics = run.train_epoch()
    assert 0.0 <= metrics.val_knn_acc <= 1.0
    # eval reads the same bank and queries, with the linear probe
    result = evaluate_backbone(run.method.backbone, data, run.cfg, run.device, epoch=1)
    assert result.train_images == result.test_images == PER_CLASS * CLASSES // 2
    assert 0.0 <= result.probe_top1 <= 1.0 and 0.0 <= result.test_knn_acc <= 1.0


def _one_line_error(capsys, argv: list[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err


def _train(root: Path, out: Path, *extra: str) -> list[str]:
    return ["train", "--dataset", "imagefolder", "--data-dir", str(root), "--out", str(out), "--epochs", "1",
            "--set", f"image_size={SIZE}", "--set", "monitor=val", "--set", "batch_size=32", *extra]  # fmt: skip


def test_a_labeled_set_of_one_class_is_one_line(tmp_path, capsys):
    root = pool_folder(tmp_path / "d", classes=1)
    err = _one_line_error(capsys, _train(root, tmp_path / "out"))
    assert "at least 2 classes" in err and not (tmp_path / "out").exists()


def test_a_class_without_images_is_one_line(tmp_path, capsys):
    root = pool_folder(tmp_path / "d")
    (root / "labeled" / "empty_class").mkdir()
    err = _one_line_error(capsys, _train(root, tmp_path / "out"))
    assert "empty_class has no images" in err and not (tmp_path / "out").exists()


def test_fewer_labeled_images_than_k_is_one_line(tmp_path, capsys):
    root = pool_folder(tmp_path / "d")
    err = _one_line_error(capsys, _train(root, tmp_path / "out", "--set", "knn_k=200"))
    assert "fewer than knn_k 200" in err and not (tmp_path / "out").exists()


def test_a_labeled_set_without_a_pool_is_one_line(tmp_path):
    root = pool_folder(tmp_path / "d")
    for path in (root / "train").iterdir():
        path.unlink()
    with pytest.raises(UsageError, match="no images in the pool"):
        load_data("imagefolder", root, image_size=SIZE)


@pytest.mark.slow
def test_a_sweep_on_a_pool_selects_on_the_labeled_sets_knn(tmp_path):
    from ssl_tune.tune.results import load_sweep
    from tests.helpers import run_cli, sweep_cmd, write_space

    root = pool_folder(tmp_path / "d")
    fixed = {"dataset": "imagefolder", "image_size": SIZE, "epochs": 1, "batch_size": 32, "knn_k": 5,
             "train_subset": None, "val_size": None}  # fmt: skip
    space = write_space(tmp_path / "pool.yaml", fixed=fixed, sweep={"num_samples": 2, "max_concurrent": 1})
    proc = run_cli(sweep_cmd("--space", str(space), "--storage", str(tmp_path / "store"), "--data-dir", str(root)))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    sweep = load_sweep(str(tmp_path / "store" / "pool"))
    assert sweep.metric == "val_knn_acc" and len(sweep.trials) == 2  # labels beside the pool: the kNN, by default
    for t in sweep.trials:
        assert t.status.finished_normally
        # queries: half of the labeled set; its kNN accuracy is a multiple of 1 / queries
        queries = PER_CLASS * CLASSES // 2
        assert all(abs(r["val_knn_acc"] * queries - round(r["val_knn_acc"] * queries)) < 1e-6 for r in t.results)
    assert sweep.best().value == max(t.value for t in sweep.trials)
