"""The GPU checks and benchmarks in one run, for a session that is lent a GPU machine (at most 8 minutes on one
H100: a lent machine has 15 minutes in all).

Run on the GPU machine from the repository root (python3 there holds torch; see CONTRIBUTING.md, "The GPU check"):

    python3 scripts/gpu_check.py --out $OUT [--data-dir DIR] [--quick] [--stages a,b,...]

Stages, in order (each one's result, or its error in one line, lands in gpu_check.json as soon as it ends):
1. host_sync: every method trains a short epoch with `torch.cuda.set_sync_debug_mode("error")` armed after its
   first step, with resident and with streamed data: a sync inside a step raises;
2. vit_dino: a ViT-S/16 DINO epoch with its ViT recipe at 224 px (2 x 224 + 8 x 96 crops, 65536 prototypes,
   AdamW, bf16): images/s and peak memory;
3. device_jpeg: a real JPEG pack (`ssl-tune data pack`) decoded on the GPU (nvJPEG) against PIL on the CPU:
   images/s of each and the pixel difference;
4. packed_sweep: 4 trials packed on one GPU (gpus_per_trial 0.25) through a real `ssl-tune sweep` on a local
   Ray cluster: how many ran at once, and the wall time;
5. bench: SimSiam / resnet18 / batch 512 / bf16, our pipeline against the DataLoader baseline, the kNN share of
   an epoch, peak memory and 1..4 packed trainings on the GPU (JSON key `eager`); then the same with the backbone
   compiled (`compiled`, left out by --quick);
6. knn: the kNN's time and share of an epoch (only when `eager` measured a throughput).

Without --data-dir the data are synthetic images in CIFAR-10's shape (50,000 train, 10,000 test, 32 px): the
same work per image and the same kNN bank, so the same throughput and kNN share. A stage that would start after
--max-minutes is skipped, and says so. The JSON is always written, with each failure named (`failures`), also
when no GPU is visible (exit 2).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ssl_tune.config import build_config
from ssl_tune.data import ImageData, load_data
from ssl_tune.data.synthetic import NUM_CLASSES, generate
from ssl_tune.engine.run import TrainingRun
from ssl_tune.methods import METHODS
from ssl_tune.tools.bench import BenchRequest, check_request, format_report, run_bench, time_knn

TARGETS = {  # issue 6, for one H100 (dense bf16 ~990 TFLOP/s; an H200 has the same tensor cores)
    "ours_img_s": (">=", 40_000),
    "ratio": (">=", 8.0),
    "knn_share": ("<=", 0.05),
    "packed_4_ratio": (">=", 2.5),
}
STAGES = ("host_sync", "vit_dino", "device_jpeg", "packed_sweep", "bench", "knn")
SMALL_HEADS = {"proj_hidden_dim": 512, "proj_output_dim": 256, "pred_hidden_dim": 256, "num_prototypes": 512}


def cifar_shaped(train: int, test: int) -> ImageData:
    """Synthetic images in CIFAR-10's shape, generated on the CPU."""
    train_x, train_y = generate(train, 32, seed=1)
    test_x, test_y = generate(test, 32, seed=2)
    return ImageData(train_x, train_y, test_x, test_y, NUM_CLASSES, (0.5,) * 3, (0.25,) * 3)


