"""scripts/gpu_check.py, the checks a lent GPU machine runs: its JSON is always written, with the failure named,
and its new stages (a ViT DINO epoch with multi-crop, device JPEG decoding of a real pack) run in a CPU dry run."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.helpers import REPO

SCRIPT = str(REPO / "scripts" / "gpu_check.py")


def _run(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "RAY_AUTH_MODE": "disabled"}
    return subprocess.run([sys.executable, SCRIPT, *args], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=600)  # fmt: skip


def test_without_a_gpu_the_json_is_written_and_names_the_failure(tmp_path):
    proc = _run("--out", str(tmp_path))
    assert proc.returncode == 2, proc.stderr[-2000:]
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert report["failures"] == ["setup: no CUDA GPU is visible"] and report["device"] is None


@pytest.mark.slow
def test_the_vit_and_device_jpeg_stages_run_in_a_cpu_dry_run(tmp_path):
    proc = _run("--out", str(tmp_path), "--cpu-dry-run", "--stages", "vit_dino,device_jpeg")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert report["failures"] == [] and set(report["stage_s"]) == {"vit_dino", "device_jpeg"}
    vit = report["vit_dino"]
    assert vit["status"] == "ok" and vit["views"] == [[32, 1], [32, 1], [16, 2]] and vit["images_per_s"] > 0
    jpeg = report["device_jpeg"]  # the CPU's libjpeg through torchvision, against PIL: the same pixels
    assert jpeg["images"] == 64 and jpeg["max_abs_diff"] == 0


def test_a_stage_past_the_time_budget_is_skipped_and_said_so(tmp_path):
    proc = _run("--out", str(tmp_path), "--cpu-dry-run", "--stages", "device_jpeg", "--max-minutes", "0")
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert report["skipped"] == ["device_jpeg"] and "device_jpeg" not in report
