"""ssl-tune: hyperparameter search for self-supervised image models on Ray.

The Python API (`ssl_tune.api`): `ssl_tune.train`, `ssl_tune.sweep`, `ssl_tune.export`, `ssl_tune.evaluate`,
`ssl_tune.confirm`, `ssl_tune.pack`.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["confirm", "evaluate", "export", "pack", "sweep", "train"]


def __getattr__(name: str) -> Any:  # the API loads torch and Ray: only when it is used
    if name in __all__:
        from ssl_tune import api

        return getattr(api, name)
    raise AttributeError(f"module 'ssl_tune' has no attribute {name!r}")