def check_no_host_sync(method: str, placement: str, backbone: str, device: str, small: bool) -> dict[str, Any]:
    """One short epoch on the GPU; any synchronising call after the first step raises."""
    fields = METHODS[method].Params.model_fields
    params = {k: v for k, v in SMALL_HEADS.items() if k in fields}
    if method == "swav":
        params |= {"queue_size": 512, "epoch_queue_starts": 0}
    cfg = build_config(
        {"method": method, "backbone": backbone, "batch_size": 64 if small else 256, "epochs": 1, "device": device,
         "data_placement": placement, "method_params": params, "augment": {"blur_prob": 0.5, "solarize_prob": 0.2}}
    )  # fmt: skip
    data = load_data("synthetic", train_subset=256 if small else 2048, test_subset=64 if small else 512)
    run = TrainingRun(cfg, data)
    run.initial_metrics()
    last = run.steps_per_epoch - 1

    def arm(i: int) -> None:
        if device == "cuda":
            torch.cuda.set_sync_debug_mode("error" if i < last else "default")

    try:
        metrics = run.train_epoch(on_step=arm)
        return {"method": method, "placement": placement, "ok": True, "loss": metrics.loss}
    except RuntimeError as err:
        return {"method": method, "placement": placement, "ok": False, "error": str(err).splitlines()[0]}
    finally:
        if device == "cuda":
            torch.cuda.set_sync_debug_mode("default")


def bench(args: argparse.Namespace, data: ImageData | None, steps: int, packed: int, compile_: bool) -> dict[str, Any]:
    """SimSiam with its own CIFAR heads (2048-2048 projector, 512 predictor), bf16, eager or compiled."""
    req = BenchRequest(
        method="simsiam",
        backbone=args.backbone,
        batch_size=args.batch_size,
        steps=steps,
        warmup=10 if compile_ else 5,
        device=args.device,
        dataset="cifar10" if args.data_dir else "synthetic",
        data_dir=args.data_dir,
        packed=packed,
        repeats=2,
        overrides=("precision=bf16", f"compile={str(compile_).lower()}"),
    )
    return run_bench(req, check_request(req), data)


def bench_stage(args: argparse.Namespace, data: ImageData | None, steps: int, packed: int, compile_: bool) -> dict:
    result = bench(args, data, steps, packed, compile_)
    print(format_report(result), flush=True)
    return result.to_dict()


