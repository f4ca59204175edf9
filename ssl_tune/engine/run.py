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
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as torch_dist
import torch.nn.functional as F
from torch import nn

from ssl_tune.config import TrainConfig, check_batch_size
from ssl_tune.data import ImageData
from ssl_tune.data.placement import place_images
from ssl_tune.data.splits import validation_split
from ssl_tune.data.streaming import STREAMED_SHARDS, ShardBatches, ShardPlan
from ssl_tune.distributed import Distributed
from ssl_tune.engine.alpha_req import alpha_req, band_score
from ssl_tune.engine.collapse import effective_rank, embedding_std
from ssl_tune.engine.knn import extract_features, knn_accuracy
from ssl_tune.engine.lidar import lidar
from ssl_tune.engine.optim import (
    build_optimizer,
    lr_factor,
    no_decay_ids,
    set_lr,
    set_weight_decay,
    weight_decay_at,
)
from ssl_tune.engine.rankme import rankme
from ssl_tune.errors import UsageError
from ssl_tune.methods import Method, Progress, StepOutput, get_method
from ssl_tune.metrics import (
    ALPHA_REQ,
    ALPHA_REQ_ALPHA,
    LIDAR,
    RANKME,
    TEST_KNN,
    VAL_KNN,
    EpochMetrics,
    TrialStatus,
    finite,
)
from ssl_tune.models.backbones import build_backbone
from ssl_tune.seeds import epoch_seed
from ssl_tune.views import ViewGenerator

CHECKPOINT_FORMAT = 1
# LiDAR's and α-ReQ's images, and LiDAR's augmentations: drawn with this seed, not the run's, so that every trial and
# seed of a sweep is measured on the same images and views
LABEL_FREE_SEED = 0


def out_of_memory_message(cfg: TrainConfig, world_size: int, gpu_share: float) -> str:
    """The one line a run that ran out of device memory ends with: its batch, and how it shares its GPU
    (`gpu_share`: the GPUs each worker holds, e.g. 0.25 when a sweep packs 4 trials on one GPU).

    >>> cfg = TrainConfig(batch_size=512, backbone="vit_small")
    >>> out_of_memory_message(cfg, 1, 0.25)  # doctest: +ELLIPSIS
    'out of device memory at batch_size 512 (512 images per worker, vit_small, 4 trials packed per GPU): lower...'
    """
    per_worker = cfg.batch_size // world_size
    packed = 0 < gpu_share < 1
    packing = (
        f"{round(1 / gpu_share)} trials packed per GPU" if packed else "a GPU to itself" if gpu_share else "no GPU"
    )
    advice = "lower batch_size or pack fewer trials per GPU (sweep.gpus_per_trial)" if packed else "lower batch_size"
    return (
        f"out of device memory at batch_size {cfg.batch_size} ({per_worker} images per worker, {cfg.backbone},"
        f" {packing}): {advice}; not retried, as the same batch would fail again"
    )


def resolve_device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise UsageError("device 'cuda' was asked for but no CUDA GPU is visible")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


@dataclass(frozen=True)
class MonitorSet:
    """The kNN monitor's queries, and the name of the metric measured on them; `bank_images` and `bank_labels`
    when the bank is not the train images (a labeled set beside an unlabeled pool)."""

    metric: str
    images: torch.Tensor
    labels: torch.Tensor
    bank_images: torch.Tensor | None = None
    bank_labels: torch.Tensor | None = None


