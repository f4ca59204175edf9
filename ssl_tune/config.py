"""The run configuration: one validated pydantic model, built from defaults, a YAML file, flags and --set.

Precedence, lowest first: the model's defaults, the method's recipe (`train_defaults`, and over them its
`vit_defaults` when the backbone is a ViT), the YAML file, the CLI flags, then `--set key=value` overrides
(dotted keys reach nested sections).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import ConfigDict, Field, ValidationError, field_validator, model_validator

from ssl_tune.data import DATASETS
from ssl_tune.data.derived import STREAMED_GREY
from ssl_tune.engine.alpha_req import ALPHA_BAND
from ssl_tune.errors import UsageError
from ssl_tune.methods import METHODS, get_method
from ssl_tune.models.backbones import BACKBONES, is_vit
from ssl_tune.settings import Settings
from ssl_tune.views import AugmentConfig

MAX_EPOCHS = 100_000
MAX_BATCH = 1 << 20
MAX_NUMBER = 1 << 31  # no setting takes a number this large


class TrainConfig(Settings):
    """Everything that defines a training run. Serialised whole into each run's config.yaml."""

    model_config = ConfigDict(validate_default=True)

    method: str = Field("simsiam", description="SSL method by name (see the methods pages)")
    backbone: str = Field(
        "resnet_tiny", description="backbone by name: resnet_tiny, resnet18, resnet50, vit_tiny, vit_small, vit_base"
    )
    dataset: str = Field("synthetic", description="dataset by name: cifar10, cifar100, imagefolder, parquet, synthetic")
    data_dir: str | None = Field(
        None,
        description="a folder or an s3:// / gs:// URI (CIFAR without it: $SSL_TUNE_DATASETS, else the user cache)",
    )
    download: bool = Field(False, description="CIFAR: download the batches through torchvision if they are missing")
    image_size: int | None = Field(
        None, ge=8, le=1024, description="resize every image to this side (CIFAR: from 32 px, antialiased)"
    )
    grayscale: bool = Field(False, description="turn every image grey (3 equal channels): a dataset without colour")
    train_subset: int | None = Field(None, gt=0, description="train on the first N train images only")
    test_subset: int | None = Field(None, gt=0, description="query the kNN with the first N test images only")
    skip_corrupt: bool = Field(False, description="parquet: leave out (and count) images that do not decode")

    epochs: int = Field(10, gt=0, le=MAX_EPOCHS, description="training epochs")
    batch_size: int = Field(256, gt=0, le=MAX_BATCH, description="global batch, split across workers")
    optimizer: Literal["sgd", "lars", "adamw"] = Field("sgd", description="sgd, lars or adamw")
    lr: float = Field(0.05, gt=0, le=1e3, description="base lr for batch 256; the run uses lr * batch/256")
    weight_decay: float = Field(
        5e-4, ge=0, le=1, description="weight decay (AdamW leaves biases, norms and embeddings undecayed)"
    )
    weight_decay_end: float | None = Field(
        None, ge=0, le=1, description="cosine schedule from weight_decay to this over training (DINO: 0.04 -> 0.4)"
    )
    drop_path: float = Field(0.0, ge=0, lt=1, description="ViT backbones: stochastic depth rate (DINO: 0.1)")
    momentum: float = Field(0.9, ge=0, lt=1, description="SGD/LARS momentum (AdamW: beta1 0.9, beta2 0.999)")
    lars_eta: float = Field(0.02, gt=0, le=1, description="LARS trust coefficient")
    lars_clip_lr: bool = Field(
        False, description="LARS: effective lr min(lr, trust) (LARC clipping, solo-learn's recipes), not lr x trust"
    )
    warmup_epochs: float = Field(
        0.0, ge=0, le=MAX_EPOCHS, description="linear lr warm-up before the cosine decay, in epochs (fractions allowed)"
    )

    precision: Literal["auto", "bf16", "fp32"] = Field(
        "auto", description="auto (bf16 autocast on CUDA, fp32 on CPU), bf16 or fp32"
    )
    channels_last: bool = Field(True, description="CUDA: channels-last memory format for the convolutions")
    compile: bool = Field(False, description="torch.compile the method")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto (CUDA when there is one), cpu or cuda")
    data_placement: Literal["auto", "resident", "streamed", "streamed_shards"] = Field(
        "auto",
        description="resident: uint8 images copied to the device once; streamed: copied per batch from host "
        "memory; streamed_shards: decoded from the parquet shards through Ray Data, never whole in memory",
    )
    device_data_limit_gb: float = Field(4.0, gt=0, le=1e4, description="auto: stream datasets larger than this")
    host_data_limit_gb: float = Field(
        32.0, gt=0, le=1e6, description="auto: stream a parquet train split from its shards above this decoded size"
    )
    stream_eval_subset: int = Field(
        5000, gt=0, le=1_000_000, description="streamed_shards: the first N train images, decoded once for kNN/RankMe"
    )
    stream_shuffle_window: int = Field(
        2048, ge=0, le=1_000_000, description="streamed_shards: each rank's local shuffle buffer (rows; 0 = off)"
    )
    stream_decode: Literal["workers", "device"] = Field(
        "workers",
        description="streamed_shards: decode in Ray Data tasks on CPU workers (PIL), or, for a JPEG pack, in the "
        "training process on its device (torchvision decode_jpeg: nvJPEG on CUDA)",
    )
    seed: int = Field(0, ge=0, lt=2**31, description="seed of the weights, views and data order")

    monitor: Literal["val", "test"] = Field(
        "test",
        description="the per-epoch kNN's queries: val (held out of the train split; sweeps always) or test",
    )
    val_split: float = Field(0.1, gt=0, le=0.5, description="monitor val: share of the train split held out")
    val_size: int | None = Field(None, gt=0, description="monitor val: hold out exactly N images (else val_split)")
    rankme: bool = Field(False, description="measure RankMe each epoch: a sweep metric that needs no labels")
    rankme_images: int = Field(10_000, gt=0, le=1_000_000, description="RankMe on the first N train images")
    lidar: bool = Field(False, description="measure LiDAR each epoch: a sweep metric that needs no labels")
    lidar_images: int = Field(
        1000, ge=2, le=100_000, description="LiDAR on N train images (a fixed, seeded subset, the same in every run)"
    )
    lidar_views: int = Field(10, ge=2, le=100, description="LiDAR: augmented views per image (the run's first view)")
    alpha_req: bool = Field(False, description="measure α-ReQ each epoch: a sweep metric that needs no labels")
    alpha_req_images: int = Field(
        5000, ge=2, le=1_000_000, description="α-ReQ on N train images (a fixed, seeded subset, the same in every run)"
    )
    alpha_req_band: tuple[float, float] = Field(
        ALPHA_BAND, description="α-ReQ: the band of α a sweep selects towards (low, high); see engine/alpha_req.py"
    )

    knn_k: int = Field(200, gt=0, le=10_000, description="kNN monitor: neighbours that vote")
    knn_temperature: float = Field(
        0.1, gt=0, le=100, description="kNN monitor: votes weighted by exp(similarity / this)"
    )
    knn_bank_subset: int | None = Field(
        None, gt=0, description="kNN bank: the first N train images (None = all); a smaller bank is cheaper"
    )
    collapse_std_threshold: float = Field(
        0.0,
        ge=0,
        le=2,
        description="stop as collapsed when the embedding std ratio (about 1 when healthy) falls below this (0 = "
        "off; above 1.1 it flags healthy runs too: a fault injection for testing)",
    )

    inject_nan_from_epoch: int | None = Field(
        None, gt=0, description="fault injection for tests: the loss is NaN from this epoch on (None = off)"
    )

    augment: AugmentConfig = Field(default_factory=AugmentConfig, description="view augmentation strengths (augment.*)")
    method_params: dict[str, Any] = Field(
        default_factory=dict, description="the method's own keys (see its page): heads, temperatures, EMA momentum"
    )
    out: str | None = Field(None, description="the run directory")

    @field_validator("method")
    @classmethod
    def _known_method(cls, v: str) -> str:
        get_method(v)
        return v

    @field_validator("backbone")
    @classmethod
    def _known_backbone(cls, v: str) -> str:
        if v not in BACKBONES:
            raise ValueError(BACKBONES.unknown(v))
        return v

    @field_validator("dataset")
    @classmethod
    def _known_dataset(cls, v: str) -> str:
        if v not in DATASETS:
            raise ValueError(DATASETS.unknown(v))
        return v

    @model_validator(mode="after")
    def _check(self) -> TrainConfig:
        low, high = self.alpha_req_band
        if not 0 <= low < high <= 10:
            raise ValueError(f"alpha_req_band ({low}, {high}) must have 0 <= low < high <= 10")
        if self.warmup_epochs > self.epochs:
            raise ValueError(
                f"warmup_epochs ({self.warmup_epochs:g}) exceeds epochs ({self.epochs}): set warmup_epochs to at most"
                f" {self.epochs} (a ViT recipe warms up over its paper's schedule)"
            )
        if self.weight_decay_end is not None and self.weight_decay == 0:
            raise ValueError("weight_decay_end schedules from weight_decay, which is 0: set weight_decay > 0")
        if self.drop_path and not is_vit(self.backbone):
            raise ValueError(f"drop_path applies to the ViT backbones, not to '{self.backbone}'")
        if self.data_placement == "streamed_shards" and self.dataset != "parquet":
            raise ValueError(f"data_placement streamed_shards needs dataset 'parquet' (not '{self.dataset}')")
        if self.data_placement == "streamed_shards" and self.grayscale:
            raise ValueError(STREAMED_GREY)
        may_stream = self.data_placement == "streamed_shards" or (
            self.data_placement == "auto" and self.dataset == "parquet"
        )
        if self.stream_decode == "device" and not may_stream:
            raise ValueError(
                f"stream_decode device needs streamed shards (data_placement streamed_shards, or auto on a parquet"
                f" dataset), not data_placement {self.data_placement} on dataset '{self.dataset}'"
            )
        try:
            params = get_method(self.method).Params.model_validate(self.method_params)
        except ValidationError as err:
            raise ValueError(describe_validation_error(err, prefix="method_params")) from None
        self.method_params = params.model_dump(mode="json")
        return self

    def method_param_model(self) -> Any:
        return get_method(self.method).Params.model_validate(self.method_params)

    def to_yaml_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


