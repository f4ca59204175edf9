"""The training loop never reads a device value on the host inside an epoch (issue 6).

On a GPU each such read (`.item()`, `bool(t)`, `float(t)`, `.tolist()`, `.cpu()`, `.to("cpu")`,
`torch.nonzero`, a boolean mask, ...) stalls the CPU until the GPU has caught up. CPU tensors cannot show a
stall, so the test makes every such read raise while the steps of a real `train_epoch` run; the
once-per-epoch reductions after the loop are outside the guarded window.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType

import pytest
import torch

from ssl_tune.config import build_config
from ssl_tune.data import load_data
from ssl_tune.engine.run import TrainingRun
from ssl_tune.methods import METHODS
from tests.helpers import small_params

HOST_READS = ("item", "tolist", "numpy", "nonzero", "cpu", "__bool__", "__int__", "__float__", "__index__")


def _optimizer_step_count(caller: FrameType) -> bool:
    """torch's Adam(W) reads its `step` counter with `.item()`: a host tensor unless the optimiser is fused (as
    it is on a GPU here, `optim._sgd_impl`), so no device sync. On the CPU the test cannot tell it apart."""
    return caller.f_code.co_name == "_get_value" and caller.f_code.co_filename.endswith("torch/optim/optimizer.py")


def _to_the_host(args: tuple, kwargs: dict) -> bool:
    """Whether `Tensor.to(*args, **kwargs)` names the CPU as its target (a copy to the host)."""
    targets = [*args[:1], kwargs.get("device")]
    return any(isinstance(t, str | torch.device) and torch.device(t).type == "cpu" for t in targets)


class HostSync(AssertionError):
    pass


@contextmanager
def host_reads_forbidden(monkeypatch: pytest.MonkeyPatch, to_cpu: bool = True) -> Iterator[Callable[[bool], None]]:
    """Yields `arm(on)`; while armed, any host read of a tensor raises HostSync. `to_cpu=False` lets `.to(cpu)`
    pass: code that moves host images to the run's device (here the CPU too) cannot be told from a read back."""
    armed = [False]

    def guard(name: str, original: Callable) -> Callable:
        def wrapper(self, *args, **kwargs):
            if armed[0] and not _optimizer_step_count(sys._getframe(1)):
                raise HostSync(f"Tensor.{name} inside a training step (shape {tuple(self.shape)})")
            return original(self, *args, **kwargs)

        return wrapper

    getitem = torch.Tensor.__getitem__

    def checked_getitem(self, index):
        parts = index if isinstance(index, tuple) else (index,)
        if armed[0] and any(isinstance(p, torch.Tensor) and p.dtype == torch.bool for p in parts):
            raise HostSync("boolean-mask indexing inside a training step")
        return getitem(self, index)

    to = torch.Tensor.to

    def checked_to(self, *args, **kwargs):
        if armed[0] and to_cpu and _to_the_host(args, kwargs):
            raise HostSync(f"Tensor.to(cpu) inside a training step (shape {tuple(self.shape)})")
        return to(self, *args, **kwargs)

    nonzero = torch.nonzero

    def checked_nonzero(*args, **kwargs):
        if armed[0]:
            raise HostSync("torch.nonzero inside a training step")
        return nonzero(*args, **kwargs)

    with monkeypatch.context() as m:
        for name in HOST_READS:
            m.setattr(torch.Tensor, name, guard(name, getattr(torch.Tensor, name)))
        m.setattr(torch.Tensor, "__getitem__", checked_getitem)
        m.setattr(torch.Tensor, "to", checked_to)
        m.setattr(torch, "nonzero", checked_nonzero)
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
        with pytest.raises(HostSync):
            x.cpu()
        with pytest.raises(HostSync):
            x.to("cpu")
        with pytest.raises(HostSync):
            x.to(device=torch.device("cpu"), non_blocking=True)
        with pytest.raises(HostSync):
            torch.nonzero(x)
        x.to(torch.float64)  # a dtype change stays on the device
        arm(False)
        assert x.sum().item() == 3.0


# queue from the start, so SwAV's queued Sinkhorn path runs inside the guarded steps
EXTRA_PARAMS = {"swav": {"queue_size": 32, "epoch_queue_starts": 0}}


@pytest.mark.parametrize(
    ("method", "optimizer", "precision", "backbone"),
    [(m, opt, "fp32", "resnet_tiny") for opt in ("sgd", "lars") for m in sorted(METHODS)]
    + [("simsiam", "sgd", "bf16", "resnet_tiny"), ("dino", "sgd", "bf16", "resnet_tiny")]
    + [("dino", "adamw", "fp32", "vit_tiny")],  # the ViT path: AdamW, a weight-decay schedule, local crops
)  # fmt: skip
def test_training_steps_do_not_read_device_values(method, optimizer, precision, backbone, monkeypatch):
    params = small_params(method, **EXTRA_PARAMS.get(method, {}))
    # bf16 at 32 px: torch 2.14's CPU bf16 conv gives NaN weight grads for a 1x1 map into a stride-2 conv,
    # which 8 px local crops reach in resnet_tiny's last stage
    size = 32 if precision == "bf16" else 16
    cfg = build_config(
        {"method": method, "optimizer": optimizer, "precision": precision, "batch_size": 16, "epochs": 1,
         "backbone": backbone, "warmup_epochs": 0, **({"weight_decay": 0.04, "weight_decay_end": 0.4} if
                                                      optimizer == "adamw" else {}),
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
