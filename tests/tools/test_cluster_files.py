"""cluster/: the `ray up` YAMLs pass Ray's own offline validation, the KubeRay manifests have the fields that
matter, and `ssl-tune cluster check` reports bad files in one line with exit code 2."""

from __future__ import annotations

import json
import os
import re
import socket
from pathlib import Path

import pytest
import yaml

from ssl_tune.cli import main
from ssl_tune.tools.cluster_check import installed_ray_version, launcher_summary, prepare_and_validate
from tests.helpers import REPO

CLUSTER = REPO / "cluster"
LAUNCHERS = ["aws.yaml", "gcp.yaml", "azure.yaml"]
KUBERAY = ["kuberay-cluster.yaml", "kuberay-job.yaml"]
IMAGE = re.compile(r"^rayproject/ray:(\d+\.\d+\.\d+)-py3\d+-(gpu|cu\d+)$")


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """No cloud credentials and no network: any connection attempt fails the test."""
    for var in list(os.environ):
        if var.startswith(("AWS_", "GOOGLE_", "GCLOUD", "CLOUDSDK_", "AZURE_")):
            monkeypatch.delenv(var)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.aws, ~/.config/gcloud, ~/.azure

    def refuse(*args, **kwargs):
        raise AssertionError(f"network access during offline validation: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


def load(name: str) -> dict:
    return yaml.safe_load((CLUSTER / name).read_text())


# --- ray up YAMLs ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", LAUNCHERS)
def test_launcher_passes_rays_offline_validation(name, offline):
    from ray.autoscaler._private.util import prepare_config, validate_config

    raw = load(name)
    prepared = prepare_config(json.loads(json.dumps(raw)))
    validate_config(prepared)  # raises on any schema or cross-field error

    assert prepared["provider"]["type"] == name.removesuffix(".yaml")
    types = prepared["available_node_types"]
    head = types[prepared["head_node_type"]]
    # a CPU head that runs the drivers: no GPU and no CPU for Train workers, the driver resource
    assert head["resources"]["GPU"] == 0 and head["resources"]["CPU"] == 0
    assert head["resources"]["ssl_tune_driver"] >= 100
    workers = {n: t for n, t in types.items() if n != prepared["head_node_type"]}
    gpus = sorted(t["resources"]["GPU"] for t in workers.values())
    assert len(gpus) >= 2 and gpus[0] == 1 and gpus[-1] > 1, gpus  # a 1-GPU type and a multi-GPU type
    for spec in workers.values():
        assert spec["min_workers"] == 0 and 0 < spec["max_workers"] <= prepared["max_workers"]
        assert spec["resources"]["CPU"] > 0
    assert prepared["max_workers"] <= 16 and 0 < prepared["idle_timeout_minutes"] <= 30

    image = prepared["docker"]["image"]
    assert "worker_image" not in prepared["docker"] and "head_image" not in prepared["docker"]
    match = IMAGE.match(image)
    assert match and match[1] == installed_ray_version(), image
    # ssl-tune installed at the pinned versions on every node; the dashboard only on the head's localhost
    assert any("-c ~/ssl-tune/constraints.txt ~/ssl-tune" in c for c in prepared["setup_commands"])
    assert prepared["file_mounts"] == {"~/ssl-tune": "."}
    head_start = " ".join(prepared["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in head_start and "0.0.0.0" not in head_start


@pytest.mark.parametrize("name", LAUNCHERS)
def test_launcher_spot_option_is_valid(name, offline):
    """The commented spot/preemptible lines, switched on, still pass Ray's validation and mean spot."""
    text = (CLUSTER / name).read_text()
    provider = name.removesuffix(".yaml")
    if provider == "aws":
        text, n = re.subn(r"(?m)^(\s*)# (InstanceMarketOptions: \{MarketType: spot\})$", r"\1\2", text)
    elif provider == "azure":
        text, n = re.subn(r"(?m)^(\s*)# (priority: Spot|evictionPolicy: Delete|billingProfile: .*)$", r"\1\2", text)
    else:
        spot = re.search(r"(?m)^\s*# (scheduling: \{provisioningModel: SPOT.*\})$", text)
        assert spot
        text, n = re.subn(r"(?m)^(\s*)scheduling: \{onHostMaintenance: TERMINATE\}$", rf"\1{spot[1]}", text)
    assert n >= 2
    summary = launcher_summary(prepare_and_validate(yaml.safe_load(text)))
    assert all(w.spot for w in summary.workers if w.gpus > 0)
    assert not any(w.spot for w in launcher_summary(prepare_and_validate(load(name))).workers)  # off by default


@pytest.mark.parametrize("name", LAUNCHERS + KUBERAY)
def test_cluster_files_hold_no_credentials_and_mark_edits(name):
    text = (CLUSTER / name).read_text()
    assert not re.search(r"(?i)secret|password|aws_access_key|private_key\s*:\s*-----", text)
    assert not re.search(r"AKIA[0-9A-Z]{16}", text)  # an AWS access key id
    assert "EDIT" in text  # the places a user must edit are marked


# --- KubeRay ---------------------------------------------------------------------------------------


def _resources(params: dict) -> dict:
    return json.loads(params["resources"].strip('"').replace('\\"', '"'))


@pytest.mark.parametrize("name", KUBERAY)
def test_kuberay_fields_that_matter(name):
    (doc,) = list(yaml.safe_load_all((CLUSTER / name).read_text()))
    assert doc["apiVersion"] == "ray.io/v1"
    assert doc["metadata"]["annotations"]["ray.io/overwrite-container-cmd"] == "true"
    spec = doc["spec"] if doc["kind"] == "RayCluster" else doc["spec"]["rayClusterSpec"]
    assert spec["rayVersion"] == installed_ray_version()
    assert spec["enableInTreeAutoscaling"] is True and spec["autoscalerOptions"]["version"] == "v2"

    head = spec["headGroupSpec"]
    assert head["rayStartParams"]["num-gpus"] == "0" and head["rayStartParams"]["num-cpus"] == "0"
    assert _resources(head["rayStartParams"])["ssl_tune_driver"] >= 100
    (head_container,) = head["template"]["spec"]["containers"]
    assert "nvidia.com/gpu" not in head_container["resources"]["limits"]

    gpu_limits = []
    for group in spec["workerGroupSpecs"]:
        (container,) = group["template"]["spec"]["containers"]
        limits = container["resources"]["limits"]
        gpu_limits.append(int(limits["nvidia.com/gpu"]))
        assert group["minReplicas"] == 0 and group["replicas"] == 0 and group["maxReplicas"] > 0
        assert limits == container["resources"]["requests"]
        assert "$KUBERAY_GEN_RAY_START_CMD" in container["args"][0] and "ssl-tune" in container["args"][0]
    assert sorted(gpu_limits)[0] == 1 and sorted(gpu_limits)[-1] > 1
    for container in [head_container] + [g["template"]["spec"]["containers"][0] for g in spec["workerGroupSpecs"]]:
        match = IMAGE.match(container["image"])
        assert match and match[1] == spec["rayVersion"], container["image"]


def test_rayjob_runs_a_sweep_on_the_rayclusters_spec_and_shuts_down():
    cluster, job = load("kuberay-cluster.yaml"), load("kuberay-job.yaml")
    assert job["kind"] == "RayJob" and cluster["kind"] == "RayCluster"
    assert job["spec"]["shutdownAfterJobFinishes"] is True and job["spec"]["ttlSecondsAfterFinished"] >= 0
    entrypoint = job["spec"]["entrypoint"]
    assert entrypoint.startswith("ssl-tune sweep ") and re.search(r"--storage (s3|gs)://", entrypoint)
    assert job["spec"]["rayClusterSpec"] == cluster["spec"]  # one cluster definition, two ways to run it


# --- ssl-tune cluster check ------------------------------------------------------------------------


def test_cluster_check_accepts_every_shipped_file(capsys, offline):
    files = [str(CLUSTER / n) for n in LAUNCHERS + KUBERAY]
    assert main(["cluster", "check", *files]) == 0
    out, err = capsys.readouterr()
    ok_lines = [line for line in out.splitlines() if ": ok: " in line]
    assert len(ok_lines) == len(files)
    assert all("head CPU only, ssl_tune_driver" in line and "GPUs x 0..2" in line for line in ok_lines)
    assert "error" not in err and "EDIT-ME placeholders" in err  # the user is reminded what to fill in


def _variant(tmp_path: Path, name: str, old: str, new: str) -> str:
    text = (CLUSTER / name).read_text()
    assert old in text, old
    path = tmp_path / f"bad-{name}"
    path.write_text(text.replace(old, new, 1))
    return str(path)


BAD = [
    ("aws.yaml", "resources: {CPU: 8, GPU: 1}", "", "available_node_types.gpu_1x: 'resources' is a required property"),
    ("gcp.yaml", "max_workers: 10", "max_workers: ten", "max_workers: 'ten' is not of type 'integer'"),
    ("azure.yaml", "GPU: 0, ssl_tune_driver", "GPU: 1, ssl_tune_driver", "the head declares GPU: 1"),
    ("aws.yaml", "ray:2.60.0-py311-gpu", "ray:2.59.0-py311-gpu", "runs Ray 2.59.0 but ssl-tune is installed with"),
    ("gcp.yaml", "rayproject/ray:2.60.0", "rayproject/ray-ml:2.60.0", "ray-ml images stopped at Ray 2.49"),
    ("aws.yaml", "type: aws", "type: aws2", "unknown provider 'aws2'"),
    ("kuberay-cluster.yaml", "minReplicas: 0", "minReplicas: 9", "(gpu-1x): minReplicas 9 > maxReplicas 8"),
    ("kuberay-cluster.yaml", "apiVersion: ray.io/v1", "apiVersion: ray.io/v1alpha1", "expected 'ray.io/v1'"),
    ("kuberay-job.yaml", 'rayVersion: "2.60.0"', 'rayVersion: "2.59.0"', "rayVersion 2.59.0 but image"),
    ("kuberay-job.yaml", "nvidia.com/gpu: 4}", "nvidia.com/gpu: four}", "'four' is not a whole number of GPUs"),
]


@pytest.mark.parametrize(("name", "old", "new", "expected"), BAD)
def test_cluster_check_rejects_bad_files_in_one_line(tmp_path, capsys, offline, name, old, new, expected):
    bad = _variant(tmp_path, name, old, new)
    good = str(CLUSTER / name)
    assert main(["cluster", "check", good, bad]) == 2
    out, err = capsys.readouterr()
    assert f"{good}: ok: " in out and f"{bad}: ok" not in out
    errors = [line for line in err.splitlines() if ": error: " in line]
    assert errors and all(line.startswith(f"{bad}: error: ") for line in errors)
    assert expected in errors[0], errors
    assert "Traceback" not in err


def test_cluster_check_unreadable_and_foreign_files(tmp_path, capsys):
    (tmp_path / "broken.yaml").write_text("provider: [aws\n")
    (tmp_path / "other.yaml").write_text("name: not a cluster\n")
    (tmp_path / "cm.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n")
    files = [tmp_path / "broken.yaml", tmp_path / "other.yaml", tmp_path / "cm.yaml", tmp_path / "missing.yaml"]
    assert main(["cluster", "check", *map(str, files)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 4
    assert "not valid YAML (line 2" in err[0]
    assert "neither a `ray up` config" in err[1]
    assert "no RayCluster or RayJob" in err[2]
    assert "cannot read" in err[3]


# --- ssl-tune cluster check --space: can the worker types run one trial of the space? -------------------


def _cluster_variant(tmp_path: Path, name: str, edit) -> str:
    """A shipped file, loaded, edited in place by `edit`, written to tmp_path."""
    (doc,) = list(yaml.safe_load_all((CLUSTER / name).read_text()))
    edit(doc)
    path = tmp_path / f"variant-{name}"
    path.write_text(yaml.safe_dump(doc))
    return str(path)


def _one_gpu_type(doc: dict) -> None:
    types = doc["available_node_types"]
    del types["gpu_4x"]
    types["gpu_1x"]["max_workers"] = 2


def _check(capsys, *args: str) -> tuple[int, list[str], list[str]]:
    """Exit code, ok lines and error lines of `ssl-tune cluster check ARGS`."""
    code = main(["cluster", "check", *args])
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, [x for x in out.splitlines() if ": ok: " in x], [x for x in err.splitlines() if ": error: " in x]


def test_cluster_check_shipped_files_fit_the_shipped_space(capsys, offline):
    files = [str(CLUSTER / n) for n in LAUNCHERS + KUBERAY]
    code, ok, errors = _check(capsys, *files, "--space", str(REPO / "search_spaces" / "simclr.yaml"))
    assert code == 0 and not errors
    assert len(ok) == len(files) and all(x.endswith("fits a trial of 1 worker x (0.25 GPU, 2 CPUs)") for x in ok)


def test_cluster_check_flags_a_multi_gpu_trial_beyond_the_worker_types(tmp_path, capsys, offline):
    from tests.helpers import write_space

    cluster = _cluster_variant(tmp_path, "aws.yaml", _one_gpu_type)
    big = write_space(tmp_path / "ddp.yaml", sweep={"workers_per_trial": 4, "gpus_per_trial": 4, "cpus_per_worker": 2})
    code, ok, errors = _check(capsys, cluster, "--space", str(big))
    assert code == 2 and not ok
    assert errors == [
        f"{cluster}: error: space asks 4 workers x (1 GPU, 2 CPUs) per trial; the worker types offer at most "
        "2 GPUs with >= 2 CPUs (gpu_1x x 2)"
    ]
    # the same file runs a trial on a quarter of a GPU
    small = write_space(tmp_path / "small.yaml", sweep={"gpus_per_trial": 0.25, "cpus_per_worker": 2})
    code, ok, errors = _check(capsys, cluster, "--space", str(small))
    assert code == 0 and not errors and ok[0].endswith("fits a trial of 1 worker x (0.25 GPU, 2 CPUs)")
    # and two workers, one GPU each, over its two nodes; a type capped at 0 nodes offers nothing
    assert _check(capsys, cluster, "--space", str(small), "--workers-per-trial", "2", "--gpus-per-trial", "2")[0] == 0
    capped = _cluster_variant(tmp_path, "aws.yaml", lambda d: d["available_node_types"]["gpu_4x"].update(max_workers=0))
    code, ok, errors = _check(capsys, capped, "--space", str(big), "--cpus-per-worker", "13")
    assert code == 2 and len(errors) == 1  # gpu_1x has 8 CPUs, gpu_4x no node
    assert errors[0].endswith("the worker types offer at most 0 GPUs with >= 13 CPUs (none)")


def _kuberay_128_cpus(doc: dict) -> None:
    doc["spec"]["workerGroupSpecs"][1]["rayStartParams"] = {"num-cpus": "128"}  # num-cpus wins over the limit


@pytest.mark.parametrize(
    ("name", "edit", "cpus_4x"),
    [
        ("aws.yaml", None, 48),  # node type resources
        ("kuberay-cluster.yaml", None, 40),  # the container's cpu limit
        ("kuberay-cluster.yaml", _kuberay_128_cpus, 128),  # rayStartParams num-cpus
    ],
)
def test_cluster_check_flags_more_cpus_than_any_worker_type_has(tmp_path, capsys, offline, name, edit, cpus_4x):
    from tests.helpers import write_space

    cluster = _cluster_variant(tmp_path, name, edit) if edit else str(CLUSTER / name)
    gpu = write_space(tmp_path / "gpu.yaml", sweep={"gpus_per_trial": 0.5, "cpus_per_worker": 100})
    cpu = write_space(tmp_path / "cpu.yaml", sweep={"cpus_per_worker": 100})
    sep = "_" if name == "aws.yaml" else "-"
    for space, expected in [
        (gpu, f"space asks 1 worker x (0.5 GPU, 100 CPUs) per trial; no worker type has a GPU and >= 100 CPUs "
              f"(gpu{sep}1x: 1 GPU, 8 CPUs; gpu{sep}4x: 4 GPUs, {cpus_4x} CPUs)"),
        (cpu, f"space asks 1 worker x (no GPU, 100 CPUs) per trial; the node types offer at most 0 workers of 100 "
              f"CPUs (gpu{sep}1x: 8 CPUs, gpu{sep}4x: {cpus_4x} CPUs)"),
    ]:  # fmt: skip
        code, ok, errors = _check(capsys, cluster, "--space", str(space))
        if cpus_4x >= 100:
            assert code == 0 and not errors and ok
        else:
            assert code == 2 and len(errors) == 1 and errors[0].endswith(expected), errors
    # a CPU-only trial that a type holds passes
    assert _check(capsys, cluster, "--space", str(cpu), "--cpus-per-worker", "8")[0] == 0


def test_cluster_check_flags_a_gpu_trial_on_a_cluster_without_gpus(tmp_path, capsys, offline):
    def no_gpus(doc: dict) -> None:
        for name in ("gpu_1x", "gpu_4x"):
            doc["available_node_types"][name]["resources"]["GPU"] = 0

    cluster = _cluster_variant(tmp_path, "gcp.yaml", no_gpus)
    code, ok, errors = _check(capsys, cluster, "--gpus-per-trial", "1")
    assert code == 2 and not ok
    assert errors == [f"{cluster}: error: space asks 1 worker x (1 GPU, 1 CPU) per trial; no worker type has a GPU"]


def test_cluster_check_space_errors_are_one_line(tmp_path, capsys):
    code = main(["cluster", "check", str(CLUSTER / "aws.yaml"), "--workers-per-trial", "2", "--gpus-per-trial", "3"])
    assert code == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert "a trial of 2 workers takes one whole GPU per worker" in line
    assert main(["cluster", "check", str(CLUSTER / "aws.yaml"), "--space", str(tmp_path / "none.yaml")]) == 2
