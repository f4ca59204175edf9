"""The ViT backbone (timm) as the SSL methods use it: every method trains one with multi-crop's local crops
(smaller than the global crops, so the position embeddings are interpolated), AdamW leaves norms, biases,
position embeddings and the CLS token undecayed, the weight decay follows its cosine schedule, and MoCo v3's
patch projection stays as initialised."""

from __future__ import annotations

import math

import pytest
import torch
from timm.models.vision_transformer import VisionTransformer

from ssl_tune.config import build_config
from ssl_tune.data.training import load_run_data
from ssl_tune.engine.optim import weight_decay_at
from ssl_tune.engine.run import TrainingRun
from ssl_tune.methods import METHODS
from ssl_tune.models.backbones import build_backbone
from tests.helpers import small_params


def _vit_run(method: str, **overrides) -> TrainingRun:
    cfg = build_config({
        "method": method, "backbone": "vit_tiny", "dataset": "synthetic", "train_subset": 32, "test_subset": 32,
        "val_size": 16, "batch_size": 16, "epochs": 1, "warmup_epochs": 0, "optimizer": "adamw", "lr": 1e-3,
        "weight_decay": 0.04, "weight_decay_end": 0.4, "drop_path": 0.1, "precision": "fp32", "knn_k": 5,
        "augment": {"num_local_crops": 2, "local_crop_size": 16},  # 16 px local crops: 16 patches, not 64
        "method_params": small_params(method), **overrides,
    })  # fmt: skip
    run = TrainingRun(cfg, load_run_data(cfg))
    run.initial_metrics()
    return run


@pytest.mark.parametrize("method", sorted(METHODS))
def test_every_method_trains_a_vit_with_local_crops(method):
    run = _vit_run(method)
    before = {n: p.detach().clone() for n, p in run.method.backbone.named_parameters()}
    metrics = run.train_epoch()  # two steps
    assert math.isfinite(metrics.loss), metrics
    after = dict(run.method.backbone.named_parameters())
    moved = [n for n, p in after.items() if not torch.equal(p, before[n])]
    assert any(n.startswith("blocks.") for n in moved), "no transformer block was trained"
    patch_embed = [n for n in after if n.startswith("patch_embed.")]
    if method == "mocov3":  # its random patch projection is frozen (Chen et al., 2021, sec. 5)
        assert patch_embed and not set(patch_embed) & set(moved)
    else:
        assert set(patch_embed) <= set(moved)


def test_adamw_leaves_norms_biases_position_embeddings_and_tokens_undecayed():
    run = _vit_run("dino")
    names = {id(p): n for n, p in run.method.named_parameters()}
    groups = run.optimizer.param_groups
    undecayed = {names[id(p)] for g in groups if g["base_weight_decay"] == 0 for p in g["params"]}
    decayed = {names[id(p)] for g in groups if g["base_weight_decay"] > 0 for p in g["params"]}
    assert {"backbone.pos_embed", "backbone.cls_token"} <= undecayed
    assert all(n.endswith(("bias", "weight", "original0")) for n in undecayed - {"backbone.pos_embed",
                                                                               "backbone.cls_token"})  # fmt: skip
    assert "backbone.blocks.0.norm1.weight" in undecayed and "backbone.blocks.0.attn.qkv.bias" in undecayed
    assert "backbone.blocks.0.attn.qkv.weight" in decayed
    assert all(run.method.get_parameter(n).ndim > 1 for n in decayed)


@pytest.mark.parametrize("optimizer", ["sgd", "lars", "adamw"])
def test_the_weight_decay_follows_its_cosine_schedule(optimizer):
    """Set from each group's own base every step, never from the previous step's value."""
    run = _vit_run("simclr", epochs=2, optimizer=optimizer)
    run.train_epoch()
    run.train_epoch()  # 4 steps: the last one set it at fraction 3/4, after three values above the start
    value = weight_decay_at(0.04, 0.4, 3 / 4)
    assert 0.22 < value < 0.4
    for group in run.optimizer.param_groups:
        expected = value if group["base_weight_decay"] else 0.0
        assert group["weight_decay"] == pytest.approx(expected), group["name"]
    assert any(group["weight_decay"] for group in run.optimizer.param_groups)


def test_position_embeddings_at_the_native_size_are_used_as_they_are():
    """At the size it was built for, the interpolating ViT computes exactly what a fixed-size timm ViT with the
    same weights computes (its state_dict loads as it is: an exported backbone.pt needs no ssl-tune); at another
    size (a local crop) it still runs."""
    torch.manual_seed(0)
    vit = build_backbone("vit_tiny", 32).eval()
    fixed = VisionTransformer(img_size=32, patch_size=4, embed_dim=192, depth=12, num_heads=3, num_classes=0)
    fixed.load_state_dict(vit.state_dict())
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(vit(images), fixed.eval()(images), atol=1e-5)
        assert vit(torch.randn(2, 3, 20, 20)).shape == (2, 192)  # padded to 24 px, 36 patches


def test_drop_path_is_refused_on_a_resnet():
    from ssl_tune.errors import UsageError

    with pytest.raises(UsageError, match="drop_path applies to the ViT backbones"):
        build_config({"backbone": "resnet_tiny", "drop_path": 0.1})
