"""The shipped search spaces: one per method plus all.yaml, each valid, and all.yaml's conditional
parameters drawn only with their method (real Optuna, define-by-run)."""

from __future__ import annotations

import optuna
import pytest

from ssl_tune.methods import METHODS
from ssl_tune.tune.space import DefineByRun, load_space
from tests.helpers import REPO

SPACES = sorted((REPO / "search_spaces").glob("*.yaml"))
PRESET_SPACES = sorted((REPO / "search_spaces").glob("*/*.yaml"))  # the bench-search presets' folders


@pytest.mark.parametrize("path", SPACES + PRESET_SPACES, ids=[str(p.relative_to(REPO)) for p in SPACES + PRESET_SPACES])
def test_shipped_space_is_valid(path):
    space = load_space(path)
    assert space.description
    assert all(m in METHODS for m in space.method_choices())


@pytest.mark.parametrize("method", ["simsiam", "simclr", "byol"])
def test_the_shifted_preset_is_the_cpu_preset_on_grey_16px_images(method):
    """Same subsets, epochs and budget as `cpu`, only the dataset options differ; and it searches what the shift
    makes matter: crop scale, the jitter that still acts on grey images, and blur."""
    cpu, shifted = (load_space(REPO / "search_spaces" / preset / f"{method}.yaml") for preset in ("cpu", "shifted"))
    assert shifted.fixed == {**cpu.fixed, "image_size": 16, "grayscale": True}
    assert {"lr", "augment.crop_min_scale", "augment.brightness", "augment.contrast", "augment.blur_prob"} <= set(
        shifted.params
    )
    assert shifted.params["augment.crop_min_scale"].high > cpu.params["augment.crop_min_scale"].high
    assert (shifted.asha, shifted.sweep) == (cpu.asha, cpu.sweep)
    assert sorted(p.stem for p in (REPO / "search_spaces" / "shifted").glob("*.yaml")) == ["byol", "simclr", "simsiam"]


def test_every_method_has_its_own_space_and_is_in_all_yaml():
    stems = {p.stem for p in SPACES}
    assert set(METHODS) <= stems, set(METHODS) - stems
    assert set(load_space(REPO / "search_spaces" / "all.yaml").method_choices()) == set(METHODS)


def test_all_yaml_draws_each_methods_parameters_only_with_that_method():
    space = load_space(REPO / "search_spaces" / "all.yaml")
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=0))
    define = DefineByRun(space)
    seen = set()
    for _ in range(40):
        trial = study.ask()
        define(trial)
        method = trial.params["method"]
        seen.add(method)
        conditional = {k for k in trial.params if ":" in k}
        assert conditional == {f"{method}:{k}" for k in space.conditional[method]}
        cfg = space.train_config(trial.params)  # a valid run config, with the method's own keys
        assert cfg.method == method
        study.tell(trial, 0.0)
    assert len(seen) >= 6


VIT_SPACES = [p for p in SPACES if "_vit" in p.stem]


@pytest.mark.parametrize("path", VIT_SPACES, ids=[p.stem for p in VIT_SPACES])
def test_vit_spaces_start_from_the_vit_recipe_and_keep_dinos_teacher_temperature_at_most_0_07(path):
    from ssl_tune.models.backbones import build_backbone

    space = load_space(path)
    cfg = space.train_config(space.default_point())  # the default trial: the method's ViT recipe
    assert (cfg.optimizer, cfg.backbone.startswith("vit")) == ("adamw", True)
    assert cfg.lr == {"dino": 5e-4, "mocov3": 1.5e-4}[cfg.method]
    if cfg.method == "dino":
        assert space.params["method_params.teacher_temperature"].high <= 0.07  # DINO: unstable above
        assert cfg.method_params["warmup_teacher_temperature_epochs"] == 30
    if cfg.dataset == "cifar10":  # CIFAR scale: 4 px patches at 32 px
        assert build_backbone(cfg.backbone, 32).patch_embed.patch_size == (4, 4)


def test_there_are_vit_spaces_at_imagenet_and_cifar_scale():
    assert {p.stem for p in VIT_SPACES} == {"dino_vit", "dino_vit_cifar", "mocov3_vit", "mocov3_vit_cifar"}
