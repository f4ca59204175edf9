"""Every registered method trains on real CIFAR-10, checkpoints and resumes; collapse shows up where the
papers say it does (BYOL without predictor and EMA, SwAV without Sinkhorn, DINO without centring)."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
import torch

from ssl_tune.cli import main
from ssl_tune.config import build_config
from ssl_tune.data.training import load_run_data
from ssl_tune.engine.run import TrainingRun
from ssl_tune.methods import METHODS
from tests.helpers import small_params

pytestmark = pytest.mark.slow  # starts a Ray cluster or trains for several epochs


def _metrics(out) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("method", sorted(METHODS))
def test_method_trains_checkpoints_and_resumes_on_cifar10(method, cifar_dir, tmp_path, capsys):
    out = tmp_path / method
    common = ["--data-dir", str(cifar_dir), "--out", str(out), "--no-progress"]
    sets = [f"method_params.{k}={v}" for k, v in small_params(method).items()]
    first = ["train", "--method", method, "--dataset", "cifar10", "--backbone", "resnet_tiny",
             "--train-subset", "2048", "--test-subset", "512", "--batch-size", "256", "--epochs", "1",
             *common, *[a for s in sets for a in ("--set", s)]]  # fmt: skip
    assert main(first) == 0, capsys.readouterr()
    assert (out / "checkpoints" / "last.pt").is_file()
    assert [m["epoch"] for m in _metrics(out)] == [0, 1]

    assert main(["train", "--resume", "--epochs", "2", *common]) == 0, capsys.readouterr()
    assert "resuming" in capsys.readouterr().out
    rows = _metrics(out)
    assert [m["epoch"] for m in rows] == [0, 1, 2]
    for m in rows[1:]:
        assert math.isfinite(m["loss"]) and m["status"] == "ok", m
        assert 0.0 <= m["test_knn_acc"] <= 1.0
    state = torch.load(out / "checkpoints" / "last.pt", weights_only=True)
    assert state["epoch"] == 2 and state["config"]["method"] == method


def _train(method: str, epochs: int, **params: Any) -> list[dict[str, Any]]:
    cfg = build_config({
        "method": method, "dataset": "synthetic", "train_subset": 512, "test_subset": 128, "batch_size": 32,
        "epochs": epochs, "augment": {"num_local_crops": 0}, "method_params": small_params(method, **params),
        "knn_k": 20,
    })  # fmt: skip
    run = TrainingRun(cfg, load_run_data(cfg))
    run.initial_metrics()
    while not run.done:
        run.train_epoch()
    return [m.to_dict() for m in run.history[1:]]


def test_byol_without_predictor_and_ema_collapses():
    """τ = 0 makes the target the online network itself; without the predictor nothing breaks the symmetry."""
    healthy = _train("byol", 4, proj_hidden_dim=128, proj_output_dim=64)
    ablated = _train("byol", 4, proj_hidden_dim=128, proj_output_dim=64, use_predictor=False, base_tau=0.0,
                     final_tau=0.0)  # fmt: skip
    assert healthy[-1]["embedding_std_ratio"] > 0.5, healthy
    assert ablated[-1]["embedding_std_ratio"] < 0.1, ablated


def test_swav_without_sinkhorn_collapses_onto_few_prototypes():
    k = 64
    healthy = _train("swav", 4, num_prototypes=k, freeze_prototypes_epochs=0)
    ablated = _train("swav", 4, num_prototypes=k, freeze_prototypes_epochs=0, use_sinkhorn=False)
    assert healthy[-1]["assignment_entropy"] > 0.9 * math.log(k), healthy
    assert ablated[-1]["assignment_entropy"] < 0.2 * math.log(k), ablated
    assert ablated[-1]["embedding_std_ratio"] < healthy[-1]["embedding_std_ratio"]


def test_dino_without_centring_collapses_onto_one_output():
    """The paper's BN-free head (BN in the head's hidden layers centres too: with it, no collapse in 4 epochs), and
    no gradient clipping: clipping slows the collapse too (measured, 4 epochs without centring: the teacher's
    entropy falls 3.69 -> 1.12 with clip_grad 3.0, to 0.34 without; the bound is 0.2 ln 256 = 1.11)."""
    k = 256
    params = {"num_prototypes": k, "proj_hidden_dim": 128, "proj_output_dim": 64, "base_tau": 0.99, "head_bn": False,
              "clip_grad": 0.0}  # fmt: skip
    healthy = _train("dino", 4, **params)
    ablated = _train("dino", 4, **params, use_centering=False)
    assert healthy[-1]["teacher_entropy"] > 0.9 * math.log(k), healthy
    assert ablated[-1]["teacher_entropy"] < 0.2 * math.log(k), ablated


def test_swav_prototypes_stay_normalised_and_frozen_at_first():
    cfg = build_config({
        "method": "swav", "dataset": "synthetic", "train_subset": 128, "test_subset": 64, "batch_size": 32,
        "epochs": 2, "augment": {"num_local_crops": 1},
        "method_params": small_params("swav", num_prototypes=32, freeze_prototypes_epochs=1, queue_size=64,
                                      epoch_queue_starts=1),
    })  # fmt: skip
    run = TrainingRun(cfg, load_run_data(cfg))
    run.initial_metrics()
    start = run.method.prototypes.layer.weight.detach().clone()
    run.train_epoch()  # epoch 1: frozen (only re-normalised: rounding); the queue is not used yet
    assert torch.allclose(run.method.prototypes.layer.weight, start, atol=1e-6)
    assert int(run.method.queue_filled) == 0
    run.train_epoch()  # epoch 2: prototypes learn, stay unit-norm; the queue fills
    weight = run.method.prototypes.layer.weight.detach()
    assert (weight - start).abs().max() > 1e-3
    assert torch.allclose(weight.norm(dim=1), torch.ones(32), atol=1e-5)
    assert int(run.method.queue_filled) == 64


def test_dino_teacher_temperature_warms_up_and_last_layer_is_frozen_in_epoch_one():
    from ssl_tune.methods.base import Progress
    from ssl_tune.models.backbones import build_backbone

    cls = METHODS["dino"]
    method = cls(build_backbone("resnet_tiny", 32), cls.Params(**small_params("dino"),
                                                               warmup_teacher_temperature_share=0.5))  # fmt: skip
    temps = [method.teacher_temperature(Progress(0, s, 10, 100)) for s in (0, 25, 50, 99)]
    assert temps[0] == pytest.approx(0.04) and temps[1] == pytest.approx(0.055) and temps[2:] == [0.07, 0.07]

    x = torch.randn(4, 3, 32, 32)
    out = method([x, x.flip(3)], Progress(0, 0, 10, 100))
    out.loss.backward()
    method.before_optimizer_step(Progress(0, 0, 10, 100))
    assert all(p.grad is None for p in method.head.last_layer.parameters())
    assert any(p.grad is not None for p in method.head.mlp.parameters())


def test_dino_vit_recipe_warms_the_teacher_temperature_up_over_30_epochs():
    """DINO's README run for ViT-S/16: teacher τ 0.04 -> 0.07 linearly over 30 epochs, then constant."""
    from ssl_tune.methods.base import Progress
    from ssl_tune.models.backbones import build_backbone

    cfg = build_config({"method": "dino", "backbone": "vit_tiny"})
    cls = METHODS["dino"]
    method = cls(build_backbone("resnet_tiny", 32), cls.Params(**{**cfg.method_params, **small_params("dino")}))
    steps_per_epoch, total = 10, cfg.epochs * 10
    temps = [
        method.teacher_temperature(Progress(e, e * steps_per_epoch, steps_per_epoch, total)) for e in (0, 15, 30, 99)
    ]
    assert temps == pytest.approx([0.04, 0.055, 0.07, 0.07])