def knn_shares(args: argparse.Namespace, data: ImageData | None, ours_img_s: float) -> list[dict[str, Any]]:
    """kNN time and share of an epoch with the whole bank, and with a 10,000-image bank and 5,000 queries."""
    if data is None:
        data = load_data("cifar10", args.data_dir)
    rows = []
    n_train, n_test = len(data.train_labels), len(data.test_labels)
    for bank, queries in ((None, None), (min(10_000, n_train // 5), min(5_000, n_test // 2))):
        cfg = build_config(
            {"method": "simsiam", "backbone": args.backbone, "batch_size": args.batch_size, "device": args.device,
             "precision": "bf16", "knn_bank_subset": bank}
        )  # fmt: skip
        run = TrainingRun(cfg, data.subset(None, queries))
        time_knn(run)  # warm-up
        seconds, acc = time_knn(run)
        epoch_s = len(data.train_labels) / ours_img_s + seconds
        rows.append({"bank": bank or len(data.train_labels), "queries": queries or len(data.test_labels),
                     "knn_time_s": seconds, "knn_share": seconds / epoch_s, "knn_acc": acc})  # fmt: skip
        print(f"kNN bank {rows[-1]['bank']:>6} queries {rows[-1]['queries']:>6}: {seconds:.3f} s, "
              f"knn_share {rows[-1]['knn_share']:.3f}", flush=True)  # fmt: skip
    return rows


def vit_dino(device: str, dry: bool) -> dict[str, Any]:
    """One epoch of DINO's ViT recipe on a ViT-S/16 at 224 px with multi-crop (2 x 224 + 8 x 96), bf16. The dry
    run: a ViT-Tiny/4 at 32 px with 2 local crops of 16 px and 512 prototypes."""
    size, n, batch = (32, 32, 16) if dry else (224, 1024, 128)
    over: dict[str, Any] = {"augment": {"num_local_crops": 2, "local_crop_size": 16}} if dry else {}
    params = {"num_prototypes": 512} if dry else {}
    cfg = build_config({
        "method": "dino", "backbone": "vit_tiny" if dry else "vit_small", "dataset": "synthetic",
        "image_size": size, "train_subset": n, "test_subset": n // 4, "batch_size": batch, "epochs": 1,
        "warmup_epochs": 0, "device": device, "precision": "fp32" if dry else "bf16", "knn_k": 20,
        "method_params": params, **over,
    })  # fmt: skip
    run = TrainingRun(cfg, load_data("synthetic", image_size=size, train_subset=n, test_subset=n // 4))
    run.initial_metrics()
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    metrics = run.train_epoch()
    views = [(s.size, s.count) for s in run.method.view_specs(cfg.augment, size)]
    peak = torch.cuda.max_memory_allocated() / 2**20 if device == "cuda" else None
    return {"backbone": cfg.backbone, "image_size": size, "batch_size": batch, "views": views,
            "num_prototypes": cfg.method_params["num_prototypes"], "loss": metrics.loss,
            "images_per_s": metrics.images_per_s, "peak_mem_mb": peak, "status": metrics.status.value}  # fmt: skip


def device_jpeg(device: str, dry: bool, data_dir: str | None, work: Path) -> dict[str, Any]:
    """A JPEG pack made by `ssl-tune data pack` from JPEG files (CIFAR-10 upscaled to 160 px with --data-dir,
    else synthetic), its bytes decoded by `decode_jpegs` on `device` and by PIL on the CPU."""
    import numpy as np
    import pyarrow.parquet as pq
    from PIL import Image
    from torchvision.transforms.v2 import functional as TF

    from ssl_tune.cli import main as cli
    from ssl_tune.data.device_decode import decode_jpegs
    from ssl_tune.data.parquet import decode_image

    n, size = (64, 32) if dry else (2048, 160)
    if data_dir:
        images = TF.resize(load_data("cifar10", data_dir, train_subset=n, test_subset=10).train_images, [size])
    else:
        images = load_data("synthetic", image_size=size, train_subset=n, test_subset=10).train_images
    tree = work / "jpegs" / "train" / "all"
    tree.mkdir(parents=True)
    for i, img in enumerate(images):
        Image.fromarray(img.permute(1, 2, 0).numpy()).save(tree / f"{i:05d}.jpg", format="JPEG", quality=90)
    pack = work / "pack"
    if cli(["data", "pack", "--source", "imagefolder", "--data-dir", str(work / "jpegs"), "--out", str(pack)]):
        raise RuntimeError("ssl-tune data pack failed")
    manifest = json.loads((pack / "dataset.json").read_text())
    rows = [r for s in manifest["splits"]["train"] for r in pq.read_table(pack / s["path"]).to_pylist()]
    data = [r["image"] for r in rows]
    target = torch.device(device)
    decode_jpegs(data[:64], size, target)  # warm-up (nvJPEG's handles)
    start = time.perf_counter()
    decoded = torch.cat([decode_jpegs(data[i : i + 256], size, target)[0] for i in range(0, len(data), 256)])
    if device == "cuda":
        torch.cuda.synchronize()
    device_s = time.perf_counter() - start
    start = time.perf_counter()
    pil = torch.from_numpy(np.stack([decode_image(d, size) for d in data])).permute(0, 3, 1, 2)
    pil_s = time.perf_counter() - start
    diff = (decoded.cpu().int() - pil.int()).abs()
    return {"images": len(data), "size": size, "device_img_s": len(data) / device_s, "pil_img_s": len(data) / pil_s,
            "max_abs_diff": int(diff.max()), "mean_abs_diff": float(diff.float().mean())}  # fmt: skip


def packed_sweep(dry: bool, work: Path) -> dict[str, Any]:
    """`ssl-tune sweep` of 4 trials, each asking for a quarter of the GPU, on a local Ray cluster: all 4 should
    run at once on the one GPU. The dry run asks for no GPU."""
    fixed = {"method": "simsiam", "backbone": "resnet_tiny" if dry else "resnet18", "dataset": "synthetic",
             "train_subset": 512 if dry else 10_000, "test_subset": 128 if dry else 1000, "val_size": 128,
             "epochs": 2 if dry else 3, "batch_size": 128 if dry else 256}  # fmt: skip
    space = {
        "description": "gpu_check: 4 trials packed on one GPU",
        "fixed": fixed,
        "params": {"lr": {"type": "loguniform", "low": 0.01, "high": 1.0}},
        "sweep": {"num_samples": 4, "max_concurrent": 4, "gpus_per_trial": 0 if dry else 0.25,
                  "cpus_per_worker": 0.5 if dry else 2, "try_default": False, "early_stopping": "none"},
    }  # fmt: skip
    (work / "space.yaml").write_text(yaml.safe_dump(space))
    cmd = [sys.executable, "-m", "ssl_tune", "sweep", "--space", str(work / "space.yaml"), "--storage",
           str(work / "sweeps"), "--name", "packed"]  # fmt: skip
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    wall = time.perf_counter() - start
    if proc.returncode:
        raise RuntimeError(f"sweep exited {proc.returncode}: {(proc.stderr.strip().splitlines() or [''])[-1]}")
    spans = []
    for result in (work / "sweeps" / "packed").glob("trial-*/result.json"):
        times = [json.loads(line)["timestamp"] for line in result.read_text().splitlines()]
        spans.append((min(times), max(times)))
    at_once = max(sum(1 for a, b in spans if a <= t <= b) for t, _ in spans) if spans else 0
    return {"trials": len(spans), "max_at_once": at_once, "wall_s": wall,
            "summary": [line for line in proc.stdout.splitlines() if "trials," in line]}  # fmt: skip


class Report:
    """gpu_check.json, rewritten after every stage: each stage's result or its error, and the time it took."""

    def __init__(self, out: Path, max_minutes: float) -> None:
        self.path, self.start, self.max_s = out / "gpu_check.json", time.perf_counter(), 60 * max_minutes
        self.data: dict[str, Any] = {"failures": [], "skipped": [], "stage_s": {}}

    def write(self) -> None:
        self.data["elapsed_s"] = round(time.perf_counter() - self.start, 1)
        self.path.write_text(json.dumps(self.data, indent=2, default=str) + "\n")

    def fail(self, stage: str, message: str) -> None:
        self.data["failures"].append(f"{stage}: {message}")
        print(f"{stage} FAILED: {message}", flush=True)
        self.write()

    def stage(self, name: str, fn: Callable[[], Any]) -> Any:
        if time.perf_counter() - self.start > self.max_s:
            self.data["skipped"].append(name)
            print(f"{name}: skipped, past --max-minutes", flush=True)
            self.write()
            return None
        begun = time.perf_counter()
        try:
            self.data[name] = fn()
        except Exception as err:  # report it and go on: the other stages still run
            traceback.print_exc()
            self.data[name] = {"error": f"{type(err).__name__}: {(str(err).splitlines() or [''])[0]}"}
            self.fail(name, self.data[name]["error"])
        self.data["stage_s"][name] = round(time.perf_counter() - begun, 1)
        print(
            f"== {name} ({self.data['stage_s'][name]} s): {json.dumps(self.data[name], default=str)[:600]}", flush=True
        )
        self.write()
        return self.data[name]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="folder for gpu_check.json")
    parser.add_argument("--data-dir", help="a folder holding cifar-10-batches-py (else CIFAR-shaped synthetic)")
    parser.add_argument("--quick", action="store_true", help="fewer steps and no compile run")
    parser.add_argument("--backbone", default="resnet18")
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--stages", default=",".join(STAGES), help=f"comma-separated, of {','.join(STAGES)}")
    parser.add_argument("--max-minutes", type=float, default=7.0, help="start no stage after this (default 7)")
    parser.add_argument("--cpu-dry-run", action="store_true", help="the script's plumbing on CPU, tiny sizes")
    args = parser.parse_args()
    stages = [s for s in args.stages.split(",") if s]
    if unknown := set(stages) - set(STAGES):
        parser.error(f"unknown stages {sorted(unknown)}; choose from {','.join(STAGES)}")
    args.device = "cpu" if args.cpu_dry_run else "cuda"
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    report = Report(out, args.max_minutes)
    report.data |= {"torch": torch.__version__, "stages": stages}
    if not args.cpu_dry_run and not torch.cuda.is_available():
        report.data["device"] = None
        report.fail("setup", "no CUDA GPU is visible")
        return 2
    report.data["device"] = torch.cuda.get_device_name() if args.device == "cuda" else "cpu (dry run)"
    print(f"{report.data['device']}, torch {torch.__version__}", flush=True)
    dry, work = args.cpu_dry_run, Path(tempfile.mkdtemp(prefix="gpu_check-"))

    if "host_sync" in stages:
        rows = report.stage("host_sync", lambda: host_sync_rows(args))
        report.data["host_sync_ok"] = bool(rows) and isinstance(rows, list) and all(r["ok"] for r in rows)
    if "vit_dino" in stages:
        report.stage("vit_dino", lambda: vit_dino(args.device, dry))
    if "device_jpeg" in stages:
        (work / "jpeg").mkdir()
        report.stage("device_jpeg", lambda: device_jpeg(args.device, dry, args.data_dir, work / "jpeg"))
    if "packed_sweep" in stages:
        (work / "sweep").mkdir()
        report.stage("packed_sweep", lambda: packed_sweep(dry, work / "sweep"))
    sizes = (2_000, 500) if dry else (50_000, 10_000)
    benched = "bench" in stages or "knn" in stages
    data = cifar_shaped(*sizes) if benched and not args.data_dir else None  # None: the bench loads --data-dir
    steps = 2 if dry else 20 if args.quick else 60
    if "bench" in stages:
        report.stage("eager", lambda: bench_stage(args, data, steps, packed=4, compile_=False))
        if not args.quick:
            report.stage("compiled", lambda: bench_stage(args, data, steps, packed=0, compile_=True))
    eager = report.data.get("eager") or {}
    if "knn" in stages and "ours_img_s" in eager:
        report.stage("knn", lambda: knn_shares(args, data, eager["ours_img_s"]))
    targets(report.data, eager)
    report.write()
    return 0 if not report.data["failures"] and report.data.get("host_sync_ok", True) else 1


def host_sync_rows(args: argparse.Namespace) -> list[dict[str, Any]]:
    rows = []
    for method in sorted(METHODS):
        for placement in ("resident", "streamed"):
            row = check_no_host_sync(method, placement, args.backbone, args.device, args.cpu_dry_run)
            rows.append(row)
            print(f"host sync {method:<13} {placement:<9} {'ok' if row['ok'] else 'FAIL: ' + row['error']}", flush=True)
    return rows


def targets(report: dict[str, Any], eager: dict[str, Any]) -> None:
    """Each target of TARGETS with its measured value (None: not measured)."""
    measured = {
        "ours_img_s": eager.get("ours_img_s"),
        "ratio": eager.get("ratio"),
        "knn_share": eager.get("knn_share"),
        "packed_4_ratio": next((r["ratio"] for r in eager.get("packed", []) if r["k"] == 4), None),
    }
    compiled = report.get("compiled") or {}
    if "ours_img_s" in compiled and measured["ours_img_s"]:
        report["compile_speedup"] = compiled["ours_img_s"] / measured["ours_img_s"]
        print(f"torch.compile (backbone): {report['compile_speedup']:.2f}x eager")
    report["targets"] = {}
    for key, (op, bound) in TARGETS.items():
        value = measured[key]
        met = value is not None and (value >= bound if op == ">=" else value <= bound)
        report["targets"][key] = {"value": value, "target": f"{op} {bound}", "met": met}
        print(f"target {key:<15} {op} {bound:<8} measured {value if value is None else round(value, 3)}: "
              f"{'met' if met else 'NOT met'}")  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
