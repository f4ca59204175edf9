"""The device a trial's process trains on: the GPU that Ray assigned it, or the CPU when it reserved none. A trial
that reserved a GPU and finds none (a driver or CUDA-wheel mismatch in the node's image) stops with one line; it
never falls back to a CPU, about 100 times slower.

`SSL_TUNE_TEST_ONLY_GPU_AS_CPU=<folder>` is for tests on machines without GPUs (Ray's fake GPU nodes): a
GPU-reserved trial then trains on CPU, and each rank appends the GPU ids Ray assigned it to
`<folder>/gpu_ids.jsonl`, so that a test can check the placement.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import torch

GPU_AS_CPU_ENV = "SSL_TUNE_TEST_ONLY_GPU_AS_CPU"
ASSIGNMENT_FILE = "gpu_ids.jsonl"


class GpuUnavailable(RuntimeError):
    """A trial reserved a GPU, and torch sees none."""


def gpus_as_cpu() -> bool:
    """Whether the test-only switch is on (then a multi-worker trial's ranks also talk over gloo, not NCCL)."""
    return bool(os.environ.get(GPU_AS_CPU_ENV))


def trial_device(reserved_gpu: bool, rank: int, run: str, assigned: Callable[[], torch.device]) -> torch.device:
    """The device of rank `rank` of the trial (or Ray Train run) `run`: `assigned()` (Ray's choice) when it
    reserved a GPU, else the CPU. Raises GpuUnavailable when torch sees no GPU."""
    if not reserved_gpu:
        return torch.device("cpu")
    if folder := os.environ.get(GPU_AS_CPU_ENV):
        _log_assignment(Path(folder), rank, run)
        return torch.device("cpu")
    if not torch.cuda.is_available():
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        raise GpuUnavailable(
            f"{run} reserved a GPU, but torch {torch.__version__} (CUDA {torch.version.cuda}) sees none "
            f"(CUDA_VISIBLE_DEVICES={visible!r}): check the node's NVIDIA driver against the image's torch wheel"
        )
    return assigned()


def _log_assignment(folder: Path, rank: int, run: str) -> None:
    import ray

    folder.mkdir(parents=True, exist_ok=True)
    line = {"run": run, "rank": rank, "pid": os.getpid(), "node_id": ray.get_runtime_context().get_node_id()}
    line["gpu_ids"] = [str(i) for i in ray.get_gpu_ids()]
    with open(folder / ASSIGNMENT_FILE, "a") as out:
        out.write(json.dumps(line) + "\n")
