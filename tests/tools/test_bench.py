"""`ssl-tune bench` end to end on CPU in a small setting, its baseline views for every method, and bad input."""

from __future__ import annotations

import json

import pytest
import torch

from ssl_tune.cli import main
from ssl_tune.config import build_config
from ssl_tune.methods import METHODS, get_method
from ssl_tune.models.backbones import build_backbone
from ssl_tune.tools.bench import BaselineViews, BenchRequest, run_bench
from ssl_tune.views import ViewGenerator
from tests.helpers import SMALL_SIMSIAM

SMALL = [
    "bench",
    "--method",
    "simsiam",
    "--backbone",
    "resnet_tiny",
    "--dataset",
    "synthetic",
    "--train-subset",
    "128",
    "--test-subset",
    "64",
    "--batch-size",
    "32",
    "--device",
    "cpu",
]
SMALL += [arg for k, v in SMALL_SIMSIAM.items() for arg in ("--set", f"method_params.{k}={v}")]

POSITIVE = ["ours_img_s", "baseline_img_s", "ratio", "knn_share", "knn_time_s", "peak_mem_mb", "epoch_time_s"]


def test_bench_writes_json_with_positive_numbers(tmp_path, capsys):
    out = tmp_path / "bench.json"
    args = [*SMALL, "--steps", "2", "--warmup", "0", "--workers", "1", "--repeats", "2", "--packed", "2"]
    assert main([*args, "--json", str(out)]) == 0
    r = json.loads(out.read_text())
    for key in POSITIVE:
        assert isinstance(r[key], float) and r[key] > 0, key
    assert r["knn_share"] < 1
    assert r["ratio"] == pytest.approx(r["ours_img_s"] / r["baseline_img_s"])
    assert r["epoch_time_s"] == pytest.approx(r["train_images"] / r["ours_img_s"] + r["knn_time_s"])
    assert len(r["ours_img_s_runs"]) == len(r["baseline_img_s_runs"]) == 2
    assert (r["method"], r["backbone"], r["batch_size"], r["steps"]) == ("simsiam", "resnet_tiny", 32, 2)
    assert r["device_type"] == "cpu" and r["device"] and r["torch"] == torch.__version__
    assert r["baseline_workers"] == 1 and r["views_per_image"] == 2
    assert [row["k"] for row in r["packed"]] == [1, 2]
    assert all(row["img_s"] > 0 for row in r["packed"]) and r["packed"][0]["ratio"] == 1.0
    text = capsys.readouterr().out
    assert "ratio ours / baseline" in text and "knn_share" in text and "packed x2" in text


def _views_method() -> str:
    """Of the registered methods with the most views (multi-crop if any: varied view sizes), the smallest."""

    def key(method: str) -> tuple[int, int]:
        per_view, _, model = _specs(method)
        return len(per_view), -sum(p.numel() for p in model.parameters())

    return max(sorted(METHODS), key=key)


def _specs(method: str):
    cfg = build_config({"method": method})
    model = get_method(method)(build_backbone(cfg.backbone, 32), cfg.method_param_model())
    specs = model.view_specs(cfg.augment, 32)
    return [s for s in specs for _ in range(s.count)], specs, model


@pytest.mark.parametrize("method", sorted(METHODS))
def test_baseline_makes_the_same_views_as_ours_for_every_method(method):
    per_view, specs, _ = _specs(method)
    images = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8)
    mean, std = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)
    ours = ViewGenerator(specs, mean, std)(images)
    theirs = BaselineViews(images, specs, mean, std)[1]
    assert len(theirs) == len(ours) == len(per_view)
    for a, b in zip(ours, theirs, strict=True):
        assert b.dtype == a.dtype == torch.float32 and b.shape == a.shape[1:]


def test_bench_runs_a_multi_view_method_in_process():
    # DataLoader without worker processes (workers=0): the baseline runs in this process
    method = _views_method()
    small = {"batch_size": 8, "steps": 1, "warmup": 0, "train_subset": 16, "test_subset": 8, "workers": 0}
    r = run_bench(BenchRequest(method=method, device="cpu", **small))
    assert r.method == method and r.views_per_image == len(_specs(method)[0])
    assert r.ours_img_s > 0 and r.baseline_img_s > 0 and 0 < r.knn_share < 1


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--steps", "0"], "--steps must be positive"),
        (["--warmup", "-1"], "--warmup must be non-negative"),
        (["--batch-size", "0"], "--batch-size must be positive"),
        (["--workers", "-2"], "--workers must be non-negative"),
        (["--packed", "-1"], "--packed must be non-negative"),
        (["--repeats", "0"], "--repeats must be positive"),
        (["--method", "nope"], "unknown method 'nope'"),
        (["--backbone", "nope"], "unknown backbone 'nope'"),
        (["--dataset", "cifar10"], "needs --data-dir"),
        (["--device", "tpu"], "config key 'device'"),
        (["--set", "method_params.nope=1"], "method_params.nope"),
        (["--json", "/nonexistent/dir/b.json"], "does not exist"),
        (["--batch-size", "512"], "larger than the training set"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(extra, message, capsys, monkeypatch, tmp_path):
    monkeypatch.delenv("SSL_TUNE_DATASETS", raising=False)  # nowhere to find CIFAR-10 without --data-dir
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert main([*SMALL, "--steps", "1", *extra]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("ssl-tune bench: error:"), err
    assert message in err


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is visible")
def test_cuda_without_gpu_is_a_usage_error(capsys):
    assert main([*SMALL, "--device", "cuda"]) == 2
    assert "no CUDA GPU" in capsys.readouterr().err
