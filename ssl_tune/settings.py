"""The base of every user-facing settings model (run config, augmentation, method and search-space keys)."""

from __future__ import annotations

import types
from typing import Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, ValidationInfo, field_validator


def accepts_bool(annotation: Any) -> bool:
    """Whether a field of this type may hold True/False (containers and models decide for themselves)."""
    if annotation is bool or annotation is Any:
        return True
    origin = get_origin(annotation)
    if origin in (Union, types.UnionType):
        return any(accepts_bool(a) for a in get_args(annotation))
    if origin is Literal:
        return any(isinstance(a, bool) for a in get_args(annotation))
    return annotation not in (int, float, str, type(None))


class Settings(BaseModel):
    """Unknown keys, inf/NaN, and a boolean where a number is expected (`epochs: yes`) are errors."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_for_a_number(cls, value: Any, info: ValidationInfo) -> Any:
        if isinstance(value, bool) and not accepts_bool(cls.model_fields[info.field_name].annotation):
            raise ValueError(f"expected a number, not the boolean {value}")
        return value
