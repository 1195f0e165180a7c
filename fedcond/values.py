"""One value coercer for everything a config file sets: config keys and components' options.

Config keys, discrepancy parameters, feature-map parameters and model options all come from YAML
or ``--set key=value``, so they are all checked the same way: a value is matched against a type
hint and normalised, or rejected with a description of what the hint accepts. Numeric limits ride
along in ``Annotated`` metadata::

    cov_weight: Annotated[float, NonNegative] = 1.0

Callers word the one-line error (they know the key or the component); this module says what was
expected.
"""

from __future__ import annotations

import inspect
import math
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Union


@dataclass(frozen=True)
class Bound:
    """Limits on a number, attached to a hint with ``Annotated[float, Bound(...)]``: a lower
    one, and optionally an upper one (``high``, always inclusive)."""

    low: float
    inclusive: bool = False
    high: float | None = None

    def admits(self, value: float) -> bool:
        above = value >= self.low if self.inclusive else value > self.low
        return above and (self.high is None or value <= self.high)

    def __str__(self) -> str:
        text = f"{'>=' if self.inclusive else '>'} {self.low:g}"
        return text if self.high is None else f"{text} and <= {self.high:g}"


Positive = Bound(0.0)
NonNegative = Bound(0.0, inclusive=True)


class InvalidValue(ValueError):
    """A value that does not fit its hint.

    Parameters
    ----------
    expected
        What the hint accepts, in words ("an integer", "a list"), or ``None`` to use
        :func:`describe` of the hint.
    shown
        How to show the rejected value in a message: its ``repr`` for scalars, its type's name for
        a value of the wrong container kind.
    """

    def __init__(self, expected: str | None = None, shown: str | None = None) -> None:
        super().__init__(expected or "invalid value")
        self.expected = expected
        self.shown = shown


def coerce(value: Any, hint: Any) -> Any:
    """``value`` checked against ``hint`` and normalised; :class:`InvalidValue` when it does not fit.

    Parameters
    ----------
    value
        A value parsed from YAML or from a ``key=value`` override.
    hint
        A type hint: ``bool``, ``int``, ``float`` (finite; a numeric string too, since YAML 1.1
        reads ``1e-3`` as text), ``str``, ``None``, ``Any``, ``Literal``, unions, ``list[X]`` (any
        length), ``Sequence[X]`` / ``tuple[X, ...]`` (non-empty, returned as a tuple), ``dict``
        (a mapping), ``Annotated[X, Bound]`` and plain classes. A list may also be given as a
        comma-separated string (``--set condense.discrepancy_params.bandwidths=0.5,1,2``).
    """
    origin = typing.get_origin(hint)
    if hint is Any:
        return value
    if origin is Annotated:
        base, *metadata = typing.get_args(hint)
        value = coerce(value, base)
        if not all(bound.admits(value) for bound in metadata if isinstance(bound, Bound)):
            raise InvalidValue(None, repr(value))
        return value
    if origin in (Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        first: InvalidValue | None = None
        for option in options:
            if option is type(None):
                continue
            try:
                return coerce(value, option)
            except InvalidValue as exc:
                first = first or exc
        # One alternative besides None: its own message ("must be an integer"); several: all of them.
        real = [option for option in options if option is not type(None)]
        if len(real) == 1 and first is not None:
            raise InvalidValue(first.expected or describe(real[0]), first.shown)
        raise InvalidValue(None, repr(value))
    if origin is Literal:
        if any(value == choice and type(value) is type(choice) for choice in typing.get_args(hint)):
            return value
        raise InvalidValue(None, repr(value))
    if origin is list or hint is list:
        items = _as_list(value, non_empty=False)
        (item_hint,) = typing.get_args(hint) or (Any,)
        return [coerce(item, item_hint) for item in items]
    if origin in (tuple, Sequence):
        items = _as_list(value, non_empty=True)
        item_hint = typing.get_args(hint)[0]
        try:
            return tuple(coerce(item, item_hint) for item in items)
        except InvalidValue:
            raise InvalidValue(None, repr(value)) from None  # "a non-empty list, each item ..."
    if origin is dict or hint is dict or origin is Mapping:
        if not isinstance(value, dict):
            raise InvalidValue("a mapping", _typename(value))
        return dict(value)
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise InvalidValue(None, repr(value))
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise InvalidValue(None, repr(value))
    if hint is float:
        return _as_float(value)
    if hint is str:
        if isinstance(value, str):
            return value
        raise InvalidValue(None, repr(value))
    if hint is type(None):
        if value is None:
            return None
        raise InvalidValue(None, repr(value))
    if isinstance(hint, type) and not isinstance(value, hint):
        raise InvalidValue(None, repr(value))
    return value


def describe(hint: Any) -> str:
    """What ``hint`` accepts, in words, for error messages."""
    origin = typing.get_origin(hint)
    if origin is Annotated:
        base, *metadata = typing.get_args(hint)
        bounds = [str(bound) for bound in metadata if isinstance(bound, Bound)]
        return " ".join([describe(base), *bounds])
    if origin in (Union, types.UnionType):
        options = [option for option in typing.get_args(hint) if option is not type(None)]
        text = " or ".join(describe(option) for option in options)
        return text + (" or null" if len(options) < len(typing.get_args(hint)) else "")
    if origin is Literal:
        choices = [repr(choice) for choice in typing.get_args(hint)]
        return choices[0] if len(choices) == 1 else f"one of {', '.join(choices)}"
    if origin is list or hint is list:
        return "a list"
    if origin in (tuple, Sequence):
        return f"a non-empty list, each item {describe(typing.get_args(hint)[0])}"
    if origin in (dict, Mapping) or hint is dict:
        return "a mapping"
    names = {bool: "true or false", int: "an integer", float: "a number", str: "a string", type(None): "null", Any: "anything"}
    return names.get(hint, getattr(hint, "__name__", str(hint)))


def expected_text(error: InvalidValue, hint: Any) -> str:
    """What ``hint`` accepts, as :class:`InvalidValue` ``error`` says it or :func:`describe` words it."""
    return error.expected or describe(hint)


# ---------------------------------------------------------------------- options of a callable
class UnknownOption(ValueError):
    """An option the callable does not take; ``accepted`` lists those it does."""

    def __init__(self, name: str, accepted: list[str]) -> None:
        super().__init__(name)
        self.name, self.accepted = name, accepted


class InvalidOption(ValueError):
    """An option whose value does not fit the callable's annotation."""

    def __init__(self, name: str, hint: Any, value: Any, error: InvalidValue) -> None:
        super().__init__(name)
        self.name, self.hint, self.value, self.error = name, hint, value, error

    @property
    def expected(self) -> str:
        return expected_text(self.error, self.hint)


def option_names(fn: Callable[..., Any], *, exclude: Sequence[str] = (), keyword_only: bool = False) -> list[str]:
    """The named parameters of ``fn`` (a class: of its ``__init__``) a config may set."""
    kinds = (inspect.Parameter.KEYWORD_ONLY,) if keyword_only else (
        inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD,
    )  # fmt: skip
    return [p.name for p in _parameters(fn) if p.kind in kinds and p.name not in exclude and p.name != "self"]


def bind_options(
    fn: Callable[..., Any],
    options: Mapping[str, Any],
    *,
    exclude: Sequence[str] = (),
    keyword_only: bool = False,
    passthrough: Sequence[str] = (),
) -> dict[str, Any]:
    """``options`` checked against ``fn``'s signature and annotations, values coerced.

    Parameters
    ----------
    fn
        A function or a class (its ``__init__`` is read).
    options
        Option names and values, usually from a config file.
    exclude
        Parameters that are not options (a model's ``channels``, a feature map's ``context``).
    keyword_only
        Only keyword-only parameters are options (discrepancies, feature maps).
    passthrough
        Options accepted without coercion (objects given in code, such as a trained ``network``).

    Raises
    ------
    UnknownOption
        An option ``fn`` does not take (unless ``fn`` takes ``**kwargs``).
    InvalidOption
        A value that does not fit its annotation.
    """
    accepted = option_names(fn, exclude=exclude, keyword_only=keyword_only)
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in _parameters(fn))
    hints = _hints(fn)
    bound: dict[str, Any] = {}
    for name, value in options.items():
        if name in passthrough and name in accepted:
            bound[name] = value
            continue
        if name not in accepted:
            if takes_any:
                bound[name] = value
                continue
            raise UnknownOption(name, [a for a in accepted if a not in passthrough])
        hint = hints.get(name)
        if hint is None:
            bound[name] = value
            continue
        try:
            bound[name] = coerce(value, hint)
        except InvalidValue as exc:
            raise InvalidOption(name, hint, value, exc) from None
    return bound


