"""Local Ray clusters left behind by a killed sweep driver, and their removal.

`ray.init()` starts a local cluster as children of the sweep driver. If the driver is SIGKILLed, parts of
that cluster linger for a while, and a new local cluster then sees two "active Ray instances": Ray Train's
placement-group cleaner fails on that, so the placement groups of finished trials leak and later trials
hang. A local sweep marks its cluster's session directory with its pid (`mark_session`); before starting
a new cluster it stops the processes of marked sessions whose driver is dead. Clusters of anyone else
(`ray start`, another live driver) carry no mark, or a live pid, and are left alone.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import time
from pathlib import Path

MARK_FILE = "ssl_tune_sweep_driver.pid"
SESSION_DIR = re.compile(rb"(/[^\s\0=]*?/session_\d{4}-\d{2}-\d{2}_\d{2}-\d{2}-\d{2}_\d+_\d+)")


def mark_session(session_dir: str) -> None:
    """Record this process as the driver of the local cluster in `session_dir`."""
    Path(session_dir, MARK_FILE).write_text(str(os.getpid()))


def _processes() -> dict[int, bytes]:
    """pid -> command line of every process we can read."""
    out = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                out[int(entry.name)] = (entry / "cmdline").read_bytes()
    return out


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def orphaned_sessions() -> set[bytes]:
    """Session directories of running clusters whose marked ssl-tune driver has died."""
    sessions = set()
    for cmd in _processes().values():
        for match in SESSION_DIR.finditer(cmd):
            mark = Path(os.fsdecode(match.group(1)), MARK_FILE)
            with contextlib.suppress(OSError, ValueError):
                if not _alive(int(mark.read_text())):
                    sessions.add(match.group(1))
    return sessions


def remove_orphaned_clusters(timeout_s: float = 20.0) -> int:
    """Stop every process of the orphaned clusters (TERM, then KILL after `timeout_s`). Returns how many."""
    sessions = orphaned_sessions()
    if not sessions:
        return 0

    def members() -> list[int]:
        return [pid for pid, cmd in _processes().items() if any(s in cmd for s in sessions) and pid != os.getpid()]

    pids = members()
    for sig, wait in ((signal.SIGTERM, timeout_s), (signal.SIGKILL, 5.0)):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)
        deadline = time.time() + wait
        while (pids := members()) and time.time() < deadline:
            time.sleep(0.2)
        if not pids:
            break
    return len(sessions)
