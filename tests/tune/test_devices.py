"""The device a trial trains on (`ssl_tune.tune.devices`): never a silent CPU for a trial that reserved a GPU."""

from __future__ import annotations

import pytest
import torch

from ssl_tune.tune.devices import GPU_AS_CPU_ENV, GpuUnavailable, trial_device


def _unused() -> torch.device:
    raise AssertionError("Ray's device is asked for only when torch sees a GPU")


def test_a_trial_without_a_gpu_trains_on_cpu():
    assert trial_device(False, 0, "trial a", _unused) == torch.device("cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine whose torch sees no GPU")
def test_a_gpu_trial_that_sees_no_gpu_stops_with_one_line(monkeypatch):
    monkeypatch.delenv(GPU_AS_CPU_ENV, raising=False)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3")
    with pytest.raises(GpuUnavailable) as err:
        trial_device(True, 0, "trial a", _unused)
    message = str(err.value)
    assert "\n" not in message and message.startswith("trial a reserved a GPU, but torch") and "'3'" in message
