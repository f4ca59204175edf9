"""`ssl-tune cluster check`: offline checks of the files in cluster/, before they cost money.

Launcher YAMLs (`ray up`) go through Ray's own validation, exactly the part of `ray up` that needs no cloud:
`prepare_config` (merges the provider's defaults.yaml, fills per-type min/max workers) then `validate_config`
(Ray's JSON schema and cross-field rules). What `ray up` does next, the provider's `bootstrap_config` and,
on AWS, the autodetection of node resources, calls the cloud API, so it is not run here; every node type
declares its `resources` instead (Ray's schema requires them for GCP and Azure anyway).

KubeRay manifests (RayCluster, RayJob) are checked field by field: Ray version, autoscaling, GPU limits,
replica bounds. Both kinds then meet the same ssl-tune rules: the head schedules no GPU work and offers the
`ssl_tune_driver` resource, the images run the Ray that ssl-tune is installed with, GPU workers start at 0.
Given a search space's trial shape (`--space`), the worker types must also be able to run one trial of it.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any, Literal

import yaml

from ssl_tune.tune.cluster import DRIVER_RESOURCE  # the head offers it; the trial drivers ask for a sliver of it

PLACEHOLDER = "EDIT-ME"  # values in cluster/ that each user must replace
GPU_LIMIT = "nvidia.com/gpu"
RAY_IMAGE = re.compile(
    r"^rayproject/(?P<repo>ray|ray-ml):(?P<version>\d+\.\d+\.\d+)(?:-py3\d+)?(?:-(?P<flavor>[\w.]+))?$"
)


@dataclass(frozen=True)
class Finding:
    level: Literal["error", "warning"]
    message: str


@dataclass(frozen=True)
class WorkerGroup:
    """A launcher worker node type or a KubeRay worker group."""

    name: str
    gpus: int
    min_workers: int
    max_workers: int
    image: str | None
    spot: bool = False
    cpus: float | None = None  # None: not declared (Ray detects them on the node)


@dataclass(frozen=True)
class ClusterSummary:
    """What ssl-tune needs to know about one cluster definition."""

    kind: str  # "ray up (aws)", "RayCluster", "RayJob"
    name: str
    head_gpus: int
    head_resources: dict[str, float]
    head_image: str | None
    workers: tuple[WorkerGroup, ...]
    autoscaling: bool

    def describe(self) -> str:
        head = "CPU only" if self.head_gpus == 0 else f"{self.head_gpus} GPUs"
        if DRIVER_RESOURCE in self.head_resources:
            head += f", {DRIVER_RESOURCE}"
        groups = ", ".join(
            f"{w.name} {w.gpus} GPU{'s' if w.gpus != 1 else ''} x {w.min_workers}..{w.max_workers}"
            + (" spot" if w.spot else "")
            for w in self.workers
        )
        images = sorted({i for i in (self.head_image, *(w.image for w in self.workers)) if i})
        return (
            f"{self.kind} '{self.name}': head {head}; workers {groups or 'none'}; "
            f"autoscaling {'on' if self.autoscaling else 'OFF'}; image {', '.join(images) or '?'}"
        )


@dataclass
class FileReport:
    path: Path
    clusters: list[ClusterSummary] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)

    @property
    def errors(self) -> list[str]:
        return [f.message for f in self.findings if f.level == "error"]

    @property
    def warnings(self) -> list[str]:
        return [f.message for f in self.findings if f.level == "warning"]

    def error(self, message: str) -> None:
        self.findings.append(Finding("error", message))

    def warn(self, message: str) -> None:
        self.findings.append(Finding("warning", message))


def installed_ray_version() -> str:
    return version("ray")


# --- files -----------------------------------------------------------------------------------------


def check_file(path: str | Path, trial: TrialShape | None = None) -> FileReport:
    """Check one launcher YAML or KubeRay manifest, and that it can run one `trial` if given; problems are
    findings, never exceptions."""
    report = FileReport(Path(path))
    try:
        docs = [d for d in yaml.safe_load_all(Path(path).read_text()) if d is not None]
    except OSError as err:
        report.error(f"cannot read: {err.strerror or err}")
        return report
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        report.error(f"not valid YAML{where}: {getattr(err, 'problem', None) or err}")
        return report
    if not docs or not all(isinstance(d, dict) for d in docs):
        report.error("expected a YAML mapping (a `ray up` config) or Kubernetes objects")
        return report
    if len(docs) == 1 and "provider" in docs[0]:
        check_launcher(docs[0], report, trial)
    elif all("kind" in d for d in docs):
        check_kuberay(docs, report, trial)
    else:
        report.error("neither a `ray up` config (no 'provider') nor Kubernetes objects (no 'kind')")
        return report
    placeholders = [p for p, v in _strings(docs if len(docs) > 1 else docs[0]) if PLACEHOLDER in v]
    if placeholders:
        shown = ", ".join(placeholders[:3]) + (", ..." if len(placeholders) > 3 else "")
        report.warn(f"{len(placeholders)} value(s) still hold {PLACEHOLDER} placeholders: {shown}")
    return report


def _strings(node: Any, path: str = "") -> Iterator[tuple[str, str]]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _strings(value, f"{path}.{key}" if path else str(key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _strings(value, f"{path}[{i}]")
    elif isinstance(node, str):
        yield path, node


# --- ray up launcher configs -----------------------------------------------------------------------


def prepare_and_validate(config: dict[str, Any]) -> dict[str, Any]:
    """Ray's offline half of `ray up`: prepare_config then validate_config. Raises what Ray raises."""
    from ray.autoscaler._private.util import prepare_config, validate_config

    logging.getLogger("ray.autoscaler").setLevel(logging.WARNING)  # "setting max workers ..." chatter
    prepared = prepare_config(json.loads(json.dumps(config)))  # a deep copy: Ray edits in place
    validate_config(prepared)
    return prepared


