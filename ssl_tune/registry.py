"""One registry type for everything chosen by name: methods, backbones, datasets.

>>> from ssl_tune.registry import Registry
>>> SHAPES = Registry[int]("shape")
>>> SHAPES.add("square", 4)
>>> SHAPES.get("square")
4
>>> SHAPES.unknown("circle")
"unknown shape 'circle' (choose from square)"
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Generic, TypeVar

from ssl_tune.errors import UsageError

T = TypeVar("T")


class Registry(Generic[T]):
    """Named entries of one kind; `get` of an unknown name is a UsageError listing the known ones."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}

    def add(self, name: str, entry: T) -> None:
        if name in self._entries:
            raise ValueError(f"{self.kind} '{name}' is registered twice")
        self._entries[name] = entry

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator: `@BACKBONES.register("resnet18")` over the entry."""

        def add(entry: T) -> T:
            self.add(name, entry)
            return entry

        return add

    def get(self, name: str) -> T:
        if name not in self._entries:
            raise UsageError(self.unknown(name))
        return self._entries[name]

    def unknown(self, name: object, among: Iterable[str] | None = None) -> str:
        """The one message for a name that is not registered (or not `among` the names allowed here)."""
        return f"unknown {self.kind} '{name}' (choose from {', '.join(sorted(among or self.names()))})"

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)

    def __getitem__(self, name: str) -> T:
        return self.get(name)
