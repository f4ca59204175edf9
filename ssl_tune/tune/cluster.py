"""The Ray cluster a sweep, a confirm or a benchmark runs on: joining one at an address, or starting a local one
(and stopping it after), the checks it must pass, and what its resources fit.

`ray.init()` starts a local cluster as children of the sweep driver. If the driver is SIGKILLed, parts of that
cluster linger for a while, and a new local cluster then sees two "active Ray instances": Ray Train's
placement-group cleaner fails on that, so the placement groups of finished trials leak and later trials hang.
A local cluster's session directory is marked with its driver's pid (`mark_session`); before starting a new
one, the processes of marked sessions whose driver is dead are stopped. Clusters of anyone else
(`ray start`, another live driver) carry no mark, or a live pid, and are left alone.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import re
import signal
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ssl_tune.errors import UsageError, first_line
from ssl_tune.tune.devices import GPU_AS_CPU_ENV
from ssl_tune.tune.space import SweepSettings

DRIVER_RESOURCE = "ssl_tune_driver"  # declared by cluster/ head nodes; trial drivers ask for a sliver of it
LOCAL_RESOURCE = "ssl_tune_local_cluster"  # marks the local cluster a driver starts itself: it never grows
DECODE_CPUS = 1.0  # what a streamed trial keeps free for its Ray Data decode tasks (1 CPU each, Ray's default)
MARK_FILE = "ssl_tune_sweep_driver.pid"
SESSION_DIR = re.compile(rb"(/[^\s\0=]*?/session_\d{4}-\d{2}-\d{2}_\d{2}-\d{2}-\d{2}_\d+_\d+)")


@contextlib.contextmanager
def ray_cluster(address: str | None, verbose: bool) -> Iterator[None]:
    """Connect to the cluster at `address` (or $RAY_ADDRESS), or start a local one, and disconnect after.

    A process already connected (bench-search runs its sweeps in one cluster) keeps its connection. A local
    cluster first stops the clusters left behind by killed drivers, offers the driver resource, and is marked
    with this driver's pid. The dashboard's state API must answer (Ray Train V2 needs it).
    """
    import ray

    local = address is None and "RAY_ADDRESS" not in os.environ
    init_kwargs = _driver_settings(verbose, local)  # Tune's environment, also for a connection kept
    if ray.is_initialized():
        yield
        return
    if local and (stale := remove_orphaned_clusters()):
        print(f"stopped {stale} local Ray cluster(s) left behind by a killed sweep driver")
    if local:
        init_kwargs["resources"] = {DRIVER_RESOURCE: 1000, LOCAL_RESOURCE: 1}
    else:
        init_kwargs["address"] = address or "auto"
        check_reachable(address or os.environ["RAY_ADDRESS"])
    try:
        with _native_stderr_silenced(not local and not verbose):  # Ray's C++ retries print a line a second
            context = ray.init(**init_kwargs)
    except ConnectionError as err:  # a cluster that wants a token, or something that is not a Ray cluster
        if local:
            raise
        raise UsageError(f"{first_line(err)}: {_token_hint()}") from None
    if local:
        mark_session(context.address_info["session_dir"])
    try:
        _require_state_api(ray.get_runtime_context().gcs_address)
        yield
    finally:
        ray.shutdown()


def _driver_settings(verbose: bool, local: bool) -> dict[str, Any]:
    """The environment of a driver (Tune's settings), and `ray.init`'s keywords: logging, the test-only GPU switch."""
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")  # ours writes TensorBoard
    # Ray's status tables only with --verbose: its newer reporter prints a config box even at verbose=0
    os.environ["RAY_AIR_NEW_OUTPUT"] = "1" if verbose else "0"
    # snapshot the experiment often (it is small), so a killed driver loses at most seconds of trial states
    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "2")
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")  # we snapshot often
    if local:  # no spot preemption on a local cluster: spare each trial the watcher actor (a process)
        os.environ.setdefault("RAY_TRAIN_ENABLE_PREEMPTION_WATCHER", "0")
    init_kwargs: dict[str, Any] = {"log_to_driver": verbose, "include_dashboard": True}
    if switch := os.environ.get(GPU_AS_CPU_ENV):  # tests: the trials' processes get the switch too
        init_kwargs["runtime_env"] = {"env_vars": {GPU_AS_CPU_ENV: switch}}
    if not verbose:  # Ray's and Optuna's INFO lines: with --verbose only
        import optuna

        init_kwargs["logging_level"] = logging.WARNING
        logging.getLogger("ray.tune").setLevel(logging.WARNING)
        optuna.logging.set_verbosity(optuna.logging.WARNING)
    return init_kwargs


def _token_hint() -> str:
    """What to do when a cluster refused the connection: Ray's `ray start` asks clients for a token by default."""
    if os.environ.get("RAY_AUTH_MODE") == "token":
        return "if it uses token authentication, check that this machine's token is the cluster's (ray get-auth-token)"
    return (
        "if it uses token authentication, set RAY_AUTH_MODE=token and give its token (`ray get-auth-token` on "
        "the head) in ~/.ray/auth_token, $RAY_AUTH_TOKEN_PATH or $RAY_AUTH_TOKEN"
    )


@contextlib.contextmanager
def _native_stderr_silenced(enabled: bool) -> Iterator[None]:
    """File descriptor 2 to /dev/null while enabled: what Ray's C++ core writes there bypasses Python."""
    if not enabled:
        yield
        return
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def check_reachable(address: str, timeout_s: float = 5.0) -> None:
    """A `host:port` (or `ray://host:port`) address must accept a TCP connection: `ray.init` would retry for
    minutes, printing warnings. "auto" and other forms are left to Ray."""
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not port.isdigit():
        return
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()
    except OSError as err:
        raise UsageError(f"no Ray cluster answers at {address} ({err.strerror or err})") from None


def _require_state_api(address: str) -> None:
    """Ray Train V2 needs the dashboard (ray[default]); without it placement groups of ended trials leak."""
    try:
        from ray.util.state import list_nodes

        list_nodes(address=address, limit=1, timeout=30)  # this cluster's, not another local one's
    except Exception as err:
        raise UsageError(
            "Ray's dashboard/state API is unavailable, and without it Ray Train leaks the placement groups of "
            "finished trials and later trials hang: install ray[default], and start a cluster with its dashboard "
            f"(ray start --include-dashboard=true) ({type(err).__name__}: {first_line(err)})"
        ) from None


def driver_resources() -> dict[str, float]:
    """What a trial's driver (the Tune function trial) asks for: a sliver of the head's driver resource."""
    import ray

    return {DRIVER_RESOURCE: 0.001} if ray.cluster_resources().get(DRIVER_RESOURCE) else {"memory": 32 * 2**20}


def cluster_resources() -> dict[str, float]:
    """The connected cluster's resources now."""
    import ray

    return ray.cluster_resources()


def trial_needs(settings: SweepSettings, streamed: bool) -> dict[str, float]:
    """What one trial takes of a node: its workers' CPUs and its GPUs, and for a streamed trial a CPU kept free
    for its Ray Data decode tasks (without it they wait for CPUs the trial holds, and the trial hangs)."""
    needs = {"CPU": settings.workers_per_trial * settings.cpus_per_worker + (DECODE_CPUS if streamed else 0.0)}
    if settings.gpus_per_trial:
        needs["GPU"] = settings.gpus_per_trial
    return needs


def concurrency(settings: SweepSettings, resources: dict[str, float], streamed: bool = False) -> tuple[int | None, str]:
    """How many trials may run at once (None: no cap), and why.

    `--max-concurrent` when given. On a cluster that can grow (any cluster but the local one a driver starts
    itself), no cap: a trial that waits for resources is the demand its autoscaler adds a node for (Tune keeps
    one trial of a searcher pending at a time, or `--max-concurrent` of them). On the local cluster, as many
    as fit its `resources`; a trial that cannot fit it at all is refused (UsageError), as it would wait forever."""
    needs = trial_needs(settings, streamed)
    if resources.get(LOCAL_RESOURCE):
        fits = min(math.floor(resources.get(k, 0.0) / v + 1e-9) for k, v in needs.items())
        if fits == 0:
            free = " (a streamed trial keeps 1 CPU free for its decode tasks)" if streamed else ""
            has = {k: resources.get(k, 0.0) for k in needs}
            raise UsageError(
                f"one trial needs {needs}{free} and this machine's Ray cluster has {has}: lower "
                "--cpus-per-worker or --workers-per-trial"
            )
    if settings.max_concurrent is not None:
        return settings.max_concurrent, "--max-concurrent"
    if not resources.get(LOCAL_RESOURCE):
        return None, "the cluster can grow: a trial that waits for resources asks its autoscaler for a node"
    return fits, f"{fits} x {needs} fit the cluster's {dict((k, resources.get(k, 0)) for k in needs)}"


# --- local clusters left behind by a killed driver ----------------------------------------------------


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
