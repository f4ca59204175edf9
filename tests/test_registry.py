"""One registry type for methods, backbones and datasets, with one message for an unknown name."""

from __future__ import annotations

import pytest

from ssl_tune.data import DATASETS
from ssl_tune.errors import UsageError
from ssl_tune.methods import METHODS
from ssl_tune.models.backbones import BACKBONES, Backbone, build_backbone
from ssl_tune.registry import Registry


def test_registry_add_get_and_unknown():
    reg = Registry[int]("shape")
    reg.add("square", 4)

    @reg.register("triangle")
    def _three() -> int:
        return 3

    assert reg.get("square") == 4 and reg["triangle"]() == 3
    assert list(reg) == ["square", "triangle"] and len(reg) == 2 and "square" in reg
    with pytest.raises(UsageError, match=r"unknown shape 'circle' \(choose from square, triangle\)"):
        reg.get("circle")
    assert reg.unknown("x", among=["b", "a"]) == "unknown shape 'x' (choose from a, b)"
    with pytest.raises(ValueError, match="registered twice"):
        reg.add("square", 5)


@pytest.mark.parametrize(("registry", "kind"), [(METHODS, "method"), (BACKBONES, "backbone"), (DATASETS, "dataset")])
def test_each_registry_speaks_the_same_message(registry, kind):
    with pytest.raises(UsageError, match=f"unknown {kind} 'nope' \\(choose from "):
        registry.get("nope")


@pytest.mark.parametrize("name", BACKBONES.names())
def test_every_backbone_declares_its_feature_dim(name):
    model = build_backbone(name, 32)
    assert isinstance(model, Backbone) and isinstance(model.feature_dim, int)
