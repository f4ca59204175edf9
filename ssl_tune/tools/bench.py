"""`ssl-tune bench`: our device-side pipeline against a conventional DataLoader pipeline, same model and step.

Both pipelines run in one process on one device and share one `TrainingRun` (model, loss, optimiser):

- ours: uint8 data on the device, views made there by `ViewGenerator` (per-sample batched ops), then
  the method's forward/backward/optimiser step (`TrainingRun.train_step`, the step `train_epoch` runs);
- baseline: torchvision.transforms.v2 per image (RandomResizedCrop, flip, ColorJitter with a probability,
  RandomGrayscale, blur and solarize where the method's views use them, at the same strengths) on PIL
  images in a `DataLoader` with worker processes, as lightly and solo-learn do for CIFAR, then the same step.

Warm-up steps are not timed; images/s counts source images (each yields the method's views); with
`repeats` > 1 the two pipelines run alternately and the medians are reported. It also
times one kNN evaluation against an epoch's estimated time, and optionally (`packed`) the aggregate
throughput of 1..K concurrent trainings sharing the device, each in its own process.
"""

from __future__ import annotations

import json
import os
import platform
import queue
import resource
import statistics
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torchvision
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import v2

from ssl_tune.config import TrainConfig, build_config, parse_set
from ssl_tune.data import ImageData
from ssl_tune.data.training import load_run_data
from ssl_tune.engine.run import TrainingRun, resolve_device
from ssl_tune.errors import UsageError
from ssl_tune.methods import Progress
from ssl_tune.views import ViewSpec
from ssl_tune.views.ops import blur_kernel_size

PACKED_TIMEOUT_S = 600.0
PLACEMENT_WORDS = {"resident": "on device", "streamed": "streamed"}


@dataclass(frozen=True)
class PackedRow:
    """k trainings at once on one device: their aggregate img/s, and its ratio to k = 1."""

    k: int
    img_s: float
    ratio: float


@dataclass
class BenchResult:
    """Everything `ssl-tune bench` measured, with the setting it measured it in. `to_dict()` is its JSON."""

    method: str
    backbone: str
    dataset: str
    batch_size: int
    steps: int
    warmup_steps: int
    image_size: int
    views_per_image: int
    train_images: int
    test_images: int
    device: str
    device_type: str
    cpu_count: int | None
    torch: str
    torchvision: str
    precision: str
    channels_last: bool
    data_placement: str
    repeats: int
    ours_img_s: float
    ours_step_s: float
    ours_img_s_runs: list[float]
    baseline_img_s: float
    baseline_step_s: float
    baseline_img_s_runs: list[float]
    baseline_workers: int
    ratio: float
    knn_time_s: float
    knn_acc: float
    epoch_time_s: float
    knn_share: float
    peak_mem_mb: float
    baseline_peak_mem_mb: float
    peak_mem_source: str
    packed: list[PackedRow] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def default_workers() -> int:
    """DataLoader workers of the baseline: min(4, CPU count)."""
    return max(1, min(4, os.cpu_count() or 1))


@dataclass(frozen=True)
class BenchRequest:
    """What to benchmark. `overrides` are `--set key=value` strings applied to the run config."""

    method: str = "simsiam"
    backbone: str = "resnet_tiny"
    batch_size: int = 256
    steps: int = 30
    warmup: int = 3
    device: str = "auto"
    dataset: str = "synthetic"
    data_dir: str | None = None
    train_subset: int | None = None
    test_subset: int | None = None
    workers: int | None = None
    packed: int = 0
    repeats: int = 1
    seed: int = 0
    overrides: tuple[str, ...] = field(default_factory=tuple)


