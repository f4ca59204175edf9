"""A real autoscaling Ray cluster on one machine, for tests. Ray's autoscaler, with its fake multi-node provider
(`RAY_FAKE_CLUSTER=1`), starts real raylets with the declared resources, GPUs included, when work waits for
them, and stops them when idle. Run it inside a private network namespace (loopback only), where its head at
port 6379 meets no other cluster:

    unshare -n python -m tests.fake_cluster --report OUT.json [--gpu-nodes-up 1] -- COMMAND ...

It brings loopback up, writes the autoscaler's config, starts the head, waits for `--gpu-nodes-up` GPU nodes,
runs COMMAND with RAY_ADDRESS set, samples the alive nodes every second while it runs and for `--linger` seconds
after, writes OUT.json ({"returncode", "stdout", "stderr", "samples": [{"t", "gpu_nodes", "nodes"}],
"head_node_id", "preempted"}) and kills the cluster's processes by their pids (never `ray stop`, which would stop every
cluster of the machine). With `--s3-mirror DIR`, a real S3 API (moto's server, `tests/s3_server.py`) serves the
bucket `ssl-tune` inside the namespace, every node and the command get its endpoint and keys, and the bucket is
copied to DIR through the S3 API after the command.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import yaml

from ssl_tune.tune.devices import ASSIGNMENT_FILE, GPU_AS_CPU_ENV
from tests.s3_server import BUCKET, s3_files, s3_read, s3_server

PORT = 6379  # the fake provider's nodes join the head here
GPU_NODE = "gpu"


def autoscaler_config(head_cpus: float, gpu_nodes_up: int, max_gpu_nodes: int) -> dict[str, Any]:
    """A fake_multinode cluster: a CPU head offering the sweep driver's resource, and a node type of 1 CPU and
    1 GPU, `gpu_nodes_up` of them kept up, at most `max_gpu_nodes`; idle nodes go after 6 s."""
    empty: dict[str, Any] = {key: [] for key in ("initialization_commands", "setup_commands", "head_setup_commands",
                                                 "worker_setup_commands", "head_start_ray_commands",
                                                 "worker_start_ray_commands", "cluster_synced_files",
                                                 "rsync_exclude", "rsync_filter")}  # fmt: skip
    return {
        "cluster_name": "ssl-tune-fake",
        "max_workers": max_gpu_nodes,
        "upscaling_speed": 1.0,
        "idle_timeout_minutes": 0.1,
        "provider": {
            "type": "fake_multinode",
            "use_node_id_as_ip": True,
            "disable_node_updaters": True,
            "disable_launch_config_check": True,
        },
        "auth": {},
        "docker": {},
        "file_mounts": {},
        "file_mounts_sync_continuously": False,
        "head_node_type": "ray.head.default",
        "available_node_types": {
            "ray.head.default": {
                "resources": {"CPU": head_cpus, "ssl_tune_driver": 1000},
                "node_config": {},
                "max_workers": 0,
            },
            GPU_NODE: {
                "resources": {"CPU": 1, "GPU": 1},
                "node_config": {},
                "min_workers": gpu_nodes_up,
                "max_workers": max_gpu_nodes,
            },
        },
        **empty,
    }


def _kill(temp_dir: str) -> None:
    """SIGKILL every process whose command line names the cluster's temp dir."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            if temp_dir.encode() in (entry / "cmdline").read_bytes():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(entry.name), signal.SIGKILL)


def _gpu_nodes(ray: Any) -> int:
    return sum(1 for n in ray.nodes() if n["Alive"] and n["Resources"].get("GPU"))


def _sample(samples: list[dict[str, Any]], stop: threading.Event, start: float) -> None:
    import ray

    while not stop.is_set():
        with contextlib.suppress(Exception):
            alive = [n for n in ray.nodes() if n["Alive"]]
            gpus = [n["NodeID"] for n in alive if n["Resources"].get("GPU")]
            samples.append({"t": round(time.time() - start, 1), "gpu_nodes": gpus, "nodes": len(alive)})
        stop.wait(1.0)


def _last_checkpoint(storage: Path) -> int:
    """The highest index of Tune's checkpoint_NNNNNN folders under `storage`, -1 if none."""
    return max((int(p.name.rpartition("_")[2]) for p in storage.rglob("checkpoint_[0-9]*")), default=-1)