def check_launcher(
    config: dict[str, Any], report: FileReport, trial: TrialShape | None = None
) -> dict[str, Any] | None:
    """Validate a `ray up` config with Ray, then apply the ssl-tune rules. Returns the prepared config."""
    import jsonschema

    provider = config.get("provider")
    if not isinstance(provider, dict) or not provider.get("type"):
        report.error("provider.type is missing")
        return None
    try:
        prepared = prepare_and_validate(config)
    except jsonschema.ValidationError as err:
        where = ".".join(str(p) for p in err.absolute_path) or "top level"
        report.error(f"{where}: {err.message}")
        return None
    except NotImplementedError:
        report.error(f"provider.type: unknown provider '{provider['type']}'")
        return None
    except (ValueError, RuntimeError, KeyError, TypeError, AssertionError) as err:
        report.error(f"Ray rejects this config: {str(err) or type(err).__name__}")
        return None
    summary = launcher_summary(prepared)
    report.clusters.append(summary)
    apply_rules(summary, report)
    if trial is not None:
        check_trial_fits(summary, trial, report)
    return prepared


def launcher_summary(prepared: dict[str, Any]) -> ClusterSummary:
    docker = prepared.get("docker") or {}
    types = prepared["available_node_types"]
    head_name = prepared["head_node_type"]
    head = types[head_name]
    workers = tuple(
        WorkerGroup(
            name=name,
            gpus=int(spec["resources"].get("GPU", 0)),
            min_workers=int(spec.get("min_workers", 0)),
            max_workers=int(spec.get("max_workers", 0)),
            image=(spec.get("docker") or {}).get("worker_image") or docker.get("worker_image") or docker.get("image"),
            spot=_is_spot(prepared["provider"]["type"], spec.get("node_config") or {}),
            cpus=spec["resources"].get("CPU"),
        )
        for name, spec in types.items()
        if name != head_name
    )
    return ClusterSummary(
        kind=f"ray up ({prepared['provider']['type']})",
        name=str(prepared.get("cluster_name", "")),
        head_gpus=int(head["resources"].get("GPU", 0)),
        head_resources=dict(head["resources"]),
        head_image=docker.get("head_image") or docker.get("image"),
        workers=workers,
        autoscaling=any(w.max_workers > w.min_workers for w in workers),
    )