def bind_component_options(kind: str, name: str, fn: Callable[..., Any], options: Mapping[str, Any], **how: Any) -> dict[str, Any]:
    """:func:`bind_options` for the registered component ``name`` of ``kind`` (``"feature map"``,
    ``"real-side target"``), its failures raised as one-line :class:`~fedcond.errors.ConfigError`
    messages that name the component, the parameter and what is valid; ``how`` goes to :func:`bind_options`."""
    from fedcond.errors import ConfigError

    try:
        return bind_options(fn, options, **how)
    except UnknownOption as exc:
        raise ConfigError(
            f"{kind} {name!r} has no parameter {exc.name!r}; valid: {', '.join(exc.accepted) or 'none'}"
        ) from None
    except InvalidOption as exc:
        raise ConfigError(f"{kind} {name!r}: parameter {exc.name!r} must be {exc.expected}; got {exc.value!r}") from None


def _parameters(fn: Callable[..., Any]) -> list[inspect.Parameter]:
    target = fn.__init__ if isinstance(fn, type) else fn
    return list(inspect.signature(target).parameters.values())


def _hints(fn: Callable[..., Any]) -> dict[str, Any]:
    target = fn.__init__ if isinstance(fn, type) else fn
    try:
        return typing.get_type_hints(target, include_extras=True)
    except Exception:  # a hint naming something its module cannot resolve: check names only
        return {}


def _as_list(value: Any, *, non_empty: bool) -> list[Any]:
    if isinstance(value, str):  # "0.5,1,2" or "a, b" from a command-line override
        value = [item.strip() for item in value.split(",") if item.strip()]
    if not isinstance(value, (list, tuple)) or (non_empty and not value):
        raise InvalidValue(None if non_empty else "a list", repr(value) if non_empty else _typename(value))
    return list(value)


def _as_float(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise InvalidValue(None, repr(value))
    try:
        number = float(value)
    except ValueError:
        raise InvalidValue(None, repr(value)) from None
    if not math.isfinite(number):
        raise InvalidValue("a finite number", repr(value))
    return number


def _typename(value: Any) -> str:
    return "nothing" if value is None else type(value).__name__
