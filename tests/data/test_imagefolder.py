"""`imagefolder`: a flat folder of images is unlabeled (no labels, no test split); `train/<class>` + `val/<class>`
is labeled with a test split, and `with_test=False` does not read `val/` at all. Real PNG files, no Ray."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

from ssl_tune.config import build_config
from ssl_tune.data import load_data
from ssl_tune.data.synthetic import generate
from ssl_tune.data.training import load_run_data
from ssl_tune.engine.run import TrainingRun
from ssl_tune.errors import UsageError


def write_pngs(folder: Path, images: torch.Tensor, prefix: str = "img") -> list[Path]:
    """uint8 (N, 3, H, W) images as RGB PNG files in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, img in enumerate(images):
        path = folder / f"{prefix}_{i:04d}.png"
        Image.fromarray(img.permute(1, 2, 0).numpy()).save(path)
        paths.append(path)
    return paths


def _as_set(images: torch.Tensor) -> list[bytes]:
    return sorted(img.numpy().tobytes() for img in images)


def test_flat_folder_is_unlabeled_with_no_test_split(tmp_path):
    images, _ = generate(40, 32, seed=5)
    write_pngs(tmp_path / "flat", images)
    data = load_data("imagefolder", tmp_path / "flat", image_size=32)
    assert data.train_labels is None and not data.labeled
    assert data.num_classes == 0
    assert data.test_images is None and data.test_labels is None and not data.has_test
    assert data.train_images.shape == (40, 3, 32, 32) and data.train_images.dtype == torch.uint8
    assert _as_set(data.train_images) == _as_set(images)  # every image, read back losslessly


def test_images_in_subfolders_and_a_train_folder_alone_are_unlabeled_too(tmp_path):
    images, _ = generate(20, 32, seed=6)
    write_pngs(tmp_path / "root" / "train" / "a", images[:10])
    write_pngs(tmp_path / "root" / "train" / "b", images[10:])
    (tmp_path / "root" / "notes.txt").write_text("not an image")
    data = load_data("imagefolder", tmp_path / "root", image_size=32)
    assert not data.labeled and data.num_classes == 0 and not data.has_test
    assert _as_set(data.train_images) == _as_set(images)


def test_unlabeled_run_has_no_knn_and_measures_rankme(tmp_path):
    images, _ = generate(64, 32, seed=7)
    write_pngs(tmp_path / "flat", images)
    layer = {"dataset": "imagefolder", "data_dir": str(tmp_path / "flat"), "image_size": 32, "batch_size": 32}
    for monitor in ("val", "test"):
        cfg = build_config(layer, {"monitor": monitor, "rankme": True, "device": "cpu"})
        data = load_run_data(cfg)
        run = TrainingRun(cfg, data)
        assert run.knn_metric is None and run.num_train == 64  # nothing is held out of unlabeled data
        values = run.evaluate()
        assert list(values) == ["rankme"] and 1.0 <= values["rankme"] <= 64


def _labeled_tree(root: Path) -> dict[str, torch.Tensor]:
    images, labels = generate(60, 32, seed=8)
    classes = ["cat", "dog", "eel"]
    for split, part in (("train", slice(0, 45)), ("val", slice(45, 60))):
        for c, name in enumerate(classes):
            chosen = images[part][labels[part] % 3 == c]
            write_pngs(root / split / name, chosen, prefix=f"{split}{c}")
    return {"images": images, "labels": labels}


def test_train_and_val_class_folders_are_labeled_with_a_test_split(tmp_path):
    made = _labeled_tree(tmp_path / "tree")
    data = load_data("imagefolder", tmp_path / "tree", image_size=32)
    assert data.labeled and data.num_classes == 3 and data.has_test
    assert data.num_train == 45 and len(data.test_images) == len(data.test_labels) == 15
    assert set(data.train_labels.tolist()) == {0, 1, 2}
    # each image carries the label of the class folder it was written to
    expected = {img.numpy().tobytes(): int(y) % 3 for img, y in zip(made["images"], made["labels"], strict=True)}
    for images, labels in ((data.train_images, data.train_labels), (data.test_images, data.test_labels)):
        for img, y in zip(images, labels, strict=True):
            assert expected[img.numpy().tobytes()] == int(y)


def test_with_test_false_does_not_read_val(tmp_path):
    _labeled_tree(tmp_path / "tree")
    (tmp_path / "tree" / "val" / "cat" / "broken.png").write_bytes(b"this is not a PNG file")
    data = load_data("imagefolder", tmp_path / "tree", image_size=32, with_test=False)
    assert data.labeled and data.num_classes == 3 and data.num_train == 45
    assert data.test_images is None and data.test_labels is None
    # a run that monitors the validation split loads it the same way
    cfg = build_config({"dataset": "imagefolder", "data_dir": str(tmp_path / "tree"), "image_size": 32})
    assert load_run_data(cfg.model_copy(update={"monitor": "val"})).test_images is None
    with pytest.raises(UsageError, match=r"broken\.png"):
        load_data("imagefolder", tmp_path / "tree", image_size=32, with_test=True)
    with pytest.raises(UsageError, match=r"broken\.png"):
        load_run_data(cfg)  # monitor: test reads val/