def _is_spot(provider: str, node_config: dict[str, Any]) -> bool:
    if provider == "aws":
        return (node_config.get("InstanceMarketOptions") or {}).get("MarketType", "").lower() == "spot"
    if provider == "gcp":
        scheduling = node_config.get("scheduling") or {}
        items = scheduling if isinstance(scheduling, list) else [scheduling]
        return any(
            isinstance(s, dict) and (s.get("preemptible") or str(s.get("provisioningModel", "")).upper() == "SPOT")
            for s in items
        )
    if provider == "azure":
        return str((node_config.get("azure_arm_parameters") or {}).get("priority", "")).lower() == "spot"
    return False


# --- KubeRay manifests -----------------------------------------------------------------------------


def check_kuberay(docs: list[dict[str, Any]], report: FileReport, trial: TrialShape | None = None) -> None:
    ray_docs = [d for d in docs if d.get("kind") in ("RayCluster", "RayJob")]
    if not ray_docs:
        report.error("no RayCluster or RayJob in this file")
        return
    for doc in ray_docs:
        kind = doc["kind"]
        name = str((doc.get("metadata") or {}).get("name", "?"))
        where = f"{kind} {name}"
        if doc.get("apiVersion") != "ray.io/v1":
            report.error(f"{where}: apiVersion is {doc.get('apiVersion')!r}, expected 'ray.io/v1' (KubeRay >= 1.0)")
            continue
        spec = doc.get("spec")
        if not isinstance(spec, dict):
            report.error(f"{where}: spec is missing")
            continue
        if kind == "RayJob":
            if not str(spec.get("entrypoint") or "").strip():
                report.error(f"{where}: spec.entrypoint is missing")
            if spec.get("shutdownAfterJobFinishes") is not True:
                report.warn(f"{where}: shutdownAfterJobFinishes is not true: the cluster keeps running (and billing)")
            if "rayClusterSpec" not in spec:
                if not spec.get("clusterSelector"):
                    report.error(f"{where}: needs spec.rayClusterSpec (or a clusterSelector naming a running cluster)")
                continue
            spec, where = spec["rayClusterSpec"], f"{where}: rayClusterSpec"
            if not isinstance(spec, dict):
                report.error(f"{where} is not a mapping")
                continue
        summary = _kuberay_summary(kind, name, spec, where, report)
        if summary is not None:
            report.clusters.append(summary)
            if summary.autoscaling:
                options = spec.get("autoscalerOptions") or {}
                if options.get("version") != "v2":
                    report.warn(f"{where}: autoscalerOptions.version is not v2 (autoscaler v1 is in use)")
            else:
                report.warn(f"{where}: enableInTreeAutoscaling is not true: GPU worker groups will not scale")
            apply_rules(summary, report, where=f"{where}: ")
            if trial is not None:
                check_trial_fits(summary, trial, report, where=f"{where}: ")