def _preempt(report: dict[str, Any], storage: Path, checkpoint: int, stop: threading.Event, start: float) -> None:
    """Once the first trial has logged its node (`SSL_TUNE_TEST_ONLY_GPU_AS_CPU`'s gpu_ids.jsonl) and uploaded its
    checkpoint number `checkpoint` under `storage`, SIGKILL that node's raylet, as a spot preemption would take
    the node. Keyed on progress, not on time, so a fast machine cannot finish the trial before the kill."""
    log = Path(os.environ[GPU_AS_CPU_ENV], ASSIGNMENT_FILE)
    while not stop.is_set() and not (log.exists() and _last_checkpoint(storage) >= checkpoint):
        stop.wait(0.1)
    if stop.is_set():
        return
    node = json.loads(log.read_text().splitlines()[0])["node_id"]
    for entry in Path("/proc").iterdir():
        with contextlib.suppress(OSError, ValueError):
            cmdline = (entry / "cmdline").read_bytes()
            if b"/raylet/raylet" in cmdline and node.encode() in cmdline:
                os.kill(int(entry.name), signal.SIGKILL)
                report["preempted"] = {"node_id": node, "t": round(time.time() - start, 1)}


def _mirror(uri: str, out: Path, env: dict[str, str]) -> None:
    """Copy every file under `uri` to the folder `out`, read through the S3 API."""
    for name in s3_files(uri, env):
        target = out / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(s3_read(f"{uri}/{name}", env))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--report", required=True)
    parser.add_argument("--head-cpus", type=float, default=1)
    parser.add_argument("--gpu-nodes-up", type=int, default=0, help="GPU nodes kept up (min_workers)")
    parser.add_argument("--max-gpu-nodes", type=int, default=3)
    parser.add_argument("--linger", type=float, default=0, help="seconds to keep sampling after the command")
    parser.add_argument("--timeout", type=float, default=900)
    parser.add_argument("--preempt-at-checkpoint", type=int, help="kill the first trial's node at this checkpoint")
    parser.add_argument("--storage", type=Path, help="where --preempt-at-checkpoint looks (the sweep's)")
    parser.add_argument("--s3-mirror", type=Path, help="serve S3 in the namespace (moto); copy its bucket here after")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command

    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    temp_dir = tempfile.mkdtemp(prefix="rfake", dir="/tmp")  # short: Ray's socket paths must fit 107 chars
    config = Path(temp_dir, "autoscaler.yaml")
    config.write_text(yaml.safe_dump(autoscaler_config(args.head_cpus, args.gpu_nodes_up, args.max_gpu_nodes)))
    env = {**os.environ, "RAY_FAKE_CLUSTER": "1", "AUTOSCALER_UPDATE_INTERVAL_S": "1"}
    env |= {"RAY_AUTH_MODE": "disabled", "RAY_TMPDIR": temp_dir, "RAY_USAGE_STATS_ENABLED": "0"}
    ray = str(Path(sys.executable).with_name("ray"))
    report: dict[str, Any] = {"returncode": None, "samples": []}
    stop = threading.Event()
    stack = contextlib.ExitStack()
    try:
        if args.s3_mirror is not None:  # before the head starts: every node, and the command, reach it
            env |= stack.enter_context(s3_server())
        head = [ray, "start", "--head", f"--port={PORT}", "--node-ip-address=127.0.0.1", "--num-gpus=0"]
        head += [f"--num-cpus={args.head_cpus:g}", '--resources={"ssl_tune_driver": 1000}']
        head += [f"--autoscaling-config={config}", "--include-dashboard=true", f"--temp-dir={temp_dir}"]
        subprocess.run(head, env=env, check=True, capture_output=True, timeout=180)
        os.environ.update({"RAY_AUTH_MODE": "disabled", "RAY_TMPDIR": temp_dir})
        import ray as ray_module

        ray_module.init(address=f"127.0.0.1:{PORT}", log_to_driver=False, logging_level="ERROR")
        report["head_node_id"] = ray_module.get_runtime_context().get_node_id()
        deadline = time.time() + 120
        while _gpu_nodes(ray_module) < args.gpu_nodes_up and time.time() < deadline:  # the warm nodes first
            time.sleep(0.5)
        start = time.time()
        sampler = threading.Thread(target=_sample, args=(report["samples"], stop, start), daemon=True)
        sampler.start()
        if args.preempt_at_checkpoint is not None:
            preempt = (report, args.storage, args.preempt_at_checkpoint, stop, start)
            threading.Thread(target=_preempt, args=preempt, daemon=True).start()
        env["RAY_ADDRESS"] = f"127.0.0.1:{PORT}"
        proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=args.timeout)
        report.update(returncode=proc.returncode, stdout=proc.stdout, stderr=proc.stderr)
        report["command_s"] = round(time.time() - start, 1)
        time.sleep(args.linger)
        if args.s3_mirror is not None:
            _mirror(f"s3://{BUCKET}", args.s3_mirror, env)
    finally:
        stop.set()
        Path(args.report).write_text(json.dumps(report, indent=1))
        with contextlib.suppress(Exception):
            import ray as ray_module

            ray_module.shutdown()
        _kill(temp_dir)
        stack.close()
        shutil.rmtree(temp_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
