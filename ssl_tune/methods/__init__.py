"""SSL methods, one file each, registered by name. Any module in this package is imported on start."""

import importlib
import pkgutil

from ssl_tune.methods.base import METHODS, Method, Progress, StepOutput, get_method, register_method

for _module in pkgutil.iter_modules(__path__):
    if _module.name != "base":
        importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["METHODS", "Method", "Progress", "StepOutput", "get_method", "register_method"]
