"""`compile: true` trains with a torch.compile'd backbone whose checkpoints load into an eager run."""

from __future__ import annotations

import math

import torch

from ssl_tune.config import build_config
from ssl_tune.data import load_data
from ssl_tune.engine.run import TrainingRun
from tests.helpers import SMALL_SIMSIAM


def test_compiled_backbone_trains_and_its_checkpoint_loads_into_an_eager_run():
    data = load_data("synthetic", image_size=16, train_subset=64, test_subset=32)
    layer = {"method": "simsiam", "batch_size": 32, "epochs": 1, "device": "cpu", "image_size": 16,
             "train_subset": 64, "test_subset": 32, "method_params": SMALL_SIMSIAM}  # fmt: skip
    compiled = TrainingRun(build_config({**layer, "compile": True}), data)
    eager = TrainingRun(build_config(layer), data)
    assert compiled.method.backbone._compiled_call_impl is not None  # nn.Module.compile() ran
    assert eager.method.backbone._compiled_call_impl is None
    compiled.initial_metrics()
    metrics = compiled.train_epoch()
    assert metrics.status == "ok" and math.isfinite(metrics.loss)

    state = compiled.state_dict()
    assert list(state["model"]) == list(eager.state_dict()["model"])  # no `_orig_mod.` prefixes
    eager.load_state_dict(state)
    compiled_params = dict(compiled.method.named_parameters())
    for name, p in eager.method.named_parameters():
        assert torch.equal(p, compiled_params[name]), name
    # the same weights: kNN agrees up to the compiled kernels' rounding (a few of the 32 test images)
    assert abs(eager.knn_accuracy() - compiled.knn_accuracy()) <= 0.1
