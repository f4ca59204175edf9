"""Final evaluation of a trained backbone on the test split: weighted kNN and a linear probe.

- kNN: k = 200, T = 0.1, the whole train split as the bank and the test split as queries, on L2-normalised
  features (as lightly's CIFAR-10 benchmark).
- Linear probe: multinomial logistic regression on the frozen, un-augmented features, extracted once; its
  weight decay is chosen on the validation split (the same stratified hold-out of the train split that sweeps
  select on), then it is refitted on the whole train split and scored on the test split (top-1, top-5).

This differs from solo-learn's linear evaluation, which trains a linear layer for 100 epochs with SGD on
augmented views (random crops and flips): that reaches a few points more at the cost of 100 passes through
the backbone, where this probe makes one pass and fits in seconds. `ssl-tune eval` is for comparing configs
fairly and cheaply; report solo-learn's protocol separately when a paper's table needs it.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from ssl_tune.config import TrainConfig, build_config
from ssl_tune.data import ImageData
from ssl_tune.data.splits import validation_split
from ssl_tune.data.training import load_run_data
from ssl_tune.engine.checkpoint import checkpoint_file, load_checkpoint
from ssl_tune.engine.knn import extract_features, knn_accuracy
from ssl_tune.engine.linear_probe import ProbeResult, linear_probe
from ssl_tune.engine.run import resolve_device
from ssl_tune.errors import UsageError
from ssl_tune.models.backbones import build_backbone
from ssl_tune.stages import stage
from ssl_tune.views import ViewGenerator

EVAL_FILE = "eval.json"
EVAL_KNN_K, EVAL_KNN_TEMPERATURE = 200, 0.1


@dataclass(frozen=True)
class EvalResult:
    """The test-split numbers of one checkpoint (accuracies in [0, 1])."""

    test_knn_acc: float
    probe_top1: float
    probe_top5: float
    probe_weight_decay: float
    probe_val_top1: float
    train_images: int
    test_images: int
    epoch: int
    checkpoint: str
    seconds: float
    eval_file: str | None = None  # where `ssl_tune.evaluate` wrote these numbers; not one of them

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k != "eval_file"}


def checkpoint_config(state: dict[str, Any], data_dir: str | None = None) -> TrainConfig:
    """The run config saved in a checkpoint, with the data moved to `data_dir` if given."""
    if "config" not in state or "model" not in state:
        raise UsageError("the checkpoint holds no run config or model (not an ssl-tune checkpoint)")
    return build_config(state["config"], {"data_dir": data_dir} if data_dir else {})


def backbone_state(state: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The backbone's own state_dict from a method's checkpoint (its `backbone.` keys, prefix dropped)."""
    prefix = "backbone."
    weights = {k.removeprefix(prefix): v for k, v in state["model"].items() if k.startswith(prefix)}
    if not weights:
        raise UsageError("the checkpoint's model has no backbone weights")
    return weights


@torch.no_grad()
def evaluate_checkpoint(path: str | Path, data_dir: str | None = None, device: str = "auto") -> EvalResult:
    """kNN and linear probe of the checkpoint at `path` (a file, or a Ray Train checkpoint folder; a path or a
    URI)."""
    start = time.perf_counter()
    state = read_checkpoint(path)
    cfg = checkpoint_config(state, data_dir)
    data = load_run_data(cfg, with_test=True)
    dev = resolve_device(device)
    backbone = build_backbone(cfg.backbone, data.image_size).to(dev)
    backbone.load_state_dict(backbone_state(state))
    epoch = int(state.get("epoch", 0))
    return evaluate_backbone(backbone, data, cfg, dev, epoch=epoch, checkpoint=str(path), start=start, progress=True)


@torch.no_grad()
def evaluate_backbone(
    backbone: torch.nn.Module,
    data: ImageData,
    cfg: TrainConfig,
    device: torch.device,
    *,
    epoch: int,
    checkpoint: str = "",
    start: float | None = None,
    progress: bool = False,
) -> EvalResult:
    """kNN and linear probe of a backbone on `data`'s test split (the features are extracted once).

    `progress`: show each stage (a bar on a terminal, else a line at its start and end); quiet by default, as in
    a confirm run's final evaluation."""
    start = time.perf_counter() if start is None else start
    if data.has_labeled_set:  # a pool: evaluated on its labeled set, the fixed bank and queries the kNN monitor read
        data = data.labeled_splits()
    if not data.labeled or not data.has_test:
        raise UsageError(f"dataset '{cfg.dataset}' has no labels or no test split: eval needs both")
    train, test = _features(backbone, data, device, progress)
    train_labels, test_labels = data.train_labels.to(device), data.test_labels.to(device)
    knn = knn_accuracy(
        torch.nn.functional.normalize(train, dim=1),
        train_labels,
        torch.nn.functional.normalize(test, dim=1),
        test_labels,
        data.num_classes,
        EVAL_KNN_K,
        EVAL_KNN_TEMPERATURE,
    )
    shape = f"({len(train)} x {train.shape[1]} features)"
    with stage("fitting linear probe", detail=shape, quiet=not progress):
        probe = probe_with_validation(train, train_labels, test, test_labels, data, cfg)
    return EvalResult(
        test_knn_acc=knn,
        probe_top1=probe.top1,
        probe_top5=probe.top5,
        probe_weight_decay=probe.weight_decay,
        probe_val_top1=probe.val_top1,
        train_images=data.num_train,
        test_images=len(data.test_labels),
        epoch=epoch,
        checkpoint=checkpoint,
        seconds=time.perf_counter() - start,
    )


def probe_with_validation(
    train: torch.Tensor, train_labels: torch.Tensor, test: torch.Tensor, test_labels: torch.Tensor,
    data: ImageData, cfg: TrainConfig,
) -> ProbeResult:  # fmt: skip
    """The linear probe with its weight decay chosen on the run config's validation hold-out."""
    split = validation_split(data.train_labels, data.num_train, fraction=cfg.val_split, size=cfg.val_size)
    tr, val = split.train_indices.to(train.device), split.val_indices.to(train.device)
    return linear_probe(train[tr], train_labels[tr], train[val], train_labels[val], test, test_labels, data.num_classes)


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The checkpoint at `path` (a file, or a Ray Train checkpoint folder), or one line (UsageError)."""
    file = checkpoint_file(path)
    try:
        return load_checkpoint(file)
    except (OSError, RuntimeError, EOFError) as err:
        raise UsageError(f"cannot read checkpoint {file}: {err}") from None


def _features(
    backbone: torch.nn.Module, data: ImageData, device: torch.device, progress: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """Raw (un-normalised) backbone features of the un-augmented train and test images, extracted once."""
    plain = ViewGenerator([], data.mean, data.std).plain
    autocast = torch.bfloat16 if device.type == "cuda" else None

    def extract(split: str, images: torch.Tensor) -> torch.Tensor:
        with stage(f"extracting features ({split})", len(images), quiet=not progress) as advance:
            return extract_features(
                backbone, images, lambda x: plain(x.to(device)), normalize=False, autocast_dtype=autocast,
                on_batch=advance,
            )  # fmt: skip

    return extract("train", data.train_images), extract("test", data.test_images)


__all__ = ["EVAL_FILE", "EvalResult", "evaluate_backbone", "evaluate_checkpoint"]
