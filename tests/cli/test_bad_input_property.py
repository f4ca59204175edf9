"""Property test: malformed train configs and search spaces are refused with exit 2 and one line naming the key.

Hypothesis generates configs (`ssl-tune train --config FILE`) and spaces (`ssl-tune sweep --space FILE`) from
a valid one by one mutation: a wrong type, a missing or unknown key, a value out of range, NaN or infinity,
a huge number, an empty string, or a file of the wrong YAML shape. The bounds come from the pydantic models
themselves, so new fields are covered as they are added. Each case runs the real CLI in-process and must
fail before any data is loaded and before Ray starts, writing nothing and deleting nothing.
"""

from __future__ import annotations

import math
import tempfile
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import annotated_types as at
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from ssl_tune.cli import main
from ssl_tune.config import TrainConfig
from ssl_tune.data import DATASETS
from ssl_tune.methods import METHODS, get_method
from ssl_tune.models.backbones import BACKBONES
from ssl_tune.tune.space import AshaSettings, SweepSettings
from ssl_tune.views import AugmentConfig
from tests.helpers import TINY_FIXED

TRAIN_EXAMPLES = 300
SPACE_EXAMPLES = 300
PROPERTY = dict(
    deadline=None,
    database=None,  # nothing written into the working tree
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

TRAIN_BASE: dict[str, Any] = {**TINY_FIXED, "epochs": 1}
SPACE_PARAMS: dict[str, Any] = {"lr": {"type": "loguniform", "low": 0.01, "high": 1.0}}
REGISTRIES = {"method": set(METHODS), "backbone": set(BACKBONES), "dataset": set(DATASETS)}
SKIPPED_FIELDS = {"out"}  # --out on the command line overrides it
BOOL_WORDS = {"0", "off", "f", "false", "n", "no", "1", "on", "t", "true", "y", "yes"}  # pydantic reads these
HUGE_INTS = st.sampled_from([2**31, 2**32 + 1, 10**12, 2**63, 10**30, 10**100])
HUGE_FLOATS = st.sampled_from([1e12, 3.4e38, 1e300, 1.7976931348623157e308])
NON_FINITE = st.sampled_from([math.nan, math.inf, -math.inf])
WORDS = st.from_regex(r"\A[a-z][a-z0-9_]{0,11}\Z")
CONTAINERS = st.sampled_from([[], [1, 2], {}, {"a": 1}, [{"b": None}]])


@dataclass
class Case:
    content: Any  # a YAML document, or raw text when a str
    key: str  # what the one-line message must name
    what: str  # the mutation, for failure reports


# --- bad values for one field, from its pydantic annotation ---------------------------------------


def _bounds(metadata: list[Any]) -> dict[str, float]:
    out: dict[str, float] = {}
    for m in metadata:
        for name in ("gt", "ge", "lt", "le"):
            if isinstance(m, getattr(at, name.capitalize())):
                out[name] = getattr(m, name)
    return out


def _kind(annotation: Any) -> tuple[str, Any]:
    """'int', 'float', 'bool', 'literal', 'str', 'pair', 'model' or 'dict', and the literal's choices or the model."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)] or [annotation]
    base = args[0] if len(args) == 1 else annotation
    if typing.get_origin(base) is typing.Literal:
        return "literal", typing.get_args(base)
    if isinstance(base, type) and issubclass(base, BaseModel):
        return "model", base
    if typing.get_origin(base) is dict:
        return "dict", None
    if typing.get_origin(base) is tuple and typing.get_args(base) == (float, float):
        return "pair", None
    for kind in (bool, int, float, str):
        if base is kind:
            return kind.__name__, None
    raise AssertionError(f"no bad values for {annotation}")


def _out_of_range(kind: str, bounds: dict[str, float]) -> st.SearchStrategy:
    parts = []
    if kind == "int":
        if "gt" in bounds:
            parts.append(st.integers(max_value=int(bounds["gt"])))
        if "ge" in bounds:
            parts.append(st.integers(max_value=int(bounds["ge"]) - 1))
        if "lt" in bounds:
            parts.append(st.integers(min_value=math.ceil(bounds["lt"])))
        if "le" in bounds:
            parts.append(st.integers(min_value=int(bounds["le"]) + 1))
        parts.append(HUGE_INTS)
        parts.append(HUGE_INTS.map(lambda v: -v))
    else:
        finite = {"allow_nan": False, "allow_infinity": False}
        if "gt" in bounds:
            g = bounds["gt"]
            parts.append(st.floats(max_value=g, **finite).filter(lambda v, g=g: v <= g))
        if "ge" in bounds:
            g = bounds["ge"]
            parts.append(st.floats(max_value=g, exclude_max=True, **finite).filter(lambda v, g=g: v < g))
        if "lt" in bounds:
            g = bounds["lt"]
            parts.append(st.floats(min_value=g, **finite).filter(lambda v, g=g: v >= g))
        if "le" in bounds:
            g = bounds["le"]
            parts.append(st.floats(min_value=g, exclude_min=True, **finite).filter(lambda v, g=g: v > g))
        parts.append(HUGE_FLOATS)
        parts.append(HUGE_FLOATS.map(lambda v: -v))
    return st.one_of(parts)


def bad_values(name: str, annotation: Any, metadata: list[Any]) -> st.SearchStrategy:
    """Values that the field must refuse: never None (optional fields take it) and never a valid value."""
    kind, extra = _kind(annotation)
    wrong = st.one_of(CONTAINERS, st.just(""))
    if kind in ("int", "float"):
        letters = WORDS.filter(lambda w: w.lower() not in ("nan", "inf", "infinity") and not w.startswith("inf"))
        choices = [_out_of_range(kind, _bounds(metadata)), NON_FINITE, wrong, letters]
        if kind == "int":
            choices.append(st.floats(min_value=-1e6, max_value=1e6).filter(lambda v: v != int(v)))  # fractional
        return st.one_of(choices)
    if kind == "bool":
        not_bool_words = WORDS.filter(lambda w: w.lower() not in BOOL_WORDS)
        return st.one_of(wrong, not_bool_words, st.integers().filter(lambda v: v not in (0, 1)), NON_FINITE)
    if kind == "literal":
        return st.one_of(wrong, WORDS.filter(lambda w: w not in extra), st.integers(), NON_FINITE)
    if kind == "str":
        if name in REGISTRIES:
            names = REGISTRIES[name]
            return st.one_of(wrong, WORDS.filter(lambda w: w not in names), st.integers(), NON_FINITE)
        return st.one_of(CONTAINERS, st.integers(), st.floats(allow_nan=True))
    if kind == "pair":  # an ordered (low, high) pair, e.g. alpha_req_band: not a pair, unordered, non-finite
        shapes = st.sampled_from(["x", 0.5, [], [1.0], [0.1, 0.2, 0.3], {"low": 0.9}, [1.1, 0.9], [0.5, 0.5]])
        return st.one_of(shapes, st.tuples(NON_FINITE, st.just(1.0)).map(list), st.just([-1.0, 1.0]))
    if kind in ("model", "dict"):  # a section that is not a mapping
        return st.one_of(st.sampled_from([[], [1, 2], "", "text", 0, 3.5, True]), NON_FINITE)
    raise AssertionError(kind)


def fields_of(model: type[BaseModel], skip: set[str] = frozenset()) -> dict[str, Any]:
    return {n: f for n, f in model.model_fields.items() if n not in skip}


@st.composite
def bad_field(draw, model: type[BaseModel], skip: set[str] = frozenset()) -> tuple[str, Any]:
    fields = fields_of(model, skip)
    name = draw(st.sampled_from(sorted(fields)))
    info = fields[name]
    return name, draw(bad_values(name, info.annotation, info.metadata))


def unknown_key(model: type[BaseModel]) -> st.SearchStrategy:
    return WORDS.filter(lambda w: w not in model.model_fields)


def _with(base: dict[str, Any], path: list[str], value: Any) -> dict[str, Any]:
    """A deep copy of `base` with `value` at `path`; a value of _DELETE removes the key."""
    data = yaml.safe_load(yaml.safe_dump(base))
    node = data
    for part in path[:-1]:
        node = node.setdefault(part, {})
    if value is _DELETE:
        node.pop(path[-1], None)
    else:
        node[path[-1]] = value
    return data


_DELETE = object()
SIMSIAM_PARAMS = get_method("simsiam").Params


# --- train configs -----------------------------------------------------------------------------------


@st.composite
def bad_train_config(draw, base: dict[str, Any] = TRAIN_BASE, skip: frozenset[str] = frozenset()) -> Case:
    """A config dict with one thing wrong (used for train configs and a space's `fixed` section)."""
    skip = set(skip) | SKIPPED_FIELDS
    kind = draw(
        st.sampled_from(["field", "augment", "method_params", "unknown", "cross"] + ["field"] * 3),
    )
    if kind == "field":
        name, value = draw(bad_field(TrainConfig, skip))
        return Case(_with(base, [name], value), name, f"{name}={value!r}")
    if kind == "augment":
        name, value = draw(bad_field(AugmentConfig))
        return Case(_with(base, ["augment", name], value), f"augment.{name}", f"augment.{name}={value!r}")
    if kind == "method_params":
        name, value = draw(bad_field(SIMSIAM_PARAMS))
        key = f"method_params.{name}"
        return Case(_with(base, ["method_params", name], value), key, f"{key}={value!r}")
    if kind == "unknown":
        section = draw(st.sampled_from(["", "augment", "method_params"]))
        model = {"": TrainConfig, "augment": AugmentConfig, "method_params": SIMSIAM_PARAMS}[section]
        name = draw(unknown_key(model))
        path = [section, name] if section else [name]
        return Case(_with(base, path, draw(st.integers() | WORDS)), ".".join(path), f"unknown {path}")
    # values that are fine alone but not together
    which = draw(st.sampled_from(["warmup", "crop"]))
    if which == "warmup":
        epochs = draw(st.integers(1, 50))
        warmup = draw(st.floats(epochs, 100_000, exclude_min=True))
        data = _with(_with(base, ["epochs"], epochs), ["warmup_epochs"], warmup)
        return Case(data, "warmup_epochs", f"warmup {warmup} > epochs {epochs}")
    low = draw(st.floats(0.02, 1.0))
    high = draw(st.floats(0.01, low, exclude_max=True))
    data = _with(_with(base, ["augment", "crop_min_scale"], low), ["augment", "crop_max_scale"], high)
    return Case(data, "crop_min_scale", f"crop scales {low} > {high}")


WRONG_SHAPES = {
    "a list": "- epochs\n- 3\n",
    "a number": "42\n",
    "a string": "just some words\n",
    "a list of mappings": "- epochs: 3\n- lr: 0.1\n",
    "unclosed bracket": "epochs: [1, 2\nlr: 0.1\n",
    "bad indentation": "epochs: 3\n  lr: 0.1\n lr: 2\n",
    "a tab": "epochs:\t3\n\tlr: 0.1\n",
    "a python tag": "!!python/object/apply:os.system ['true']\n",
    "not UTF-8": b"epochs: \xff\xfe\n",
}
SHAPE_WORDS = ("mapping", "not valid YAML", "cannot read config")


def wrong_shape() -> st.SearchStrategy:
    return st.sampled_from(sorted(WRONG_SHAPES)).map(lambda k: Case(WRONG_SHAPES[k], SHAPE_WORDS, k))


# --- search spaces -------------------------------------------------------------------------------

SPACE_BASE: dict[str, Any] = {
    "fixed": dict(TINY_FIXED),
    "params": dict(SPACE_PARAMS),
    "asha": {"grace_period": 1, "reduction_factor": 3},
    "sweep": {"num_samples": 2, "cpus_per_worker": 1},
}
DIST_TYPES = ["loguniform", "uniform", "int", "categorical"]
DIST_KEYS = {"loguniform": ["low", "high"], "uniform": ["low", "high"], "int": ["low", "high"], "categorical": []}


@st.composite
def bad_distribution(draw) -> tuple[Any, str]:
    """A distribution that is wrong in itself (the key is a valid config key)."""
    case = draw(
        st.sampled_from(
            [
                "no type",
                "unknown type",
                "missing bound",
                "extra key",
                "bad bound",
                "order",
                "log <= 0",
                "int log",
                "bad step",
                "choices",
                "not a mapping",
            ]
        )
    )
    bound = st.floats(0.01, 1.0)
    if case == "no type":
        return {"low": 0.01, "high": 1.0}, case
    if case == "unknown type":
        return {"type": draw(WORDS.filter(lambda w: w not in DIST_TYPES)), "low": 0.01, "high": 1.0}, case
    if case == "missing bound":
        typ = draw(st.sampled_from(["loguniform", "uniform", "int"]))
        key = draw(st.sampled_from(DIST_KEYS[typ]))
        dist = {"type": typ, "low": 1, "high": 4}
        del dist[key]
        return dist, case
    if case == "extra key":
        return {
            "type": "loguniform",
            "low": 0.01,
            "high": 1.0,
            draw(WORDS.filter(lambda w: w not in ("type", "low", "high"))): 1,
        }, case
    if case == "bad bound":
        typ = draw(st.sampled_from(["loguniform", "uniform", "int"]))
        value = draw(st.one_of(NON_FINITE, CONTAINERS, WORDS, st.just("")))
        dist = {"type": typ, "low": 1, "high": 4}
        dist[draw(st.sampled_from(["low", "high"]))] = value
        return dist, case
    if case == "order":
        typ = draw(st.sampled_from(["loguniform", "uniform"]))
        a, b = sorted([draw(bound), draw(bound)])
        return {"type": typ, "low": b, "high": a}, case  # low >= high
    if case == "log <= 0":
        return {"type": "loguniform", "low": draw(st.floats(-1e6, 0.0)), "high": 1.0}, case
    if case == "int log":
        return {"type": "int", "low": draw(st.integers(-1000, 0)), "high": 8, "log": True}, case
    if case == "bad step":
        typ = draw(st.sampled_from(["uniform", "int"]))
        step = draw(st.one_of(st.integers(max_value=0), NON_FINITE, WORDS))
        return {"type": typ, "low": 1, "high": 4, "step": step}, case
    if case == "choices":
        choices = draw(st.one_of(st.just([]), st.just("abc"), st.just(5), st.lists(CONTAINERS, min_size=1)))
        return {"type": "categorical", "choices": choices}, case
    return draw(st.one_of(CONTAINERS, WORDS, st.integers())), case


@st.composite
def bad_space(draw) -> Case:
    kind = draw(
        st.sampled_from(
            [
                "fixed",
                "fixed",
                "distribution",
                "distribution",
                "param key",
                "param range",
                "float on int",
                "choice",
                "asha",
                "sweep",
                "section shape",
                "unknown section",
                "conditional",
            ]
        )
    )
    if kind == "fixed":  # a bad train config in the fixed settings (not a searched key, which would replace it)
        case = draw(bad_train_config(base=SPACE_BASE["fixed"], skip=frozenset(SPACE_PARAMS)))
        return Case(_with(SPACE_BASE, ["fixed"], case.content), case.key, f"fixed: {case.what}")
    if kind == "distribution":
        dist, what = draw(bad_distribution())
        name = draw(st.sampled_from(["lr", "weight_decay", "epochs", "method_params.pred_hidden_dim"]))
        return Case(_with(SPACE_BASE, ["params", name], dist), f"params.{name}", f"params.{name}: {what} {dist}")
    if kind == "param key":  # a searched key that no config has
        section = draw(st.sampled_from(["", "augment.", "method_params."]))
        model = {"": TrainConfig, "augment.": AugmentConfig, "method_params.": SIMSIAM_PARAMS}[section]
        name = section + draw(unknown_key(model))
        dist = {"type": "uniform", "low": 0.1, "high": 0.9}
        return Case(_with(SPACE_BASE, ["params", name], dist), name, f"unknown param {name}")
    if kind == "param range":  # a valid distribution whose range leaves the key's valid values
        name, low, high = draw(
            st.sampled_from(
                [
                    ("lr", -1.0, 1.0),
                    ("momentum", 0.5, 1.5),
                    ("weight_decay", 0.0, 2.0),
                    ("augment.hue", 0.1, 0.9),
                    ("knn_temperature", 0.0, 1.0),
                    ("augment.flip_prob", -0.5, 0.5),
                ]
            )
        )
        dist = {"type": "uniform", "low": low, "high": high}
        return Case(_with(SPACE_BASE, ["params", name], dist), name, f"range of {name}")
    if kind == "float on int":  # fine at both (integral) ends, fractional in between
        name = draw(st.sampled_from(["epochs", "knn_k", "method_params.proj_hidden_dim", "batch_size"]))
        dist = {"type": "uniform", "low": 1, "high": draw(st.integers(3, 12))}
        return Case(_with(SPACE_BASE, ["params", name], dist), name, f"uniform on int {name}")
    if kind == "choice":  # a bad choice between good ones
        name, good, bad = draw(
            st.sampled_from(
                [
                    ("batch_size", [64, 128], draw(WORDS)),
                    ("optimizer", ["sgd", "lars", "adamw"], "adam"),
                    ("epochs", [1, 2], 0),
                    ("augment.blur_prob", [0.0, 1.0], 1.5),
                ]
            )
        )
        dist = {"type": "categorical", "choices": [good[0], bad, good[1]]}
        return Case(_with(SPACE_BASE, ["params", name], dist), name, f"choice {bad!r} of {name}")
    if kind in ("asha", "sweep"):
        model = AshaSettings if kind == "asha" else SweepSettings
        if draw(st.booleans()):
            name = draw(unknown_key(model))
            return Case(_with(SPACE_BASE, [kind, name], 1), f"{kind}.{name}", f"unknown {kind}.{name}")
        name, value = draw(bad_field(model))
        return Case(_with(SPACE_BASE, [kind, name], value), f"{kind}.{name}", f"{kind}.{name}={value!r}")
    if kind == "section shape":
        section = draw(st.sampled_from(["fixed", "params", "conditional", "if_data_dir", "asha", "sweep"]))
        value = draw(st.sampled_from([[], [1, 2], "text", 3, 2.5, True]))
        return Case(_with(SPACE_BASE, [section], value), section, f"{section}={value!r}")
    if kind == "unknown section":
        name = draw(
            WORDS.filter(lambda w: w not in SPACE_BASE and w not in ("description", "conditional", "if_data_dir"))
        )
        return Case(_with(SPACE_BASE, [name], {"lr": 0.1}), name, f"section {name}")
    method = draw(WORDS.filter(lambda w: w not in METHODS) | st.sampled_from(sorted(METHODS)))
    body = {"lr": {"type": "uniform", "low": 0.1, "high": 0.9}}
    if method in METHODS:  # a conditional section for a method that is drawn, with a bad distribution in it
        body = {"lr": draw(bad_distribution())[0]}
    return Case(_with(SPACE_BASE, ["conditional", method], body), method, f"conditional {method}")


# --- running the CLI -----------------------------------------------------------------------------


def _write(path: Path, content: Any) -> None:
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif isinstance(content, str):
        path.write_text(content)
    else:
        path.write_text(yaml.safe_dump(content, sort_keys=False, allow_unicode=True))


def _snapshot(folder: Path) -> dict[str, bytes] | None:
    if not folder.exists():
        return None
    return {str(p.relative_to(folder)): p.read_bytes() if p.is_file() else b"" for p in sorted(folder.rglob("*"))}


def _check_refused(code: int, err: str, command: str, case: Case) -> None:
    context = f"{case.what}: exit {code}, stderr {err!r}"
    assert code == 2, context
    assert err.endswith("\n") and err.count("\n") == 1, context
    assert err.startswith(f"ssl-tune {command}: error: "), context
    assert "Traceback" not in err, context
    keys = case.key if isinstance(case.key, tuple) else (case.key,)
    assert any(k in err for k in keys), f"the message does not name {case.key!r}: {context}"
    assert len(err.split(": error: ", 1)[1].strip()) > len(keys[0]) + 8, f"no reason given: {context}"


@given(case=st.one_of(bad_train_config(), wrong_shape()), existing=st.booleans(), force=st.booleans())
@settings(max_examples=TRAIN_EXAMPLES, **PROPERTY)
def test_malformed_train_config_is_refused(case, existing, force, capsys):
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        config = tmp / "config.yaml"
        _write(config, case.content)
        out = tmp / "out"
        if existing:
            (out / "sub").mkdir(parents=True)
            (out / "keep.txt").write_text("precious")
            (out / "sub" / "checkpoint").write_bytes(b"\x00\x01")
        before = _snapshot(out)
        capsys.readouterr()
        argv = ["train", "--config", str(config), "--out", str(out), "--no-progress"]
        code = main([*argv, "--force"] if force else argv)
        captured = capsys.readouterr()
        _check_refused(code, captured.err, "train", case)
        assert captured.out == "", captured.out
        assert _snapshot(out) == before, f"{case.what}: --out changed"


@pytest.fixture(scope="module")
def ray_module():
    import ray

    return ray


@given(case=st.one_of(bad_space(), wrong_shape()), existing=st.booleans())
@settings(max_examples=SPACE_EXAMPLES, **PROPERTY)
def test_malformed_search_space_is_refused_before_ray_starts(case, existing, capsys, ray_module):
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        space = tmp / "space.yaml"
        _write(space, case.content)
        store = tmp / "store"
        if existing:  # a storage folder with another sweep in it
            (store / "earlier").mkdir(parents=True)
            (store / "earlier" / "sweep.yaml").write_text("precious")
        before = _snapshot(store)
        capsys.readouterr()
        code = main(["sweep", "--space", str(space), "--storage", str(store), "--name", "s"])
        captured = capsys.readouterr()
        _check_refused(code, captured.err, "sweep", case)
        assert _snapshot(store) == before, f"{case.what}: --storage changed"
        assert not ray_module.is_initialized(), f"{case.what}: Ray was started"


def test_the_unmutated_inputs_are_valid(tmp_path):
    """The bases the mutations start from pass validation (else every case would pass for the wrong reason)."""
    from ssl_tune.config import build_config
    from ssl_tune.tune.space import load_space

    build_config(TRAIN_BASE)
    path = tmp_path / "space.yaml"
    _write(path, SPACE_BASE)
    load_space(path)


@pytest.mark.parametrize("model", [TrainConfig, AugmentConfig, SweepSettings, AshaSettings])
def test_every_field_has_bad_values_to_draw(model):
    """Each field's type is one the generator knows: a new kind of field fails here, not at random in the
    property tests (which draw one field per example)."""
    for name, info in fields_of(model, SKIPPED_FIELDS).items():
        bad_values(name, info.annotation, info.metadata)
