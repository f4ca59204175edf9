"""Checkpoint files: written atomically (`ssl_tune.storage.atomic_write`), loaded as tensors and plain containers."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import torch

from ssl_tune.errors import UsageError
from ssl_tune.storage import atomic_write, exists, is_file, is_uri, join, read_bytes

RUN_CHECKPOINT = Path("checkpoints") / "last.pt"  # in a `ssl-tune train` run directory
TRIAL_CHECKPOINT = "state.pt"  # in each of a sweep trial's Ray Train checkpoint folders


def save_checkpoint(state: dict[str, Any], path: str | Path) -> None:
    atomic_write(path, lambda f: torch.save(state, f))


def checkpoint_file(location: str | Path) -> str:
    """The checkpoint file at `location` (a path or a URI): the file itself, a Ray Train checkpoint folder's
    state.pt, or a run directory's checkpoints/last.pt. Raises UsageError when there is none."""
    location = str(location)
    for candidate in (location, join(location, TRIAL_CHECKPOINT), join(location, str(RUN_CHECKPOINT))):
        if is_file(candidate):
            return candidate
    what = "does not exist" if not exists(location) else "holds no checkpoint"
    raise UsageError(f"{location} {what} (looked for {TRIAL_CHECKPOINT} and {RUN_CHECKPOINT})")


def load_checkpoint(location: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load with weights_only=True: tensors and plain containers only, never code. A URI is read through its
    object store."""
    source = io.BytesIO(read_bytes(location)) if is_uri(str(location)) else location
    return torch.load(source, map_location=map_location, weights_only=True)
