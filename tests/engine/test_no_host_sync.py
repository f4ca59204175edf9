"""The training loop never reads a device value on the host inside an epoch (issue 6).

On a GPU each such read (`.item()`, `bool(t)`, `float(t)`, `.tolist()`, a boolean mask, ...) stalls the
CPU until the GPU has caught up. CPU tensors cannot show a stall, so the test makes every such read
raise while the steps of a real `train_epoch` run; the once-per-epoch reductions after the loop are
outside the guarded window.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
import torch

from ssl_tune.config import build_config
from ssl_tune.data import load_data
from ssl_tune.engine.run import TrainingRun
from ssl_tune.methods import METHODS
from tests.helpers import small_params

HOST_READS = ("item", "tolist", "numpy", "nonzero", "__bool__", "__int__", "__float__", "__index__")


class HostSync(AssertionError):
    pass


@contextmanager
def host_reads_forbidden(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[bool], None]]:
    """Yields `arm(on)`; while armed, any host read of a tensor raises HostSync."""
    armed = [False]

    def guard(name: str, original: Callable) -> Callable:
        def wrapper(self, *args, **kwargs):
            if armed[0]:
                raise HostSync(f"Tensor.{name} inside a training step (shape {tuple(self.shape)})")
            return original(self, *args, **kwargs)

        return wrapper

    getitem = torch.Tensor.__getitem__

    def checked_getitem(self, index):
        parts = index if isinstance(index, tuple) else (index,)
        if armed[0] and any(isinstance(p, torch.Tensor) and p.dtype == torch.bool for p in parts):
            raise HostSync("boolean-mask indexing inside a training step")
        return getitem(self, index)

    with monkeypatch.context() as m:
        for name in HOST_READS:
            m.setattr(torch.Tensor, name, guard(name, getattr(torch.Tensor, name)))
        m.setattr(torch.Tensor, "__getitem__", checked_getitem)
        yield lambda on: armed.__setitem__(0, on)


def test_guard_catches_a_host_read(monkeypatch):
    with host_reads_forbidden(monkeypatch) as arm:
        x = torch.ones(3)
        arm(True)
        with pytest.raises(HostSync):
            x.sum().item()
        with pytest.raises(HostSync):
            bool(x.sum() > 0)
        with pytest.raises(HostSync):
            x[x > 0]
        arm(False)
        assert x.sum().item() == 3.0


# queue from the start, so SwAV's queued Sinkhorn path runs inside the guarded steps
EXTRA_PARAMS = {"swav": {"queue_size": 32, "epoch_queue_starts": 0}}


@pytest.mark.parametrize(
    ("method", "optimizer", "precision"),
    [(m, "sgd", "fp32") for m in sorted(METHODS)] + [(m, "lars", "fp32") for m in sorted(METHODS)]
    + [("simsiam", "sgd", "bf16"), ("dino", "sgd", "bf16")],
)  # fmt: skip
def test_training_steps_do_not_read_device_values(method, optimizer, precision, monkeypatch):
    params = small_params(method, **EXTRA_PARAMS.get(method, {}))
    # bf16 at 32 px: torch 2.14's CPU bf16 conv gives NaN weight grads for a 1x1 map into a stride-2 conv,
    # which 8 px local crops reach in resnet_tiny's last stage
    size = 32 if precision == "bf16" else 16
    cfg = build_config(
        {"method": method, "optimizer": optimizer, "precision": precision, "batch_size": 16, "epochs": 1,
         "device": "cpu", "image_size": size, "train_subset": 80, "test_subset": 16, "method_params": params,
         "augment": {"blur_prob": 0.5, "solarize_prob": 0.2}}  # every op of the views runs
    )  # fmt: skip
    data = load_data("synthetic", image_size=size, train_subset=80, test_subset=16)
    run = TrainingRun(cfg, data)
    run.initial_metrics()
    last = run.steps_per_epoch - 1
    with host_reads_forbidden(monkeypatch) as arm:
        # armed after step 0 (lazy first-step work), disarmed after the last step (the epoch's reductions)
        metrics = run.train_epoch(on_step=lambda i: arm(i < last))
    assert run.steps_per_epoch == 5 and metrics.loss is not None
