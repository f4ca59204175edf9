"""Checkpoint files: written atomically (`ssl_tune.storage.atomic_write`), loaded as tensors and plain containers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ssl_tune.errors import UsageError
from ssl_tune.storage import atomic_write

RUN_CHECKPOINT = Path("checkpoints") / "last.pt"  # in a `ssl-tune train` run directory
TRIAL_CHECKPOINT = "state.pt"  # in each of a sweep trial's Ray Train checkpoint folders


def save_checkpoint(state: dict[str, Any], path: str | Path) -> None:
    atomic_write(path, lambda f: torch.save(state, f))


def checkpoint_file(path: str | Path) -> Path:
    """The checkpoint file at `path`: the file itself, a Ray Train checkpoint folder's state.pt, or a run
    directory's checkpoints/last.pt. Raises UsageError when there is none."""
    path = Path(path)
    if path.is_file():
        return path
    for inside in (path / TRIAL_CHECKPOINT, path / RUN_CHECKPOINT):
        if inside.is_file():
            return inside
    what = "does not exist" if not path.exists() else "holds no checkpoint"
    raise UsageError(f"{path} {what} (looked for {TRIAL_CHECKPOINT} and {RUN_CHECKPOINT})")


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load with weights_only=True: tensors and plain containers only, never code."""
    return torch.load(path, map_location=map_location, weights_only=True)