def check_request(req: BenchRequest) -> TrainConfig:
    """Validate the request and build the run config, before any data is read. Raises UsageError."""
    for name, value, low in (("steps", req.steps, 1), ("batch-size", req.batch_size, 1), ("warmup", req.warmup, 0)):
        if value < low:
            raise UsageError(f"--{name} must be {'positive' if low else 'non-negative'}, not {value}")
    if req.workers is not None and req.workers < 0:
        raise UsageError(f"--workers must be non-negative, not {req.workers}")
    if req.packed < 0:
        raise UsageError(f"--packed must be non-negative, not {req.packed}")
    if req.repeats < 1:
        raise UsageError(f"--repeats must be positive, not {req.repeats}")
    layer: dict[str, Any] = {
        "method": req.method,
        "backbone": req.backbone,
        "dataset": req.dataset,
        "batch_size": req.batch_size,
        "device": req.device,
        "seed": req.seed,
        "epochs": 1,
    }
    for key in ("data_dir", "train_subset", "test_subset"):
        if getattr(req, key) is not None:
            layer[key] = getattr(req, key)
    cfg = build_config(layer, parse_set(req.overrides))
    resolve_device(cfg.device)  # a missing GPU is a usage error, raised before the data is read
    return cfg


# --- the two pipelines -----------------------------------------------------------------------------


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _device_batches(run: TrainingRun, seed: int) -> Iterator[torch.Tensor]:
    """Endless uint8 batches of the run's train images on its device (resident or streamed, as the run's
    `data_placement`), reshuffled each pass."""
    n, bs = run.num_train, run.cfg.batch_size
    g = torch.Generator().manual_seed(seed)
    while True:
        yield from run.train_source.batches(torch.randperm(n, generator=g)[: n // bs * bs].view(-1, bs))


def time_ours(run: TrainingRun, steps: int, warmup: int, seed: int = 0) -> float:
    """Seconds for `steps` steps of our pipeline (device views + step), after `warmup` untimed steps."""
    run.model.train()
    batches = _device_batches(run, seed)
    gen = torch.Generator(device=run.device).manual_seed(seed)
    total = warmup + steps
    start = 0.0
    for step in range(total):
        if step == warmup:
            _sync(run.device)
            start = time.perf_counter()
        progress = Progress(0, step, total, total)
        run.train_step(run.views(next(batches), gen), progress)
    _sync(run.device)
    elapsed = time.perf_counter() - start
    batches.close()  # a streamed source stops its thread
    return elapsed


def baseline_transform(spec: ViewSpec, mean: Sequence[float], std: Sequence[float]) -> v2.Compose:
    """torchvision.transforms.v2 for one PIL image, at the strengths of one of the method's views."""
    ops: list[Any] = [v2.RandomResizedCrop(spec.size, scale=spec.scale), v2.RandomHorizontalFlip(spec.flip_prob)]
    if spec.jitter_prob > 0:
        jitter = v2.ColorJitter(spec.brightness, spec.contrast, spec.saturation, spec.hue)
        ops.append(v2.RandomApply([jitter], p=spec.jitter_prob))
    if spec.grayscale_prob > 0:
        ops.append(v2.RandomGrayscale(spec.grayscale_prob))
    if spec.blur_prob > 0:
        blur = v2.GaussianBlur(blur_kernel_size(spec.size), sigma=(0.1, 2.0))
        ops.append(v2.RandomApply([blur], p=spec.blur_prob))
    ops += [v2.ToImage(), v2.ToDtype(torch.float32, scale=True)]
    if spec.solarize_prob > 0:
        ops.append(v2.RandomSolarize(0.5, p=spec.solarize_prob))
    ops.append(v2.Normalize(list(mean), list(std)))
    return v2.Compose(ops)


class BaselineViews(Dataset):
    """In-memory images served as PIL (as torchvision.datasets.CIFAR10 does), each made into all views."""

    def __init__(self, images: torch.Tensor, specs: list[ViewSpec], mean: Sequence[float], std: Sequence[float]):
        self.images = np.ascontiguousarray(images.cpu().permute(0, 2, 3, 1).numpy())  # (N, H, W, 3) uint8
        self.transforms = [baseline_transform(s, mean, std) for s in specs for _ in range(s.count)]

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> list[torch.Tensor]:
        img = Image.fromarray(self.images[i])
        return [t(img) for t in self.transforms]


def baseline_loader(run: TrainingRun, workers: int, seed: int = 0) -> DataLoader:
    """The conventional loader over the run's train split, with the run's method views."""
    ds = BaselineViews(run.train_source.images, run.views.specs, run.mean, run.std)
    return DataLoader(
        ds,
        batch_size=run.cfg.batch_size,
        shuffle=True,
        drop_last=True,
        num_workers=workers,
        pin_memory=run.device.type == "cuda",
        persistent_workers=workers > 0,
        generator=torch.Generator().manual_seed(seed),
    )


def time_baseline(run: TrainingRun, workers: int, steps: int, warmup: int, seed: int = 0) -> float:
    """Seconds for `steps` steps fed by the conventional loader, after `warmup` untimed steps."""
    run.model.train()
    loader = baseline_loader(run, workers, seed)
    channels_last = run.views.channels_last
    total = warmup + steps

    it = iter(loader)
    start = 0.0
    for step in range(total):
        if step == warmup:
            _sync(run.device)
            start = time.perf_counter()
        try:
            batch = next(it)
        except StopIteration:  # next pass over the data (persistent workers carry on)
            it = iter(loader)
            batch = next(it)
        views = [v.to(run.device, non_blocking=True) for v in batch]
        if channels_last:
            views = [v.contiguous(memory_format=torch.channels_last) for v in views]
        run.train_step(views, Progress(0, step, total, total))
    _sync(run.device)
    elapsed = time.perf_counter() - start
    del it, loader  # the last references: the worker processes exit
    return elapsed


def time_knn(run: TrainingRun) -> tuple[float, float]:
    """(seconds, accuracy) of one kNN evaluation, as run after every epoch."""
    _sync(run.device)
    start = time.perf_counter()
    acc = run.knn_accuracy()
    _sync(run.device)
    return time.perf_counter() - start, acc


# --- packed: K trainings sharing one device --------------------------------------------------------


def _packed_worker(
    rank: int,
    cfg_dict: dict[str, Any],
    data: ImageData,
    device: str,
    commands: Any,
    results: Any,
) -> None:
    """One of the packed trainings: waits for ("run", steps, warmup, threads) and reports its seconds."""
    try:
        cfg = TrainConfig.model_validate({**cfg_dict, "seed": cfg_dict["seed"] + rank})
        run = TrainingRun(cfg, data, torch.device(device))
        results.put(("ready", rank, None))
        while (msg := commands.get()) is not None:
            _, steps, warmup, threads = msg
            if threads:
                torch.set_num_threads(threads)
            batches = _device_batches(run, cfg.seed)
            gen = torch.Generator(device=run.device).manual_seed(cfg.seed)
            total = warmup + steps
            for step in range(warmup):
                run.train_step(run.views(next(batches), gen), Progress(0, step, total, total))
            _sync(run.device)
            results.put(("warm", rank, None))
            commands.get()  # "go": all k processes start the timed steps together
            start = time.perf_counter()
            for step in range(warmup, total):
                run.train_step(run.views(next(batches), gen), Progress(0, step, total, total))
            _sync(run.device)
            results.put(("done", rank, time.perf_counter() - start))
    except BaseException as err:
        results.put(("error", rank, f"{type(err).__name__}: {err}"))
        raise


def _collect(results: Any, procs: list[Any], kind: str, ranks: range) -> dict[int, Any]:
    got: dict[int, Any] = {}
    deadline = time.monotonic() + PACKED_TIMEOUT_S
    while len(got) < len(ranks):
        try:
            what, rank, value = results.get(timeout=1.0)
        except queue.Empty:
            dead = [p for p in procs if not p.is_alive()]
            if dead:
                raise RuntimeError(f"a packed training process died (exit code {dead[0].exitcode})") from None
            if time.monotonic() > deadline:
                raise RuntimeError(f"packed trainings did not report '{kind}' in {PACKED_TIMEOUT_S:.0f} s") from None
            continue
        if what == "error":
            raise RuntimeError(f"packed training {rank} failed: {value}")
        if what == kind:
            got[rank] = value
    return got


def measure_packed(cfg: TrainConfig, data: ImageData, k_max: int, steps: int, warmup: int) -> list[PackedRow]:
    """Aggregate img/s of 1, 2, ..., k_max concurrent trainings (one process each) on the config's device.

    Each process runs our pipeline on its own copy of the model; all start their timed steps together.
    On CPU each of the k processes gets CPU count / k threads. Returns rows {k, img_s, ratio (vs k=1)}.
    """
    ctx = torch.multiprocessing.get_context("spawn")
    device = str(resolve_device(cfg.device))
    cpu_data = data.to("cpu")
    commands = [ctx.Queue() for _ in range(k_max)]
    results = ctx.Queue()
    procs = [
        ctx.Process(
            target=_packed_worker,
            args=(rank, cfg.to_yaml_dict(), cpu_data, device, commands[rank], results),
            daemon=True,
        )
        for rank in range(k_max)
    ]
    for p in procs:
        p.start()
    rows: list[PackedRow] = []
    try:
        _collect(results, procs, "ready", range(k_max))
        for k in range(1, k_max + 1):
            threads = max(1, (os.cpu_count() or 1) // k) if device == "cpu" else 0
            for rank in range(k):
                commands[rank].put(("run", steps, warmup, threads))
            _collect(results, procs, "warm", range(k))
            for rank in range(k):
                commands[rank].put("go")
            elapsed = _collect(results, procs, "done", range(k))
            img_s = k * steps * cfg.batch_size / max(elapsed.values())
            rows.append(PackedRow(k, img_s, img_s / rows[0].img_s if rows else 1.0))
    finally:
        for q in commands:
            q.put(None)
        for p in procs:
            p.join(timeout=30)
            if p.is_alive():
                p.terminate()
    return rows


# --- the whole benchmark ---------------------------------------------------------------------------


def device_name(device: torch.device) -> str:
    """The GPU's name, or the CPU's model name from /proc/cpuinfo."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _peak_rss_mb(who: int = resource.RUSAGE_SELF) -> float:
    return resource.getrusage(who).ru_maxrss / 1024  # KiB on Linux


def run_bench(req: BenchRequest, cfg: TrainConfig | None = None, data: ImageData | None = None) -> BenchResult:
    """Run the benchmark and return its results (see the module docstring). Raises UsageError.

    `data`, if given, replaces the config's dataset (e.g. generated images of a given size).
    """
    cfg = cfg or check_request(req)
    workers = default_workers() if req.workers is None else req.workers
    data = data if data is not None else load_run_data(cfg)
    device = resolve_device(cfg.device)
    run = TrainingRun(cfg, data, device)
    cuda = device.type == "cuda"

    images = req.steps * cfg.batch_size
    ours_runs: list[float] = []
    base_runs: list[float] = []
    knn_s, knn_acc, peak, base_peak = 0.0, 0.0, 0.0, 0.0
    for rep in range(req.repeats):  # interleaved, so that a change in the machine's load hits both alike
        if cuda:
            torch.cuda.reset_peak_memory_stats(device)
        ours_runs.append(images / time_ours(run, req.steps, req.warmup, req.seed + rep))
        if rep == 0:
            if cfg.compile:  # compiling the eval-mode graph is a one-off, not a share of every epoch
                time_knn(run)
            knn_s, knn_acc = time_knn(run)
        if cuda or rep == 0:  # on CPU the process's peak RSS only grows: read it before the baseline runs
            peak = max(peak, torch.cuda.max_memory_allocated(device) / 2**20 if cuda else _peak_rss_mb())
        if cuda:
            torch.cuda.reset_peak_memory_stats(device)
        base_runs.append(images / time_baseline(run, workers, req.steps, req.warmup, req.seed + rep))
        base_peak = max(base_peak, torch.cuda.max_memory_allocated(device) / 2**20 if cuda else _peak_rss_mb())

    ours_img_s, base_img_s = statistics.median(ours_runs), statistics.median(base_runs)
    train_images = run.num_train
    epoch_s = train_images / ours_img_s + knn_s
    result = BenchResult(
        **{
            "method": cfg.method,
            "backbone": cfg.backbone,
            "dataset": cfg.dataset,
            "batch_size": cfg.batch_size,
            "steps": req.steps,
            "warmup_steps": req.warmup,
            "image_size": data.image_size,
            "views_per_image": run.views.num_views,
            "train_images": train_images,
            "test_images": len(run.query_labels) if run.knn_metric else 0,
            "device": device_name(device),
            "device_type": device.type,
            "cpu_count": os.cpu_count(),
            "torch": torch.__version__,
            "torchvision": torchvision.__version__,
            "precision": str(run.autocast_dtype).removeprefix("torch.") if run.autocast_dtype else "fp32",
            "channels_last": cfg.channels_last,
            "data_placement": run.placement,
            "repeats": req.repeats,
            "ours_img_s": ours_img_s,
            "ours_step_s": cfg.batch_size / ours_img_s,
            "ours_img_s_runs": ours_runs,
            "baseline_img_s": base_img_s,
            "baseline_step_s": cfg.batch_size / base_img_s,
            "baseline_img_s_runs": base_runs,
            "baseline_workers": workers,
            "ratio": ours_img_s / base_img_s,
            "knn_time_s": knn_s,
            "knn_acc": knn_acc,
            "epoch_time_s": epoch_s,
            "knn_share": knn_s / epoch_s,
            "peak_mem_mb": peak,
            "baseline_peak_mem_mb": base_peak,
            "peak_mem_source": "torch.cuda.max_memory_allocated" if cuda else "getrusage ru_maxrss (process)",
        }
    )
    if req.packed:
        del run  # free the device for the packed trainings
        if cuda:
            torch.cuda.empty_cache()
        result.packed = measure_packed(cfg, data, req.packed, req.steps, req.warmup)
    return result


def format_report(r: BenchResult) -> str:
    """The short text table printed by `ssl-tune bench`."""
    lines = [
        f"{r.method} / {r.backbone} on {r.dataset} ({r.train_images} train, {r.test_images} test, "
        f"{r.image_size} px, {r.views_per_image} views), batch {r.batch_size}, "
        f"{r.steps} timed steps after {r.warmup_steps} warm-up"
        + (f", median of {r.repeats} interleaved runs" if r.repeats > 1 else ""),
        f"device {r.device} ({r.device_type}, {r.cpu_count} CPUs), torch {r.torch}, {r.precision}",
        "",
        f"{'pipeline':<44}{'img/s':>10}{'ms/step':>10}",
        f"{'ours (uint8 ' + PLACEMENT_WORDS[r.data_placement] + ', batched views)':<44}"
        f"{r.ours_img_s:>10.1f}{1e3 * r.ours_step_s:>10.1f}",
        f"{'baseline (v2 per image, DataLoader, ' + str(r.baseline_workers) + ' workers)':<44}"
        f"{r.baseline_img_s:>10.1f}{1e3 * r.baseline_step_s:>10.1f}",
        f"{'ratio ours / baseline':<44}{r.ratio:>10.2f}x",
        *(
            [f"runs, img/s: ours {_floats(r.ours_img_s_runs)}; baseline {_floats(r.baseline_img_s_runs)}"]
            if r.repeats > 1
            else []
        ),
        "",
        f"kNN eval {r.knn_time_s:.2f} s of an estimated {r.epoch_time_s:.2f} s epoch: knn_share {r.knn_share:.3f}",
        f"peak memory {r.peak_mem_mb:.0f} MB ({r.peak_mem_source}; baseline {r.baseline_peak_mem_mb:.0f} MB)",
    ]
    for row in r.packed:
        lines.append(f"packed x{row.k:<3} aggregate {row.img_s:>10.1f} img/s  ({row.ratio:.2f}x of one)")
    return "\n".join(lines)


def _floats(values: list[float]) -> str:
    return ", ".join(f"{v:.1f}" for v in values)


def write_json(result: BenchResult | StreamBenchResult, path: str | Path) -> None:
    Path(path).write_text(json.dumps(result.to_dict(), indent=2) + "\n")


# --- streamed shards against in-memory data ----------------------------------------------------------


@dataclass(frozen=True)
class StreamBenchResult:
    """`ssl-tune bench --streamed`: the same parquet data trained from memory and streamed from its shards."""

    dataset: str
    image_size: int
    batch_size: int
    steps: int
    ray_cpus: float
    decode_img_s: float  # Ray Data read + decode + resize alone, no training, after the first batch
    decode_img_s_per_cpu: float
    streamed_img_s: float  # training steps fed by the stream
    in_memory_img_s: float  # the same steps from the decoded split in host memory
    in_memory_placement: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _timed_steps(run: TrainingRun, batches: Iterator[torch.Tensor], steps: int, warmup: int) -> float:
    """images/s of `steps` training steps on `batches`, after `warmup` untimed ones."""
    run.model.train()
    gen = torch.Generator(device=run.device).manual_seed(0)
    start = 0.0
    for step in range(warmup + steps):
        if step == warmup:
            _sync(run.device)
            start = time.perf_counter()
        run.train_step(run.views(next(batches), gen), Progress(0, step, warmup + steps, warmup + steps))
    _sync(run.device)
    return steps * run.cfg.batch_size / (time.perf_counter() - start)


def run_stream_bench(req: BenchRequest, cfg: TrainConfig) -> StreamBenchResult:
    """Decode rate of the stream, then training img/s streamed and in memory, on the same `parquet` data."""
    import ray

    from ssl_tune.data.streaming import STREAMED_SHARDS
    from ssl_tune.data.training import open_training_data

    if cfg.dataset != "parquet":
        raise UsageError(f"--streamed needs --dataset parquet (not '{cfg.dataset}')")
    device = resolve_device(cfg.device)
    streamed_cfg = cfg.model_copy(update={"data_placement": STREAMED_SHARDS})
    streamed_data = open_training_data(streamed_cfg)
    plan = streamed_data.stream
    run = TrainingRun(streamed_cfg, streamed_data.load(streamed_cfg), device, stream=plan)
    cpus = float(ray.cluster_resources().get("CPU", 0)) if ray.is_initialized() else float(os.cpu_count() or 1)

    count, start = 0, 0.0
    for i, images in enumerate(run.train_source.epoch_batches(1)):  # decode only: one whole epoch
        if i == 0:
            start = time.perf_counter()  # past Ray Data's start-up
        else:
            count += len(images)
    decode = count / (time.perf_counter() - start)
    cpus = float(ray.cluster_resources().get("CPU", cpus))
    stream_batches = run.train_source.epoch_batches(2)
    streamed = _timed_steps(run, stream_batches, req.steps, req.warmup)
    stream_batches.close()
    del run

    memory_cfg = cfg.model_copy(update={"data_placement": "auto", "host_data_limit_gb": 1e6})
    memory_run = TrainingRun(memory_cfg, load_run_data(memory_cfg), device)
    in_memory = _timed_steps(memory_run, _device_batches(memory_run, req.seed), req.steps, req.warmup)
    return StreamBenchResult(
        cfg.dataset,
        plan.image_size,
        cfg.batch_size,
        req.steps,
        cpus,
        decode,
        decode / cpus,
        streamed,
        in_memory,
        memory_run.placement,
    )


def format_stream_report(r: StreamBenchResult) -> str:
    return "\n".join(
        [
            f"{r.dataset} at {r.image_size} px, batch {r.batch_size}, {r.steps} timed steps",
            f"{'decode only (Ray Data, ' + f'{r.ray_cpus:g} CPUs)':<44}{r.decode_img_s:>10.1f} img/s"
            f"  ({r.decode_img_s_per_cpu:.1f} per CPU)",
            f"{'train, streamed shards':<44}{r.streamed_img_s:>10.1f} img/s",
            f"{'train, in memory (' + r.in_memory_placement + ')':<44}{r.in_memory_img_s:>10.1f} img/s",
            f"{'ratio streamed / in memory':<44}{r.streamed_img_s / r.in_memory_img_s:>10.2f}x",
        ]
    )
