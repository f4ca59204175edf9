"""Checkpoint files: written atomically (`ssl_tune.storage.atomic_write`), loaded as tensors and plain containers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ssl_tune.storage import atomic_write


def save_checkpoint(state: dict[str, Any], path: str | Path) -> None:
    atomic_write(path, lambda f: torch.save(state, f))


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load with weights_only=True: tensors and plain containers only, never code."""
    return torch.load(path, map_location=map_location, weights_only=True)
