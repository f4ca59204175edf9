"""Where CIFAR-10 lives when no `--data-dir` names it: one search order for the tests and the CLI.

1. `$SSL_TUNE_DATASETS`, a folder holding `cifar-10-batches-py/`;
2. the folders a caller passes in (`candidates`), in order;
3. the user cache, `$XDG_CACHE_HOME/ssl-tune/datasets` (default `~/.cache/ssl-tune/datasets`), filled once by a
   torchvision download when the caller allows one and the network does.

Otherwise one line names all three places.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Sequence
from pathlib import Path

from ssl_tune.errors import UsageError

ENV_VAR = "SSL_TUNE_DATASETS"
DOWNLOAD_TIMEOUT_S = 60  # per socket operation: a machine without network fails fast instead of hanging
Fetch = Callable[[Path], None]  # downloads a dataset into the folder it is given; raises OSError without network


def user_cache() -> Path:
    """The per-user dataset cache: $XDG_CACHE_HOME/ssl-tune/datasets, else ~/.cache/ssl-tune/datasets."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "ssl-tune" / "datasets"


def search_order(candidates: Sequence[Path] = ()) -> list[tuple[str, Path]]:
    """(where it came from, folder) in the order they are tried; `$SSL_TUNE_DATASETS` only when it is set."""
    order = [(f"${ENV_VAR}", Path(os.environ[ENV_VAR]).expanduser())] if os.environ.get(ENV_VAR) else []
    order += [("folder", Path(folder)) for folder in candidates]
    return [*order, ("user cache", user_cache())]


def find_datasets(marker: str, candidates: Sequence[Path] = (), fetch: Fetch | None = None, what: str = "") -> Path:
    """The first folder of `search_order(candidates)` that holds the file `marker` (a path relative to it, such as
    `cifar-10-batches-py/data_batch_1`). Failing that, `fetch` (when given) fills the user cache. Raises
    UsageError in one line, starting with `what`, naming every place tried and why nothing was downloaded."""
    order = search_order(candidates)
    for _, folder in order:
        if (folder / marker).is_file():
            return folder
    cache = user_cache()
    why = "no download asked for"
    if fetch is not None:
        try:
            fetch(cache)
        except (OSError, RuntimeError) as err:  # URLError is an OSError; torchvision raises RuntimeError on md5
            why = f"download failed: {str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__}"
        if (cache / marker).is_file():
            return cache
    tried = "; ".join(f"{source} {folder}" for source, folder in order)
    unset = "" if os.environ.get(ENV_VAR) else f"${ENV_VAR} (unset); "
    raise UsageError(f"{what}{marker} not found in {unset}{tried} ({why})")


def torchvision_fetch(dataset: str) -> Fetch:
    """A Fetch that downloads and md5-checks torchvision's `dataset` (a class name such as "CIFAR10")."""

    def fetch(folder: Path) -> None:
        from torchvision import datasets

        folder.mkdir(parents=True, exist_ok=True)
        previous = socket.getdefaulttimeout()
        socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)
        try:
            getattr(datasets, dataset)(root=str(folder), train=True, download=True)
        finally:
            socket.setdefaulttimeout(previous)

    return fetch


fetch_cifar10 = torchvision_fetch("CIFAR10")  # about 170 MB, once