def _kuberay_summary(
    kind: str, name: str, spec: dict[str, Any], where: str, report: FileReport
) -> ClusterSummary | None:
    errors_before = len(report.errors)
    cluster_version = spec.get("rayVersion")
    if cluster_version is None:
        report.warn(f"{where}: rayVersion is missing")

    head = spec.get("headGroupSpec")
    if not isinstance(head, dict):
        report.error(f"{where}: headGroupSpec is missing")
        return None
    head_image, head_gpus = _ray_container(head, f"{where}: headGroupSpec", report)
    head_params = head.get("rayStartParams") or {}
    head_gpus = max(head_gpus, _int_param(head_params, "num-gpus", f"{where}: headGroupSpec", report) or 0)
    head_resources = _resources_param(head_params, f"{where}: headGroupSpec", report)
    head_cpus = _int_param(head_params, "num-cpus", f"{where}: headGroupSpec", report)
    if head_cpus is None:
        head_cpus = _container_cpus(head)
    if head_cpus is not None:
        head_resources["CPU"] = head_cpus

    workers = []
    for i, group in enumerate(spec.get("workerGroupSpecs") or []):
        label = f"{where}: workerGroupSpecs[{i}]"
        if not isinstance(group, dict) or not group.get("groupName"):
            report.error(f"{label}: groupName is missing")
            continue
        label += f" ({group['groupName']})"
        bounds = {}
        for key, default in (("minReplicas", 0), ("maxReplicas", None), ("replicas", None)):
            value = group.get(key, default)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
                report.error(f"{label}: {key} must be a non-negative integer, not {value!r}")
                value = None
            bounds[key] = value
        low, high, replicas = bounds["minReplicas"], bounds["maxReplicas"], bounds["replicas"]
        if high is None:
            report.error(f"{label}: maxReplicas is missing")
            continue
        if low is not None and low > high:
            report.error(f"{label}: minReplicas {low} > maxReplicas {high}")
        if replicas is not None and low is not None and not low <= replicas <= high:
            report.warn(f"{label}: replicas {replicas} is outside [{low}, {high}]")
        image, gpus = _ray_container(group, label, report)
        declared = _int_param(group.get("rayStartParams") or {}, "num-gpus", label, report)
        if declared is not None and declared != gpus:
            report.error(f"{label}: rayStartParams num-gpus {declared} but the container has {GPU_LIMIT}: {gpus}")
        cpus = _int_param(group.get("rayStartParams") or {}, "num-cpus", label, report)
        cpus = _container_cpus(group) if cpus is None else cpus
        workers.append(WorkerGroup(group["groupName"], gpus, low or 0, high, image, cpus=cpus))

    for image in (head_image, *(w.image for w in workers)):
        match = RAY_IMAGE.match(image or "")
        if cluster_version and match and match["version"] != cluster_version:
            report.error(f"{where}: rayVersion {cluster_version} but image {image} runs Ray {match['version']}")
    if len(report.errors) > errors_before:
        return None
    return ClusterSummary(
        kind=kind,
        name=name,
        head_gpus=head_gpus,
        head_resources=head_resources,
        head_image=head_image,
        workers=tuple(workers),
        autoscaling=spec.get("enableInTreeAutoscaling") is True,
    )


def _ray_container(group: dict[str, Any], where: str, report: FileReport) -> tuple[str | None, int]:
    """The image and GPU limit of a group's Ray container (the first container, as KubeRay assumes)."""
    containers = _containers(group)
    if not containers or not isinstance(containers[0], dict):
        report.error(f"{where}: template.spec.containers is empty")
        return None, 0
    container = containers[0]
    if not container.get("image"):
        report.error(f"{where}: the Ray container has no image")
    resources = container.get("resources") or {}
    gpus = 0
    for section in ("limits", "requests"):
        value = (resources.get(section) or {}).get(GPU_LIMIT)
        if value is None:
            continue
        try:
            gpus = max(gpus, int(str(value)))
        except ValueError:
            report.error(f"{where}: resources.{section}.{GPU_LIMIT} {value!r} is not a whole number of GPUs")
    return container.get("image"), gpus


def _containers(group: dict[str, Any]) -> list[Any]:
    return ((group.get("template") or {}).get("spec") or {}).get("containers") or []


def _container_cpus(group: dict[str, Any]) -> int | None:
    """The CPUs KubeRay gives Ray without num-cpus: the Ray container's cpu limit, else its request, rounded up."""
    containers = _containers(group)
    resources = (containers[0].get("resources") or {}) if containers and isinstance(containers[0], dict) else {}
    for section in ("limits", "requests"):
        match = re.fullmatch(r"(\d+(?:\.\d*)?)(m?)", str((resources.get(section) or {}).get("cpu", "")).strip())
        if match and float(match[1]) > 0:
            return math.ceil(float(match[1]) / (1000 if match[2] else 1) - 1e-9)
    return None


