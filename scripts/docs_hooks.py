"""MkDocs hook: the reference pages are generated from the code at build time, so that they cannot drift.

A page holds a marker line and the hook puts the generated Markdown in its place:

    <!-- generated: cli -->              every command and flag, from `ssl_tune.cli.build_parser()`
    <!-- generated: config -->           every run-config key (augment.* too), from the pydantic models
    <!-- generated: space -->            every search-space key (asha.*, sweep.*) and the distributions
    <!-- generated: method NAME -->      a method's docstring (recipe, sources), keys, defaults, its space file

A key without a description, a flag without help, or an unknown marker fails the build.
"""

from __future__ import annotations

import argparse
import inspect
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, get_args

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

MARKER = re.compile(r"^<!-- generated: (\w+)(?: (\w+))? -->$", re.M)


def config_keys(model: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """(dotted key, FieldInfo) of a settings model, nested models' keys after their section's."""
    from pydantic import BaseModel

    for name, info in model.model_fields.items():
        yield prefix + name, info
        if inspect.isclass(info.annotation) and issubclass(info.annotation, BaseModel):
            yield from config_keys(info.annotation, f"{prefix}{name}.")


def _type(annotation: Any) -> str:
    text = getattr(annotation, "__name__", None) if inspect.isclass(annotation) else None
    text = text or str(annotation).replace("typing.", "")
    return re.sub(r"ssl_tune\.[\w.]+\.", "", text).replace("|", "\\|")


def _bounds(info: Any) -> str:
    symbols = {"gt": ">", "ge": "≥", "lt": "<", "le": "≤", "min_length": "length ≥"}
    found = []
    for item in info.metadata:
        for attr, symbol in symbols.items():
            value = getattr(item, attr, None)
            if value is not None:
                found.append(f"{symbol} {value:g}" if isinstance(value, float) else f"{symbol} {value}")
    return ", ".join(found)


def _default(info: Any) -> str:
    from pydantic import BaseModel
    from pydantic_core import PydanticUndefined

    if info.default_factory is not None:
        made = info.default_factory()
        return "see below" if isinstance(made, BaseModel) else f"`{made!r}`"
    return "required" if info.default is PydanticUndefined else f"`{info.default!r}`"


def key_table(model: Any, prefix: str = "", where: str = "") -> str:
    rows = ["| key | type | default | bounds | what |", "|---|---|---|---|---|"]
    for key, info in config_keys(model, prefix):
        if not info.description:
            raise ValueError(f"{where or model.__name__}: key '{key}' has no description (Field(description=...))")
        rows.append(f"| `{key}` | {_type(info.annotation)} | {_default(info)} | {_bounds(info)} | {info.description} |")
    return "\n".join(rows)


def config_reference() -> str:
    from ssl_tune.config import TrainConfig

    return key_table(TrainConfig)


def space_reference() -> str:
    from ssl_tune.tune import space

    distributions = [space.LogUniform, space.Uniform, space.IntRange, space.Categorical]
    parts = [key_table(space.SearchSpace), "", "Distributions (a `params:` or `conditional:` entry):", ""]
    for dist in distributions:
        kind = get_args(dist.model_fields["type"].annotation)[0]
        fields = ", ".join(f"`{k}`" for k in dist.model_fields if k != "type")
        doc = (dist.__doc__ or "").strip().splitlines()[0] if dist.__doc__ else ""
        parts.append(f"- `type: {kind}`: {fields}. {doc}".rstrip())
    return "\n".join(parts)


def _flag(action: argparse.Action, config_fields: dict[str, Any]) -> str:
    """A flag's table row; a flag without help text that sets a run-config key gets that key's description."""
    names = ", ".join(f"`{s}`" for s in action.option_strings) or f"`{action.dest.upper()}`"
    if action.option_strings and action.nargs != 0 and action.metavar != argparse.SUPPRESS:
        names += f" {action.metavar or action.dest.upper()}"
    helptext = action.help or ""
    if not helptext and action.dest in config_fields:
        helptext = f"{config_fields[action.dest].description} (config key `{action.dest}`)"
    if not helptext:
        raise ValueError(f"CLI: {names} has no help text (add_argument(..., help=...))")
    helptext = helptext.replace("%(default)s", str(action.default)).replace("|", "\\|")
    if action.choices and not isinstance(action, argparse._SubParsersAction):
        helptext += f" (one of: {', '.join(map(str, action.choices))})"
    return f"| {names} | {helptext} |"


def _commands(parser: argparse.ArgumentParser, path: str) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield f"{path} {name}", sub
                yield from _commands(sub, f"{path} {name}")


def cli_reference() -> str:
    from ssl_tune.cli import build_parser
    from ssl_tune.config import TrainConfig

    parts = []
    for path, parser in _commands(build_parser(), "ssl-tune"):
        flags = [a for a in parser._actions if not isinstance(a, argparse._HelpAction | argparse._SubParsersAction)]
        parts += [f"## `{path}`", "", (parser.description or "").strip(), ""]
        if flags:
            parts += ["| flag | what |", "|---|---|", *(_flag(a, TrainConfig.model_fields) for a in flags), ""]
    return "\n".join(parts)


def method_page(name: str) -> str:
    from ssl_tune.methods import METHODS  # registers every method

    method = METHODS.get(name)
    module = sys.modules[method.__module__]
    spaces = [REPO / "search_spaces" / f"{name}.yaml", *sorted((REPO / "search_spaces").glob(f"{name}_vit*.yaml"))]
    defaults = "\n".join(f"- `{k}`: `{v!r}`" for k, v in method.train_defaults.items())
    vit = "\n".join(f"- `{k}`: `{v!r}`" for k, v in method.vit_defaults.items())
    vit_section = ["## ViT recipe", "", "Over the defaults above when the backbone is a ViT (`vit_*`):", "", vit, ""]
    return "\n".join(
        [
            "## Recipe and sources",
            "",
            f"From the docstring of `{method.__module__.replace('.', '/')}.py`:",
            "",
            *(f"> {line}" if line else ">" for line in (module.__doc__ or "").strip().splitlines()),
            "",
            "## Run-config defaults",
            "",
            f"What `method: {name}` sets under everything you give (flags, `--config`, `--set`):",
            "",
            defaults or "(none)",
            "",
            *(vit_section if vit else []),
            "## Its keys (`method_params.*`)",
            "",
            key_table(method.Params, "method_params.", where=name),
            "",
            *(line for path in spaces for line in _space_section(path)),
        ]
    )


def _space_section(path: Path) -> list[str]:
    return [f"## Search space `search_spaces/{path.name}`", "", "```yaml", path.read_text().strip(), "```", ""]


GENERATORS = {"cli": cli_reference, "config": config_reference, "space": space_reference}


def on_page_markdown(markdown: str, page: Any, **kwargs: Any) -> str:
    def generate(match: re.Match) -> str:
        kind, arg = match.group(1), match.group(2)
        if kind == "method" and arg:
            return method_page(arg)
        if kind in GENERATORS and not arg:
            return GENERATORS[kind]()
        raise ValueError(f"{page.file.src_path}: unknown marker {match.group(0)}")

    return MARKER.sub(generate, markdown)
