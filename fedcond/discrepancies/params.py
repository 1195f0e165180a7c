"""Check a discrepancy's keyword parameters against its type hints.

Parameters come from YAML (``condense.discrepancy_params``), so a wrong value should fail when
the discrepancy is built, not hundreds of iterations into a run. A function declares what it
accepts in its annotations; numeric limits ride along in ``Annotated`` metadata::

    cov_weight: Annotated[float, NonNegative] = 1.0
"""

from __future__ import annotations

import math
import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Union


@dataclass(frozen=True)
class Bound:
    """A lower limit on a number, attached to a hint with ``Annotated[float, Bound(...)]``."""

    low: float
    inclusive: bool = False

    def admits(self, value: float) -> bool:
        return value >= self.low if self.inclusive else value > self.low

    def __str__(self) -> str:
        return f"{'>=' if self.inclusive else '>'} {self.low:g}"


Positive = Bound(0.0)
NonNegative = Bound(0.0, inclusive=True)


class InvalidParam(ValueError):
    """A value that does not fit its hint; the caller turns it into a ConfigError."""


def coerce(value: Any, hint: Any) -> Any:
    """``value`` checked against ``hint`` and normalised (ints to floats, lists to tuples).

    Supported hints: ``bool``, ``int``, ``float`` (finite; also a numeric string, since YAML 1.1
    reads ``1e-3`` as text), ``str``, ``Literal``, unions, ``Sequence[X]`` / ``list[X]`` /
    ``tuple[X, ...]`` (non-empty; also a comma-separated string), ``Annotated[X, Bound]`` and
    plain classes. Raises :class:`InvalidParam` when ``value`` does not fit.
    """
    origin = typing.get_origin(hint)
    if origin is Annotated:
        base, *metadata = typing.get_args(hint)
        value = coerce(value, base)
        if not all(bound.admits(value) for bound in metadata if isinstance(bound, Bound)):
            raise InvalidParam
        return value
    if origin in (Union, types.UnionType):
        for option in typing.get_args(hint):
            try:
                return coerce(value, option)
            except InvalidParam:
                continue
        raise InvalidParam
    if origin is Literal:
        if any(value == choice and type(value) is type(choice) for choice in typing.get_args(hint)):
            return value
        raise InvalidParam
    if origin in (list, tuple, Sequence):
        if isinstance(value, str):  # "0.5,1,2" from a command-line override
            value = [item.strip() for item in value.split(",") if item.strip()]
        if not isinstance(value, (list, tuple)) or not value:
            raise InvalidParam
        items = [coerce(item, typing.get_args(hint)[0]) for item in value]
        return items if origin is list else tuple(items)
    if hint is float:
        return _as_float(value)
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise InvalidParam
    if hint is type(None):
        if value is None:
            return None
        raise InvalidParam
    if isinstance(hint, type) and not isinstance(value, hint):
        raise InvalidParam
    return value


def describe(hint: Any) -> str:
    """What ``hint`` accepts, in words, for error messages."""
    origin = typing.get_origin(hint)
    if origin is Annotated:
        base, *metadata = typing.get_args(hint)
        bounds = [str(bound) for bound in metadata if isinstance(bound, Bound)]
        return " ".join([describe(base), *bounds])
    if origin in (Union, types.UnionType):
        return " or ".join(describe(option) for option in typing.get_args(hint))
    if origin is Literal:
        choices = [repr(choice) for choice in typing.get_args(hint)]
        return choices[0] if len(choices) == 1 else f"one of {', '.join(choices)}"
    if origin in (list, tuple, Sequence):
        return f"a non-empty list, each item {describe(typing.get_args(hint)[0])}"
    names = {bool: "true or false", int: "an integer", float: "a number", str: "a string", type(None): "null"}
    return names.get(hint, getattr(hint, "__name__", str(hint)))


def _as_float(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise InvalidParam
    try:
        number = float(value)
    except ValueError:
        raise InvalidParam from None
    if not math.isfinite(number):
        raise InvalidParam
    return number