def _int_param(params: dict[str, Any], key: str, where: str, report: FileReport) -> int | None:
    if key not in params:
        return None
    try:
        return int(str(params[key]))
    except ValueError:
        report.error(f"{where}: rayStartParams {key} {params[key]!r} is not an integer")
        return None


def _resources_param(params: dict[str, Any], where: str, report: FileReport) -> dict[str, float]:
    """rayStartParams.resources, a string holding a quoted JSON object: '"{\\"name\\": 1}"'."""
    raw = params.get("resources")
    if raw is None:
        return {}
    text = str(raw).strip()
    if len(text) >= 2 and text[0] == text[-1] == '"':
        text = text[1:-1].replace('\\"', '"')
    try:
        value = json.loads(text)
        if not isinstance(value, dict):
            raise ValueError
        return {str(k): float(v) for k, v in value.items()}
    except (ValueError, TypeError):
        report.error(f'{where}: rayStartParams resources {raw!r} is not a JSON object (write \'"{{\\"name\\": 1}}"\')')
        return {}


# --- the ssl-tune rules, for both kinds -------------------------------------------------------------


def apply_rules(summary: ClusterSummary, report: FileReport, where: str = "") -> None:
    ray_version = installed_ray_version()
    if summary.head_gpus > 0:
        report.error(
            f"{where}the head declares GPU: {summary.head_gpus}; it runs the sweep driver and must get no GPU work"
        )
    if DRIVER_RESOURCE not in summary.head_resources:
        report.warn(
            f"{where}the head does not offer the '{DRIVER_RESOURCE}' resource, so trial drivers may land on workers"
        )
    gpu_groups = [w for w in summary.workers if w.gpus > 0]
    if not gpu_groups:
        report.warn(f"{where}no GPU worker type: trials will train on CPUs")
    for w in gpu_groups:
        if w.min_workers > 0:
            report.warn(
                f"{where}{w.name} keeps {w.min_workers} GPU node(s) running even when idle (min {w.min_workers})"
            )
    for w in summary.workers:
        if w.min_workers > w.max_workers:
            report.error(f"{where}{w.name}: min_workers {w.min_workers} > max_workers {w.max_workers}")
    images = {summary.head_image} | {w.image for w in summary.workers}
    gpu_images = {w.image for w in gpu_groups}
    for image in sorted(i for i in images if i):
        match = RAY_IMAGE.match(image)
        if match is None:
            report.warn(f"{where}image {image} is not a rayproject/ray image: it must run Ray {ray_version}")
        elif match["repo"] == "ray-ml":
            report.error(f"{where}image {image}: the rayproject/ray-ml images stopped at Ray 2.49; use rayproject/ray")
        elif match["version"] != ray_version:
            report.error(
                f"{where}image {image} runs Ray {match['version']} but ssl-tune is installed with Ray {ray_version}"
            )
        elif image in gpu_images and not re.fullmatch(r"gpu|cu\d+", match["flavor"] or ""):
            report.error(f"{where}GPU workers run image {image}: use a -gpu or -cuXXX tag")


# --- does one trial of a search space fit? ----------------------------------------------------------


@dataclass(frozen=True)
class TrialShape:
    """What one trial asks of the cluster: `workers` Ray Train workers of `cpus_per_worker` CPUs; one worker
    takes `gpus` (a share of one GPU, or one), more workers take one whole GPU each (`gpus` is 0 or `workers`)."""

    workers: int
    gpus: float
    cpus_per_worker: float

    @property
    def gpus_per_worker(self) -> float:
        return self.gpus if self.workers == 1 else min(self.gpus, 1.0)

    def describe(self) -> str:
        gpu = f"{self.gpus_per_worker:g} GPU" if self.gpus else "no GPU"
        return f"{_count(self.workers, 'worker')} x ({gpu}, {_count(self.cpus_per_worker, 'CPU')})"


