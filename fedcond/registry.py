"""Name -> component registries, so a YAML config can name any component.

Mirrors timm's registries: a component registers itself with a decorator and the core looks it
up by name; a user adds one without touching the core::

    from fedcond.discrepancies import register_discrepancy

    @register_discrepancy("my-distance")
    def my_distance(real, synthetic): ...
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from fedcond.errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    """A named collection of components of one kind (e.g. ``"discrepancy"``)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str, *, overwrite: bool = False) -> Callable[[T], T]:
        """Decorator that registers ``obj`` under ``name`` and returns it unchanged."""

        def decorator(obj: T) -> T:
            if name in self._items and not overwrite:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._items[name] = obj
            return obj

        return decorator

    def get(self, name: str) -> T:
        """The component called ``name``; a :class:`ConfigError` listing the choices otherwise."""
        try:
            return self._items[name]
        except KeyError:
            raise ConfigError(
                f"unknown {self.kind} {name!r}; choose from: {', '.join(self.names())}"
            ) from None

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._items)