def check_batch_size(batch_size: int, train_images: int, workers: int = 1) -> None:
    """A global batch must fit the training set and split evenly across the workers. Raises UsageError."""
    if batch_size > train_images:
        raise UsageError(f"batch_size {batch_size} is larger than the training set ({train_images} images)")
    if batch_size % workers:
        raise UsageError(f"batch_size {batch_size} is not divisible by {workers} workers")


# --- building a config ----------------------------------------------------------------------------


def deep_merge(base: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def read_yaml(path: str | Path) -> dict[str, Any]:
    """A YAML mapping from a file, or a UsageError that says what is wrong with it."""
    path = Path(path)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as err:
        raise UsageError(f"cannot read config {path}: {getattr(err, 'strerror', None) or err}") from err
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise UsageError(f"config {path} is not valid YAML{where}") from err
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UsageError(f"config {path} must be a YAML mapping of keys to values, not {type(data).__name__}")
    return data


def parse_set(items: Iterable[str]) -> dict[str, Any]:
    """`key=value` strings (dotted keys nest) to a nested dict; values are parsed as YAML scalars."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key or any(not part for part in key.split(".")):
            raise UsageError(f"--set expects key=value, got '{item}'")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            value = raw
        node = out
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise UsageError(f"--set {key}: '{part}' is set both as a value and as a section")
        node[parts[-1]] = value
    return out


def describe_validation_error(err: ValidationError, prefix: str = "") -> str:
    """One line naming the first bad key and what is wrong with it."""
    first = err.errors()[0]
    key = ".".join(str(p) for p in (prefix, *first["loc"]) if p != "")
    msg = first["msg"]
    if not first["loc"] and not prefix:  # a check across keys: its message names them
        text = msg.removeprefix("Value error, ")
    elif first["type"] == "extra_forbidden":
        text = f"unknown config key '{key}'"
    elif first["type"] == "missing":
        text = f"config key '{key}' is required"
    else:
        value = first.get("input")
        shown = "" if isinstance(value, dict | list) or value is None or repr(value) in msg else f" (got {value!r})"
        msg = msg.removeprefix("Value error, ")
        text = f"config key '{key}': {msg}{shown}"
    more = len(err.errors()) - 1
    return text + (f" (and {more} more problem{'s' if more > 1 else ''})" if more else "")


def build_config(*layers: Mapping[str, Any]) -> TrainConfig:
    """Merge layers (lowest precedence first) over the method's defaults and validate."""
    merged: dict[str, Any] = {}
    for layer in layers:
        if not isinstance(layer, Mapping):
            raise UsageError(f"config must be a mapping, not {type(layer).__name__}")
        merged = deep_merge(merged, layer)
    method = merged.get("method", TrainConfig.model_fields["method"].default)
    if not isinstance(method, str):
        raise UsageError(f"config key 'method': must be a method name (got {method!r})")
    if method not in METHODS:
        raise UsageError(f"config key 'method': {METHODS.unknown(method)}")
    backbone = merged.get("backbone", TrainConfig.model_fields["backbone"].default)
    merged = deep_merge(method_recipe(method, backbone), merged)
    _reject_bad_sections(merged)
    try:
        cfg = TrainConfig.model_validate(merged)
    except ValidationError as err:
        raise UsageError(describe_validation_error(err)) from None
    _reject_huge_numbers(cfg.to_yaml_dict())
    return cfg


def method_recipe(method: str, backbone: Any) -> dict[str, Any]:
    """The method's defaults for the run's keys: its `train_defaults`, with its `vit_defaults` over them when
    `backbone` names a ViT (MoCo v3's and DINO's papers train ViTs with AdamW, not LARS)."""
    cls = METHODS.get(method)
    if isinstance(backbone, str) and is_vit(backbone):
        return deep_merge(cls.train_defaults, cls.vit_defaults)
    return dict(cls.train_defaults)


def _reject_huge_numbers(values: Mapping[str, Any], prefix: str = "") -> None:
    """No setting takes a number of 2^31 or more: catch those no field bounds (the last line of defence behind
    each field's and `MethodParams`' bounds), which would otherwise fail deep inside torch."""
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            _reject_huge_numbers(value, f"{name}.")
        elif isinstance(value, int | float) and not isinstance(value, bool) and abs(value) >= MAX_NUMBER:
            raise UsageError(f"config key '{name}': {value!r} is out of range (its magnitude must be below 2^31)")


def _reject_bad_sections(merged: Mapping[str, Any]) -> None:
    for section in ("augment", "method_params"):
        if section in merged and not isinstance(merged[section], Mapping):
            raise UsageError(f"config key '{section}' must be a mapping of keys to values")