def _count(n: float | None, unit: str) -> str:
    return f"{'?' if n is None else f'{n:g}'} {unit}{'' if n == 1 else 's'}"


def trial_shape(
    space: str | Path | None = None,
    workers_per_trial: int | None = None,
    gpus_per_trial: float | None = None,
    cpus_per_worker: float | None = None,
) -> TrialShape:
    """A trial's shape: the space file's `sweep` section (defaults without one), then the given overrides,
    checked as `ssl-tune sweep` checks them. Raises UsageError."""
    from pydantic import ValidationError

    from ssl_tune.config import describe_validation_error
    from ssl_tune.errors import UsageError
    from ssl_tune.tune.space import SweepSettings, load_space

    settings = load_space(space).sweep if space is not None else SweepSettings()
    given = {
        "workers_per_trial": workers_per_trial,
        "gpus_per_trial": gpus_per_trial,
        "cpus_per_worker": cpus_per_worker,
    }
    try:
        settings = SweepSettings.model_validate(
            {**settings.model_dump(), **{k: v for k, v in given.items() if v is not None}}
        )
    except ValidationError as err:
        raise UsageError(describe_validation_error(err)) from None
    return TrialShape(settings.workers_per_trial, settings.gpus_per_trial, settings.cpus_per_worker)


def check_trial_fits(summary: ClusterSummary, trial: TrialShape, report: FileReport, where: str = "") -> None:
    """An error when no worker type (or, for CPU trials, the head) can run one trial. Undeclared CPUs never fail."""
    asks = f"{where}space asks {trial.describe()} per trial"
    cpus = trial.cpus_per_worker
    groups = [w for w in summary.workers if w.max_workers > 0]  # a type capped at 0 nodes runs nothing
    if trial.gpus:
        groups = [w for w in groups if w.gpus > 0]
        if not groups:
            report.error(f"{asks}; no worker type has a GPU")
        elif trial.workers == 1 and not any(w.gpus >= trial.gpus and _fits(w.cpus, cpus) for w in groups):
            offered = "; ".join(f"{w.name}: {_count(w.gpus, 'GPU')}, {_count(w.cpus, 'CPU')}" for w in groups)
            report.error(f"{asks}; no worker type has a GPU and >= {cpus:g} CPUs ({offered})")
        elif trial.workers > 1:
            # workers a node can host: one per GPU, as its CPUs allow
            slots = {w.name: min(w.gpus, _slots(w.cpus, cpus, w.gpus)) for w in groups}
            capacity = sum(slots[w.name] * w.max_workers for w in groups)
            if capacity < trial.workers:
                used = ", ".join(f"{w.name} x {w.max_workers}" for w in groups if slots[w.name]) or "none"
                report.error(
                    f"{asks}; the worker types offer at most {_count(capacity, 'GPU')} with >= {cpus:g} CPUs ({used})"
                )
        return
    nodes = [(w.name, w.cpus, w.max_workers) for w in groups]
    head_cpus = summary.head_resources.get("CPU")
    if head_cpus != 0:  # a head that declares no CPU takes no trial; undeclared ones are unknown
        nodes.append(("head", head_cpus, 1))
    if any(n_cpus is None for _, n_cpus, _ in nodes):
        return
    capacity = sum(_slots(n_cpus, cpus, trial.workers) * count for _, n_cpus, count in nodes)
    if capacity < trial.workers:
        offered = ", ".join(f"{name}: {_count(n_cpus, 'CPU')}" for name, n_cpus, _ in nodes) or "no node type"
        report.error(f"{asks}; the node types offer at most {_count(capacity, 'worker')} of {cpus:g} CPUs ({offered})")


def _fits(node_cpus: float | None, cpus: float) -> bool:
    return node_cpus is None or node_cpus >= cpus - 1e-9


def _slots(node_cpus: float | None, cpus: float, unknown: int) -> int:
    """How many workers of `cpus` CPUs a node holds; `unknown` where its CPUs are not declared."""
    return unknown if node_cpus is None else math.floor(node_cpus / cpus + 1e-9)
