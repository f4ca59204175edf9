"""Derived datasets (`image_size`, `grayscale`) on real CIFAR-10 images: the stated size and channels, the same
pixels on every load, torchvision's own resize and grey as references, and one line for each bad option."""

from __future__ import annotations

import pytest
import torch
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from ssl_tune.api import pack
from ssl_tune.cli import main
from ssl_tune.config import build_config
from ssl_tune.data import load_data
from ssl_tune.data.derived import channel_stats
from ssl_tune.data.training import TrainingData, open_training_data
from ssl_tune.errors import UsageError
from ssl_tune.tune.worker import cached_run_data

SUBSETS = {"train_subset": 600, "test_subset": 200}


def test_grey_16px_cifar_has_the_stated_shape_and_is_the_same_on_every_load(cifar_dir):
    grey = load_data("cifar10", cifar_dir, image_size=16, grayscale=True, **SUBSETS)
    for images in (grey.train_images, grey.test_images):
        assert images.dtype == torch.uint8 and tuple(images.shape[1:]) == (3, 16, 16)
        assert (images[:, 0] == images[:, 1]).all() and (images[:, 1] == images[:, 2]).all()
    again = load_data("cifar10", cifar_dir, image_size=16, grayscale=True, **SUBSETS)
    assert torch.equal(grey.train_images, again.train_images) and torch.equal(grey.test_images, again.test_images)
    assert torch.equal(grey.train_labels, again.train_labels)
    # the normalisation is the derived images' own, computed over the whole derived train split
    full = load_data("cifar10", cifar_dir, image_size=16, grayscale=True, with_test=False)
    mean, std = channel_stats(full.train_images)
    assert grey.mean == mean and grey.std == std
    assert len(set(mean)) == 1 and 0.3 < mean[0] < 0.6 and 0.1 < std[0] < 0.35


def test_the_pixels_are_torchvision_s_resize_and_grey(cifar_dir):
    colour = load_data("cifar10", cifar_dir, **SUBSETS)
    small = load_data("cifar10", cifar_dir, image_size=16, **SUBSETS)
    grey = load_data("cifar10", cifar_dir, image_size=16, grayscale=True, **SUBSETS)
    resized = TF.resize(colour.train_images, [16, 16], antialias=True)
    assert (small.train_images.int() - resized.int()).abs().max() <= 1  # rounding of the antialiased bilinear
    reference = v2.Grayscale(num_output_channels=3)(small.train_images)
    assert (grey.train_images.int() - reference.int()).abs().max() <= 1
    assert torch.equal(small.train_labels, colour.train_labels)
    assert small.mean != colour.mean  # recomputed for the derived images, not CIFAR's constants


def test_unchanged_data_is_returned_as_is(cifar_dir):
    data = load_data("cifar10", cifar_dir, **SUBSETS)
    assert data.derived(None, False) is data and data.derived(32, False) is data


@pytest.mark.parametrize(
    ("sets", "expected"),
    [
        (["image_size=4"], "image_size"),
        (["image_size=16px"], "image_size"),
        (["grayscale=maybe"], "grayscale"),
    ],
)
def test_bad_options_exit_2_with_one_line(tmp_path, capsys, cifar_dir, sets, expected):
    args = [
        "train",
        "--dataset",
        "cifar10",
        "--data-dir",
        str(cifar_dir),
        "--epochs",
        "1",
        "--out",
        str(tmp_path / "r"),
    ]
    for s in sets:
        args += ["--set", s]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and expected in err and "Traceback" not in err, err
    assert not (tmp_path / "r").exists()


def test_grey_is_refused_on_streamed_shards_in_one_line(tmp_path, capsys):
    args = ["train", "--dataset", "parquet", "--data-dir", str(tmp_path), "--out", str(tmp_path / "r")]
    assert main([*args, "--set", "data_placement=streamed_shards", "--set", "grayscale=true"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "grayscale applies to a dataset loaded whole" in err, err
    # auto streams a pack larger than host_data_limit_gb: refused when the plan is made
    pack("synthetic", tmp_path / "pack", image_size=16, train_subset=64, test_subset=32)
    cfg = build_config(
        {"dataset": "parquet", "data_dir": str(tmp_path / "pack"), "host_data_limit_gb": 1e-6, "grayscale": True}
    )
    with pytest.raises(UsageError, match="grayscale applies to a dataset loaded whole"):
        open_training_data(cfg)


def test_a_reused_trial_process_keeps_grey_and_colour_data_apart(cifar_dir):
    """A sweep may search `grayscale`: a trial process's data cache must not hand one trial the other's images."""
    base = {"dataset": "cifar10", "data_dir": str(cifar_dir), "image_size": 16, **SUBSETS}
    colour = cached_run_data(build_config(base), TrainingData())
    grey = cached_run_data(build_config({**base, "grayscale": True}), TrainingData())
    assert not torch.equal(colour.train_images, grey.train_images)
    assert (grey.train_images[:, 0] == grey.train_images[:, 2]).all()
    assert cached_run_data(build_config(base), TrainingData()) is colour  # still cached, not reloaded
