"""Bad sweep input is refused before Ray starts: exit 2, one line, nothing written."""

from __future__ import annotations

import socket

import pytest
import yaml

from ssl_tune.cli import main
from tests.helpers import TINY_FIXED

GOOD_PARAMS = {"lr": {"type": "loguniform", "low": 0.01, "high": 1.0}}

BAD_SPACES = {
    "malformed yaml": ("fixed: {method: simsiam\nparams: [", "is not valid YAML"),
    "not a mapping": ("- lr\n- wd\n", "must be a YAML mapping"),
    "unknown parameter": (
        {"params": {"learning_rate": {"type": "uniform", "low": 0.1, "high": 1}}},
        "unknown config key 'learning_rate'",
    ),
    "unknown method param": (
        {"params": {"method_params.tau": {"type": "uniform", "low": 0.1, "high": 1}}},
        "unknown config key 'method_params.tau'",
    ),
    "unknown method": ({"fixed": {**TINY_FIXED, "method": "simsiamese"}}, "unknown method 'simsiamese'"),
    "unknown method choice": (
        {"params": {"method": {"type": "categorical", "choices": ["simsiam", "nope"]}}},
        "unknown method 'nope'",
    ),
    "low > high": ({"params": {"lr": {"type": "uniform", "low": 1.0, "high": 0.1}}}, "low (1.0) > high (0.1)"),
    "log bound <= 0": ({"params": {"lr": {"type": "loguniform", "low": 0.0, "high": 1.0}}}, "params.lr"),
    "log int bound <= 0": (
        {"params": {"batch_size": {"type": "int", "low": 0, "high": 128, "log": True}}},
        "a log scale needs low > 0",
    ),
    "empty categorical": ({"params": {"batch_size": {"type": "categorical", "choices": []}}}, "params.batch_size"),
    "unknown distribution": ({"params": {"lr": {"type": "gaussian", "low": 0, "high": 1}}}, "params.lr"),
    "out-of-range value": (
        {"params": {"lr": {"type": "uniform", "low": -1.0, "high": 1.0}}},
        "config key 'lr': Input should be greater than 0",
    ),
    "conditional on a method not drawn": (
        {"conditional": {"byol": {"lr": {"type": "uniform", "low": 0.1, "high": 1}}}},
        "conditional section 'byol'",
    ),
    "zero samples in file": ({"sweep": {"num_samples": 0}}, "sweep.num_samples"),
    "boolean for a number": ({"sweep": {"num_samples": True}}, "expected a number, not the boolean True"),
    "boolean for a fixed number": ({"fixed": {**TINY_FIXED, "epochs": True}}, "expected a number, not the boolean"),
}


def _write(tmp_path, content) -> str:
    path = tmp_path / "space.yaml"
    if isinstance(content, str):
        path.write_text(content)
    else:
        space = {"fixed": dict(TINY_FIXED), "params": dict(GOOD_PARAMS)}
        for key, value in content.items():
            space[key] = value if key != "params" else {**GOOD_PARAMS, **value}
        path.write_text(yaml.safe_dump(space))
    return str(path)


def _assert_refused(code, capsys, expected, store):
    import ray

    err = capsys.readouterr().err
    assert code == 2, err
    assert err.count("\n") == 1 and expected in err, err
    assert "Traceback" not in err
    assert not store.exists()
    assert not ray.is_initialized()


@pytest.mark.parametrize("case", BAD_SPACES, ids=list(BAD_SPACES))
def test_bad_space_is_refused(case, tmp_path, capsys):
    content, expected = BAD_SPACES[case]
    store = tmp_path / "store"
    code = main(["sweep", "--space", _write(tmp_path, content), "--storage", str(store)])
    _assert_refused(code, capsys, expected, store)


def _closed_port() -> int:
    with socket.socket() as s:  # bound, never listening: a connection is refused
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


BAD_FLAGS = {
    "zero samples": (["--num-samples", "0"], "sweep.num_samples"),
    "negative samples": (["--num-samples", "-3"], "sweep.num_samples"),
    "gpus on a machine without GPU": (["--gpus-per-trial", "0.5"], "no GPU"),
    "4 GPUs for one worker": (["--gpus-per-trial", "4"], "train on one: use --workers-per-trial 4"),
    "two ranks on one GPU": (["--workers-per-trial", "2", "--gpus-per-trial", "1"], "one whole GPU per worker"),
    "half a GPU per rank": (["--workers-per-trial", "2", "--gpus-per-trial", "0.5"], "gpus_per_trial 2, or 0 for CPU"),
    "batch not divisible by workers": (["--workers-per-trial", "3"], "not divisible by 3 workers"),
    "zero reduction factor": (["--reduction-factor", "1"], "asha.reduction_factor"),
    "bad --set": (["--set", "epochs=0"], "config key 'epochs'"),
    "missing space file": (["--space", "/nonexistent/space.yaml"], "cannot read config"),
    "resume of nothing": (["--resume", "--name", "ghost"], "no sweep at"),
    "no cluster at --address": (["--address", f"127.0.0.1:{_closed_port()}"], "no Ray cluster answers at 127.0.0.1:"),
}


@pytest.mark.parametrize("case", BAD_FLAGS, ids=list(BAD_FLAGS))
def test_bad_flags_are_refused(case, tmp_path, capsys):
    args, expected = BAD_FLAGS[case]
    store = tmp_path / "store"
    space = _write(tmp_path, {})
    argv = ["sweep", "--space", space, "--storage", str(store), *args]
    if "--space" in args:  # the case gives its own
        argv = ["sweep", "--storage", str(store), *args]
    _assert_refused(main(argv), capsys, expected, store)


def test_existing_sweep_needs_resume(tmp_path, capsys):
    store = tmp_path / "store"
    (store / "taken").mkdir(parents=True)
    (store / "taken" / "keep.txt").write_text("precious")
    code = main(["sweep", "--space", _write(tmp_path, {}), "--storage", str(store), "--name", "taken"])
    assert code == 2 and "--resume" in capsys.readouterr().err
    assert (store / "taken" / "keep.txt").read_text() == "precious"
