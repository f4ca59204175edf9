"""The training core: one `TrainingRun` per process, driven epoch by epoch.

It knows nothing of Ray or of any method's internals: the CLI (`ssl_tune.engine.run_dir`) and the Ray Train
worker loop (`ssl_tune.tune.worker`) both create a run, restore its state if any, and call
`train_epoch()` until done. Data lives on the device as uint8 (or streams there from host memory, see
`ssl_tune.data.placement`); views are made there per batch; the loss and collapse signal are summed on
the device and read once per epoch.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import replace
from typing import Any

import torch
import torch.distributed as torch_dist
from torch import nn

from ssl_tune.config import TrainConfig
from ssl_tune.data import ImageData
from ssl_tune.data.placement import place_images
from ssl_tune.distributed import Distributed
from ssl_tune.engine.collapse import effective_rank, embedding_std
from ssl_tune.engine.knn import extract_features, knn_accuracy
from ssl_tune.engine.optim import build_optimizer, lr_factor, set_lr
from ssl_tune.errors import UsageError
from ssl_tune.methods import Method, Progress, StepOutput, get_method
from ssl_tune.models.backbones import build_backbone
from ssl_tune.views import ViewGenerator

CHECKPOINT_FORMAT = 1
STATUS_OK, STATUS_DIVERGED, STATUS_COLLAPSED = "ok", "diverged", "collapsed"


def resolve_device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise UsageError("device 'cuda' was asked for but no CUDA GPU is visible")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def epoch_seed(seed: int, epoch: int, rank: int = 0) -> int:
    """A distinct, reproducible seed per (run seed, epoch, rank): resumes replay the same randomness."""
    return (seed * 1_000_003 + epoch * 10_007 + rank * 101) % (2**63 - 1)


class TrainingRun:
    """A method, its optimiser and its data on one device; `train_epoch` runs the next epoch."""

    def __init__(
        self,
        cfg: TrainConfig,
        data: ImageData,
        device: torch.device | None = None,
        *,
        dist: Distributed | None = None,
        wrap_model: Callable[[nn.Module], nn.Module] | None = None,
    ) -> None:
        self.cfg = cfg
        self.dist = dist or Distributed.current()
        self.device = device or resolve_device(cfg.device)
        if cfg.batch_size % self.dist.world_size:
            raise UsageError(f"batch_size {cfg.batch_size} is not divisible by {self.dist.world_size} workers")
        if cfg.batch_size > len(data.train_labels):
            raise UsageError(
                f"batch_size {cfg.batch_size} is larger than the training set ({len(data.train_labels)} images)"
            )
        if cfg.knn_bank_subset is not None and cfg.knn_bank_subset > len(data.train_labels):
            n = len(data.train_labels)
            raise UsageError(f"knn_bank_subset {cfg.knn_bank_subset} is larger than the training set ({n} images)")
        self.local_batch = cfg.batch_size // self.dist.world_size
        self.steps_per_epoch = len(data.train_labels) // cfg.batch_size
        self.total_steps = self.steps_per_epoch * cfg.epochs
        self.train_source = place_images(data.train_images, self.device, cfg.data_placement, cfg.device_data_limit_gb)
        self.placement = self.train_source.placement
        # labels always, test images when resident; streamed test images are copied per kNN chunk
        self.data = replace(
            data,
            train_images=self.train_source.images,
            train_labels=data.train_labels.to(self.device),
            test_images=data.test_images.to(self.device) if self.placement == "resident" else data.test_images,
            test_labels=data.test_labels.to(self.device),
        )

        cuda = self.device.type == "cuda"
        self.autocast_dtype = (
            torch.bfloat16 if (cfg.precision == "bf16" or (cfg.precision == "auto" and cuda)) else None
        )
        channels_last = cfg.channels_last  # faster on CPU (oneDNN) as on GPU

        torch.manual_seed(cfg.seed)  # the same initial weights on every rank and every resume
        method_cls = get_method(cfg.method)
        backbone = build_backbone(cfg.backbone, data.image_size)
        self.method: Method = method_cls(backbone, cfg.method_param_model()).to(self.device)
        if channels_last:
            self.method = self.method.to(memory_format=torch.channels_last)
        if cfg.compile:  # the backbone only: heads and losses are small, and forward's Python stays eager
            self.method.backbone.compile()  # in place: state_dict keys are unchanged
        self.model: nn.Module = wrap_model(self.method) if wrap_model else self.method
        self.optimizer = build_optimizer(
            self.method.parameter_groups(),
            name=cfg.optimizer,
            lr=cfg.lr,
            batch_size=cfg.batch_size,
            weight_decay=cfg.weight_decay,
            momentum=cfg.momentum,
            lars_eta=cfg.lars_eta,
            lars_clip_lr=cfg.lars_clip_lr,
        )
        self.views = ViewGenerator(
            self.method.view_specs(cfg.augment, data.image_size), data.mean, data.std, channels_last=channels_last
        )
        self.warmup_steps = round(cfg.warmup_epochs * self.steps_per_epoch)
        self.epoch = 0  # epochs completed
        self.history: list[dict[str, Any]] = []

    # --- state -------------------------------------------------------------------------------------

    @property
    def done(self) -> bool:
        return self.epoch >= self.cfg.epochs or self.stopped

    @property
    def stopped(self) -> bool:
        return bool(self.history) and self.history[-1].get("status", STATUS_OK) != STATUS_OK

    @property
    def best_knn(self) -> float:
        return max((m["knn_acc"] for m in self.history), default=float("nan"))

    def state_dict(self) -> dict[str, Any]:
        return {
            "format": CHECKPOINT_FORMAT,
            "epoch": self.epoch,
            "model": self.method.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "history": self.history,
            "config": self.cfg.to_yaml_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("format") != CHECKPOINT_FORMAT:
            raise UsageError(f"checkpoint format {state.get('format')!r} is not {CHECKPOINT_FORMAT}")
        self.method.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.epoch = int(state["epoch"])
        self.history = list(state["history"])

    # --- evaluation --------------------------------------------------------------------------------

    def knn_accuracy(self) -> float:
        """Weighted kNN top-1 of the frozen backbone, with the first `knn_bank_subset` train images (all by
        default) as the bank and the whole test split as queries. Computed on rank 0, broadcast to all ranks."""
        acc = torch.zeros(1, dtype=torch.float64)
        if self.dist.is_main:
            bank_dtype = torch.float16 if self.device.type == "cuda" else torch.float32
            kwargs = {"dtype": bank_dtype, "autocast_dtype": self.autocast_dtype}
            backbone, bank = self.method.backbone, slice(None, self.cfg.knn_bank_subset)
            train = extract_features(backbone, self.data.train_images[bank], self._plain_on_device, **kwargs)
            test = extract_features(backbone, self.data.test_images, self._plain_on_device, **kwargs)
            acc[0] = knn_accuracy(
                train,
                self.data.train_labels[bank],
                test,
                self.data.test_labels,
                self.data.num_classes,
                self.cfg.knn_k,
                self.cfg.knn_temperature,
            )
        if self.dist.world_size > 1:
            buf = acc.to(self.device) if torch_dist.get_backend() == "nccl" else acc
            torch_dist.broadcast(buf, src=0)
            acc = buf.cpu()
        return float(acc[0])

    def _plain_on_device(self, images: torch.Tensor) -> torch.Tensor:
        return self.views.plain(images.to(self.device))  # a no-op move for resident images

    def initial_metrics(self) -> dict[str, Any]:
        """Epoch 0: the kNN accuracy of the randomly initialised network."""
        start = time.perf_counter()
        knn = self.knn_accuracy()
        metrics = {
            "epoch": 0,
            "loss": None,
            "knn_acc": knn,
            "best_knn_acc": knn,
            "lr": 0.0,
            "epoch_time_s": time.perf_counter() - start,
            "knn_time_s": time.perf_counter() - start,
            "images_per_s": 0.0,
            "embedding_std": None,
            "embedding_rank": None,
            "embedding_std_ratio": None,
            "status": STATUS_OK,
        }
        self.history = [metrics]
        return metrics

    # --- training ----------------------------------------------------------------------------------

    def _epoch_order(self, epoch: int) -> torch.Tensor:
        """This rank's sample indices for the epoch, (steps, local_batch) on the host; the same shuffle on all
        ranks."""
        g = torch.Generator().manual_seed(epoch_seed(self.cfg.seed, epoch))
        perm = torch.randperm(len(self.data.train_labels), generator=g)[: self.steps_per_epoch * self.cfg.batch_size]
        perm = perm.view(self.steps_per_epoch, self.dist.world_size, self.local_batch)[:, self.dist.rank]
        return perm

    def train_step(self, views: list[torch.Tensor], progress: Progress) -> StepOutput:
        """One optimisation step on ready views: lr schedule, autocast forward, backward, the method's hooks
        (frozen layers, EMA updates) and the optimiser. No host-device synchronisation."""
        set_lr(self.optimizer, lr_factor(progress.step, self.warmup_steps, progress.total_steps))
        autocast = torch.autocast(self.device.type, dtype=self.autocast_dtype) if self.autocast_dtype else nullcontext()
        with autocast:
            out = self.model(views, progress)
        if self.cfg.inject_nan_from_epoch is not None and progress.epoch + 1 >= self.cfg.inject_nan_from_epoch:
            out.loss = out.loss * float("nan")  # fault injection: exercises the divergence path
        self.optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        self.method.before_optimizer_step(progress)
        self.optimizer.step()
        self.method.after_optimizer_step(progress)
        return out

    def train_epoch(self, on_step: Callable[[int], None] | None = None) -> dict[str, Any]:
        """Train the next epoch, then measure kNN. Returns (and records) the epoch's metrics.

        `on_step(i)` is called after each step (e.g. a progress bar); it must not read device values.
        """
        if not self.history:
            raise RuntimeError("call initial_metrics() or load_state_dict() before train_epoch()")
        epoch = self.epoch + 1
        self.model.train()
        order = self._epoch_order(epoch)
        gen = torch.Generator(device=self.device).manual_seed(epoch_seed(self.cfg.seed, epoch, self.dist.rank))
        sums = torch.zeros(2, device=self.device, dtype=torch.float64)  # loss, embedding std
        extras: dict[str, torch.Tensor] = {}
        start = time.perf_counter()
        for i, images in enumerate(self.train_source.batches(order)):
            step = (epoch - 1) * self.steps_per_epoch + i
            progress = Progress(epoch - 1, step, self.steps_per_epoch, self.total_steps)
            out = self.train_step(self.views(images, gen), progress)
            sums += torch.stack([out.loss.detach().double(), embedding_std(out.embedding).double()])
            for k, v in out.extras.items():
                extras[k] = extras.get(k, 0) + v.detach().double()
            if on_step:
                on_step(i)
        if self.dist.world_size > 1:
            packed = torch.cat([sums, torch.stack(list(extras.values()))]) if extras else sums
            torch_dist.all_reduce(packed)
            packed /= self.dist.world_size
            sums = packed[:2]
            extras = dict(zip(extras, packed[2:], strict=True))
        train_time = time.perf_counter() - start
        loss, std = (sums / self.steps_per_epoch).tolist()
        self.epoch = epoch

        status = STATUS_OK
        if not math.isfinite(loss):
            status = STATUS_DIVERGED
        proj_dim = out.embedding.shape[1]
        rank = float(effective_rank(out.embedding)) if status == STATUS_OK else float("nan")  # last batch
        std_ratio = std * math.sqrt(proj_dim)
        if status == STATUS_OK and std_ratio < self.cfg.collapse_std_threshold:
            status = STATUS_COLLAPSED
        knn_start = time.perf_counter()
        knn = self.knn_accuracy() if status != STATUS_DIVERGED else float("nan")
        knn_time = time.perf_counter() - knn_start
        metrics = {
            "epoch": epoch,
            "loss": loss if math.isfinite(loss) else None,
            "knn_acc": knn,
            "best_knn_acc": max(self.best_knn, knn) if math.isfinite(knn) else self.best_knn,
            "lr": self.optimizer.param_groups[0]["lr"],
            "epoch_time_s": train_time + knn_time,
            "knn_time_s": knn_time,
            "images_per_s": self.steps_per_epoch * self.cfg.batch_size / train_time,
            "embedding_std": std if math.isfinite(std) else None,
            "embedding_std_ratio": std_ratio if math.isfinite(std_ratio) else None,
            "embedding_rank": rank if math.isfinite(rank) else None,
            "weight_norm": self._weight_norm(),
            "status": status,
            **{k: float(v) / self.steps_per_epoch for k, v in extras.items()},
        }
        self.history.append(metrics)
        return metrics

    @torch.no_grad()
    def _weight_norm(self) -> float:
        """L2 norm of all backbone weights: growth flags instability; equal on all ranks under DDP."""
        norms = torch._foreach_norm([p.detach().float() for p in self.method.backbone.parameters()])
        return float(torch.linalg.vector_norm(torch.stack(norms)))
