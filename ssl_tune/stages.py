"""Long steps outside training, shown while they run: a progress bar on an interactive terminal, and a line when
a stage starts and one when it ends everywhere else (logs, CI, pipes).

    with stage("packing train split", total=50000, detail="in 10 shards") as advance:
        for shard in shards:
            write(shard)
            advance(len(shard))

prints, outside a terminal:

    packing train split: 50000 images in 10 shards ...
    packing train split: 50000 images in 12.3 s
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TextIO


def _nothing(n: int) -> None:
    pass


@contextmanager
def stage(
    description: str,
    total: int | None = None,
    *,
    unit: str = "images",
    detail: str = "",
    enabled: bool | None = None,
    quiet: bool = False,
    file: TextIO | None = None,
) -> Iterator[Callable[[int], None]]:
    """Yields `advance(n)`, to call as each `n` more units are done.

    `enabled`: the bar (True) or the start and end lines (False); by default the bar when `file` (stderr unless
    given) is a terminal. The bar is removed when the stage ends; the lines go to stdout. `quiet`: show nothing.
    No end line is printed when the stage raises.
    """
    if quiet:
        yield _nothing
        return
    stream = sys.stderr if file is None else file
    if stream.isatty() if enabled is None else enabled:
        from tqdm import tqdm

        with tqdm(
            total=total,
            desc=description,
            unit=f" {unit}",
            unit_scale=True,
            leave=False,
            dynamic_ncols=True,
            file=stream,
            bar_format=None if total is not None else "{desc} ...",  # nothing to count: just what runs
        ) as bar:
            yield bar.update
        return

    count = 0

    def advance(n: int) -> None:
        nonlocal count
        count += n

    size = f": {total} {unit}" if total is not None else ""
    print(f"{description}{size}{f' {detail}' if detail else ''} ...", flush=True)
    start = time.perf_counter()
    yield advance
    done = f"{count} {unit}" if count else "done"
    print(f"{description}: {done} in {time.perf_counter() - start:.1f} s", flush=True)


__all__ = ["stage"]
