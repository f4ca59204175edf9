"""The examples in the package's docstrings run as written."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "ssl_tune.data.derived",
    "ssl_tune.data.splits",
    "ssl_tune.engine.alpha_req",
    "ssl_tune.engine.lidar",
    "ssl_tune.engine.rankme",
    "ssl_tune.losses",
    "ssl_tune.registry",
    "ssl_tune.storage",
    "ssl_tune.tune.checks",
    "ssl_tune.tune.results",
    "ssl_tune.engine.optim",
    "ssl_tune.models.backbones",
    "ssl_tune.views.recipes",
    "ssl_tune.stats",
    "ssl_tune.tools.bench_search",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0, result