def monitored_split(cfg: TrainConfig, data: ImageData) -> tuple[torch.Tensor, torch.Tensor | None, MonitorSet | None]:
    """(the images SSL trains on, their labels, the kNN's queries).

    `monitor: val` holds a fixed, stratified part of the train split out of training (`validation_split`, the
    same for every trial and seed) and queries it; `monitor: test` trains on the whole train split and
    queries the test split. Unlabeled data has no queries; an unlabeled pool with a labeled set beside it trains on
    the pool, and its kNN reads the labeled set's fixed bank and queries (`ImageData.labeled_splits`).
    """
    if data.has_labeled_set:
        if cfg.monitor == "test":
            raise UsageError("monitor: test, but a pool with a labeled set has no test split: use monitor: val")
        held = data.labeled_splits()
        if len(held.train_images) < cfg.knn_k:
            raise UsageError(
                f"the labeled set's kNN bank has {len(held.train_images)} images, fewer than knn_k {cfg.knn_k}: "
                "add labeled images or lower knn_k"
            )
        monitor = MonitorSet(VAL_KNN, held.test_images, held.test_labels, held.train_images, held.train_labels)
        return data.train_images, None, monitor
    if not data.labeled:
        return data.train_images, None, None
    if cfg.monitor == "test":
        if not data.has_test:
            raise UsageError(f"monitor: test, but dataset '{cfg.dataset}' has no test split loaded")
        return data.train_images, data.train_labels, MonitorSet(TEST_KNN, data.test_images, data.test_labels)
    try:
        split = validation_split(data.train_labels, data.num_train, fraction=cfg.val_split, size=cfg.val_size)
    except ValueError as err:
        raise UsageError(str(err)) from None
    val = MonitorSet(VAL_KNN, data.train_images[split.val_indices], data.train_labels[split.val_indices])
    return data.train_images[split.train_indices], data.train_labels[split.train_indices], val


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
        stream: ShardPlan | None = None,
        stream_shard: Any = None,
    ) -> None:
        """`stream`: train from streamed shards (`ssl_tune.data.streaming`); `data` is then the eval subset
        decoded once, and `stream_shard` this rank's Ray Train dataset shard (None: one process reads it all)."""
        self.cfg = cfg
        self.dist = dist or Distributed.current()
        self.device = device or resolve_device(cfg.device)
        train_images, train_labels, monitor = monitored_split(cfg, data)
        n_train = len(train_images) if stream is None else stream.num_train
        check_batch_size(cfg.batch_size, n_train, self.dist.world_size)
        if cfg.knn_bank_subset is not None and cfg.knn_bank_subset > n_train:
            bank = cfg.knn_bank_subset
            raise UsageError(f"knn_bank_subset {bank} is larger than the training set ({n_train} images)")
        self.num_train = n_train
        self.local_batch = cfg.batch_size // self.dist.world_size
        self.steps_per_epoch = n_train // cfg.batch_size
        self.total_steps = self.steps_per_epoch * cfg.epochs
        if stream is None:
            self.train_source = place_images(train_images, self.device, cfg.data_placement, cfg.device_data_limit_gb)
            self.eval_images = self.train_source.images  # the bank and RankMe read the first of them
        else:
            if stream.on_device and stream.skip_corrupt and self.dist.world_size > 1:
                # ranks split the rows before decoding and would skip different counts: unequal steps under DDP
                raise UsageError("stream_decode device with skip_corrupt needs one worker (or stream_decode workers)")
            self.train_source = ShardBatches(
                stream,
                seed=cfg.seed,
                device=self.device,
                rank=self.dist.rank,
                local_batch=self.local_batch,
                steps=self.steps_per_epoch,
                shard=stream_shard,
                world=self.dist.world_size,
            )
            self.eval_images = train_images  # the eval subset less its validation queries, in host memory
        # the label-free metrics' images: the first N of one fixed shuffle of the eval images
        self.label_free_order = torch.randperm(
            len(self.eval_images), generator=torch.Generator().manual_seed(LABEL_FREE_SEED)
        )
        self.placement = self.train_source.placement
        # the kNN's bank (the first knn_bank_subset train images) and queries; resident queries on the device,
        # streamed ones copied per chunk
        self.knn_metric = monitor.metric if monitor is not None else None
        self.num_classes = data.num_classes
        self.mean, self.std = data.mean, data.std
        self.bank_images: torch.Tensor | None = None  # None: the bank is the first train images
        if self.knn_metric is not None:
            resident = self.placement == "resident"
            if monitor.bank_images is not None and monitor.bank_labels is not None:
                bank = monitor.bank_images[: cfg.knn_bank_subset]
                self.bank_images = bank.to(self.device) if resident else bank
                self.bank_labels = monitor.bank_labels[: cfg.knn_bank_subset].to(self.device)
            else:
                self.bank_labels = train_labels[: cfg.knn_bank_subset].to(self.device)
            self.query_images = monitor.images.to(self.device) if resident else monitor.images
            self.query_labels = monitor.labels.to(self.device)

        cuda = self.device.type == "cuda"
        if cuda:  # fixed shapes per view kind: let cuDNN pick its fastest kernels; TF32 for fp32 matmuls
            torch.backends.cudnn.benchmark = True
            torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
        self.autocast_dtype = (
            torch.bfloat16 if (cfg.precision == "bf16" or (cfg.precision == "auto" and cuda)) else None
        )
        channels_last = cfg.channels_last  # faster on CPU (oneDNN) as on GPU

        torch.manual_seed(cfg.seed)  # the same initial weights on every rank and every resume
        method_cls = get_method(cfg.method)
        backbone = build_backbone(cfg.backbone, data.image_size, cfg.drop_path)
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
            no_decay=no_decay_ids(self.method),
        )
        self.views = ViewGenerator(
            self.method.view_specs(cfg.augment, data.image_size), data.mean, data.std, channels_last=channels_last
        )
        self.warmup_steps = round(cfg.warmup_epochs * self.steps_per_epoch)
        self.epoch = 0  # epochs completed
        self.history: list[EpochMetrics] = []

    # --- state -------------------------------------------------------------------------------------

    @property
    def done(self) -> bool:
        return self.epoch >= self.cfg.epochs or self.stopped

    @property
    def stopped(self) -> bool:
        return bool(self.history) and self.history[-1].stopped

    def state_dict(self) -> dict[str, Any]:
        return {
            "format": CHECKPOINT_FORMAT,
            "epoch": self.epoch,
            "model": self.method.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "history": [m.to_dict() for m in self.history],
            "config": self.cfg.to_yaml_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("format") != CHECKPOINT_FORMAT:
            raise UsageError(f"checkpoint format {state.get('format')!r} is not {CHECKPOINT_FORMAT}")
        self.method.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.epoch = int(state["epoch"])
        self.history = [EpochMetrics.from_dict(m) for m in state["history"]]

    # --- evaluation --------------------------------------------------------------------------------

    def evaluate_names(self) -> list[str]:
        names = [self.knn_metric] if self.knn_metric else []
        names += [RANKME] if self.cfg.rankme else []
        names += [LIDAR] if self.cfg.lidar else []
        return names + ([ALPHA_REQ, ALPHA_REQ_ALPHA] if self.cfg.alpha_req else [])

    def evaluate(self) -> dict[str, float]:
        """The monitored metrics of the frozen backbone, computed on rank 0 and broadcast to all ranks:

        - the weighted kNN top-1 (`val_knn_acc` or `test_knn_acc`), with the first `knn_bank_subset` train
          images (all by default) as the bank and the validation (or test) images as queries;
        - `rankme` when asked for: RankMe of the backbone features of the first `rankme_images` train images;
        - `lidar` when asked for: LiDAR of the backbone features of `lidar_views` augmented views (the run's
          first view, made on the device) of `lidar_images` train images;
        - `alpha_req` when asked for: minus the distance of α-ReQ's α (`alpha_req_alpha`) from `alpha_req_band`,
          on the backbone features of `alpha_req_images` train images.

        LiDAR's and α-ReQ's images are a fixed, seeded subset of the train images (`LABEL_FREE_SEED`).
        """
        names = self.evaluate_names()
        if not names:
            return {}
        values = torch.zeros(len(names), dtype=torch.float64)
        if self.dist.is_main:
            values[:] = torch.tensor(self._measure(names), dtype=torch.float64)
        if self.dist.world_size > 1:
            buf = values.to(self.device) if torch_dist.get_backend() == "nccl" else values
            torch_dist.broadcast(buf, src=0)
            values = buf.cpu()
        return dict(zip(names, values.tolist(), strict=True))

    def _measure(self, names: list[str]) -> list[float]:
        """The metrics `names`, on this process. The first train images' features are extracted once: the kNN's
        bank is their first `knn_bank_subset` rows (L2-normalised; a labeled set's bank is extracted on its own),
        RankMe reads the first `rankme_images` (one SVD: 0.2 to 0.3 s for 10,000 x 512 features on the 2-core
        CPU). α-ReQ extracts its seeded subset, and LiDAR `lidar_views` augmented views of its own."""
        backbone, prepare = self.method.backbone, self._plain_on_device
        n_bank = len(self.bank_labels) if self.knn_metric in names else 0
        n_rank = min(self.cfg.rankme_images, len(self.eval_images)) if RANKME in names else 0
        n_train_bank = n_bank if self.bank_images is None else 0  # else the bank is the labeled set's
        values: dict[str, float] = {}
        if n_train_bank or n_rank:
            images = self.eval_images[: max(n_train_bank, n_rank)]
            raw = extract_features(backbone, images, prepare, normalize=False, autocast_dtype=self.autocast_dtype)
        if n_rank:
            values[RANKME] = rankme(raw[:n_rank])
        if n_bank:
            store = torch.float16 if self.device.type == "cuda" else torch.float32  # the bank's memory on a GPU
            if self.bank_images is not None:
                raw = extract_features(
                    backbone, self.bank_images, prepare, normalize=False, autocast_dtype=self.autocast_dtype
                )
            bank = F.normalize(raw[:n_bank], dim=1).to(store)
            del raw
            queries = extract_features(
                backbone, self.query_images, prepare, dtype=store, autocast_dtype=self.autocast_dtype
            )
            k, temperature = self.cfg.knn_k, self.cfg.knn_temperature
            values[self.knn_metric] = knn_accuracy(
                bank, self.bank_labels, queries, self.query_labels, self.num_classes, k, temperature
            )
        if LIDAR in names:
            values[LIDAR] = lidar(self._view_features(self._label_free_images(self.cfg.lidar_images)))
        if ALPHA_REQ in names:
            images = self._label_free_images(self.cfg.alpha_req_images)
            features = extract_features(backbone, images, prepare, normalize=False, autocast_dtype=self.autocast_dtype)
            values[ALPHA_REQ_ALPHA] = alpha_req(features)
            values[ALPHA_REQ] = band_score(values[ALPHA_REQ_ALPHA], self.cfg.alpha_req_band)
        return [values[name] for name in names]

    @property
    def knn_queries(self) -> int | None:
        """How many images the monitored kNN accuracy is measured on (None when the run monitors none)."""
        return len(self.query_labels) if self.knn_metric else None

    def _label_free_images(self, count: int) -> torch.Tensor:
        """The first `count` images of the fixed shuffle (all of them when fewer), where they live."""
        chosen = self.label_free_order[:count]
        return self.eval_images[chosen.to(self.eval_images.device)]

    def _view_features(self, images: torch.Tensor) -> torch.Tensor:
        """(n, lidar_views, d) raw backbone features of augmented views of `images`, made on the device with a
        generator seeded alike at every evaluation: the same views for every epoch and trial."""
        generator = torch.Generator(device=self.device).manual_seed(LABEL_FREE_SEED)
        images = images.to(self.device)  # once, not once per view

        def view(batch: torch.Tensor) -> torch.Tensor:
            return self.views.first_view(batch, generator)

        backbone, autocast = self.method.backbone, self.autocast_dtype
        per_view = [
            extract_features(backbone, images, view, normalize=False, autocast_dtype=autocast)
            for _ in range(self.cfg.lidar_views)
        ]
        return torch.stack(per_view, dim=1)

    def knn_accuracy(self) -> float:
        """The monitored kNN accuracy alone (NaN when the run monitors none): for benchmarks."""
        return self._measure([self.knn_metric])[0] if self.knn_metric else float("nan")

    def _plain_on_device(self, images: torch.Tensor) -> torch.Tensor:
        return self.views.plain(images.to(self.device))  # a no-op move for resident images

    def initial_metrics(self, measured: dict[str, float] | None = None) -> EpochMetrics:
        """Epoch 0: the monitored metrics of the randomly initialised network (`measured`: those already
        measured on the same initial backbone and data, which a reused trial process keeps)."""
        start = time.perf_counter()
        values = self.evaluate() if measured is None else dict(measured)
        elapsed = time.perf_counter() - start
        metrics = EpochMetrics(
            epoch=0,
            lr=0.0,
            epoch_time_s=elapsed,
            eval_time_s=elapsed,
            images_per_s=0.0,
            weight_norm=self._weight_norm(),
            knn_queries=self.knn_queries,
            **values,
        )
        self.history = [metrics]
        return metrics

    # --- training ----------------------------------------------------------------------------------

    def _epoch_order(self, epoch: int) -> torch.Tensor:
        """This rank's sample indices for the epoch, (steps, local_batch) on the host; the same shuffle on all
        ranks."""
        g = torch.Generator().manual_seed(epoch_seed(self.cfg.seed, epoch))
        perm = torch.randperm(self.num_train, generator=g)[: self.steps_per_epoch * self.cfg.batch_size]
        perm = perm.view(self.steps_per_epoch, self.dist.world_size, self.local_batch)[:, self.dist.rank]
        return perm

    def train_step(self, views: list[torch.Tensor], progress: Progress) -> StepOutput:
        """One optimisation step on ready views: lr schedule, autocast forward, backward, the method's hooks
        (frozen layers, EMA updates) and the optimiser. No host-device synchronisation."""
        set_lr(self.optimizer, lr_factor(progress.step, self.warmup_steps, progress.total_steps))
        if self.cfg.weight_decay_end is not None:
            decay = weight_decay_at(self.cfg.weight_decay, self.cfg.weight_decay_end, progress.fraction)
            set_weight_decay(self.optimizer, decay / self.cfg.weight_decay)  # weight_decay > 0: checked by config
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

    def train_epoch(self, on_step: Callable[[int], None] | None = None) -> EpochMetrics:
        """Train the next epoch, then measure kNN. Returns (and records) the epoch's metrics.

        `on_step(i)` is called after each step (e.g. a progress bar); it must not read device values.
        """
        if not self.history:
            raise RuntimeError("call initial_metrics() or load_state_dict() before train_epoch()")
        epoch = self.epoch + 1
        self.model.train()
        if self.placement == STREAMED_SHARDS:
            source = self.train_source.epoch_batches(epoch)
        else:
            source = self.train_source.batches(self._epoch_order(epoch))
        gen = torch.Generator(device=self.device).manual_seed(epoch_seed(self.cfg.seed, epoch, self.dist.rank))
        sums = torch.zeros(2, device=self.device, dtype=torch.float64)  # loss, embedding std
        extras: dict[str, torch.Tensor] = {}
        start = time.perf_counter()
        steps = 0  # steps_per_epoch, or fewer when streamed images were skipped as corrupt (equal on all ranks)
        try:
            for i, images in enumerate(source):
                step = (epoch - 1) * self.steps_per_epoch + i
                progress = Progress(epoch - 1, step, self.steps_per_epoch, self.total_steps)
                out = self.train_step(self.views(images, gen), progress)
                sums += torch.stack([out.loss.detach().double(), embedding_std(out.embedding).double()])
                for k, v in out.extras.items():
                    extras[k] = extras.get(k, 0) + v.detach().double()
                steps += 1
                if on_step:
                    on_step(i)
        except torch.OutOfMemoryError:
            out_of_memory = True  # handled below, once the exception's frames (and their tensors) are released
        else:
            out_of_memory = False
        if out_of_memory:
            return self._end_out_of_memory(epoch)
        if self.dist.world_size > 1:
            packed = torch.cat([sums, torch.stack(list(extras.values()))]) if extras else sums
            torch_dist.all_reduce(packed)
            packed /= self.dist.world_size
            sums = packed[:2]
            extras = dict(zip(extras, packed[2:], strict=True))
        loss, std = (sums / max(steps, 1)).tolist()  # the epoch's one device sync: the timing includes the work
        train_time = time.perf_counter() - start
        self.epoch = epoch

        status = TrialStatus.OK if math.isfinite(loss) else TrialStatus.DIVERGED
        proj_dim = out.embedding.shape[1]
        ok = status is TrialStatus.OK
        rank = float(effective_rank(out.embedding)) if ok else float("nan")  # last batch
        std_ratio = std * math.sqrt(proj_dim)
        if ok and std_ratio < self.cfg.collapse_std_threshold:
            status = TrialStatus.COLLAPSED
        eval_start = time.perf_counter()
        if status is TrialStatus.DIVERGED:  # NaN: a searcher tells Optuna the trial failed
            values = dict.fromkeys(self.evaluate_names(), float("nan"))
        else:
            values = self.evaluate()
        eval_time = time.perf_counter() - eval_start
        metrics = EpochMetrics(
            epoch=epoch,
            loss=finite(loss),
            lr=self.optimizer.param_groups[0]["lr"],
            epoch_time_s=train_time + eval_time,
            eval_time_s=eval_time,
            images_per_s=steps * self.cfg.batch_size / train_time,
            embedding_std=finite(std),
            embedding_std_ratio=finite(std_ratio),
            embedding_rank=finite(rank),
            weight_norm=self._weight_norm(),
            skipped_images=self.train_source.skipped if self.placement == STREAMED_SHARDS else None,
            knn_queries=self.knn_queries,
            status=status,
            extras={k: float(v) / max(steps, 1) for k, v in extras.items()},
            **values,
        )
        self.history.append(metrics)
        return metrics

    def _end_out_of_memory(self, epoch: int) -> EpochMetrics:
        """The device ran out of memory mid-epoch: free what the step held and end the run as OUT_OF_MEMORY,
        with NaN metrics (a searcher tells Optuna the trial failed). The same batch would fail again, so the
        run is not retried; `out_of_memory_message` says what to change."""
        self.optimizer.zero_grad(set_to_none=True)
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        self.epoch = epoch
        metrics = EpochMetrics(
            epoch=epoch,
            lr=self.optimizer.param_groups[0]["lr"],
            epoch_time_s=0.0,
            eval_time_s=0.0,
            images_per_s=0.0,
            status=TrialStatus.OUT_OF_MEMORY,
            **dict.fromkeys(self.evaluate_names(), float("nan")),
        )
        self.history.append(metrics)
        return metrics

    @torch.no_grad()
    def _weight_norm(self) -> float:
        """L2 norm of all backbone weights: growth flags instability; equal on all ranks under DDP."""
        norms = torch._foreach_norm([p.detach().float() for p in self.method.backbone.parameters()])
        return float(torch.linalg.vector_norm(torch.stack(norms)))
