"""The discrepancy registry: register a function by name, look it up, bind its parameters."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, TypeVar

import torch

from fedcond.errors import ConfigError
from fedcond.registry import Registry
from fedcond.values import InvalidOption, UnknownOption, bind_options

#: An embedding ``[n, d]`` or a list of per-layer parameter gradients.
Features = torch.Tensor | list[torch.Tensor]
#: ``fn(real, synthetic, *, <keyword-only params with defaults>) -> scalar tensor``.
Discrepancy = Callable[..., torch.Tensor]
D = TypeVar("D", bound=Discrepancy)

FEATURE_KINDS = ("embedding", "gradients")
DISCREPANCIES: Registry[Discrepancy] = Registry("discrepancy")
# Kept beside the registry so a registered function stays the plain function it was.
_ACCEPTS: dict[str, str] = {}
_REAL_SUMMARIES: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {}


def register_discrepancy(
    name: str,
    *,
    accepts: str = "embedding",
    real_summary: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> Callable[[D], D]:
    """Decorator registering ``fn(real, synthetic, *, ...)`` under ``name``.

    ``accepts`` is the feature kind it compares (``"embedding"`` or ``"gradients"``); the config
    checks it against the feature map's kind. Every keyword-only parameter needs a default, so a
    config may leave any of them out. ``real_summary`` (optional) shrinks real features to a
    smaller tensor the discrepancy gives the same value on, e.g. their mean for linear MMD: the
    condenser's cached real statistics then cost one row per class instead of thousands.
    """
    if accepts not in FEATURE_KINDS:
        raise ValueError(f"discrepancy {name!r}: accepts must be one of {FEATURE_KINDS}, got {accepts!r}")

    def decorator(fn: D) -> D:
        missing = [p.name for p in _keyword_params(fn) if p.default is inspect.Parameter.empty]
        if missing:
            raise ValueError(f"discrepancy {name!r}: keyword-only parameters need defaults: {', '.join(missing)}")
        DISCREPANCIES.register(name)(fn)
        _ACCEPTS[name] = accepts
        if real_summary is not None:
            _REAL_SUMMARIES[name] = real_summary
        return fn

    return decorator


def discrepancy_accepts(name: str) -> str:
    """``"embedding"`` or ``"gradients"``: the feature kind the discrepancy ``name`` compares."""
    DISCREPANCIES.get(name)  # a ConfigError listing the choices for an unknown name
    return _ACCEPTS[name]


def summarise_real(name: str, real: torch.Tensor) -> torch.Tensor:
    """``real`` reduced by the discrepancy's ``real_summary``; unchanged when it has none."""
    DISCREPANCIES.get(name)
    summary = _REAL_SUMMARIES.get(name)
    return real if summary is None else summary(real)


def build_discrepancy(name: str, **params: Any) -> Callable[[Features, Features], torch.Tensor]:
    """The discrepancy ``name`` with ``params`` bound, checked against its type hints.

    An unknown parameter, or a value of the wrong type or out of range, raises
    :class:`ConfigError` naming the parameter and what is valid. The result is a
    :func:`functools.partial`, so it pickles whenever the function does.
    """
    fn = DISCREPANCIES.get(name)
    try:
        bound = bind_options(fn, params, keyword_only=True)
    except UnknownOption as exc:
        valid = ", ".join(sorted(exc.accepted)) or "none"
        raise ConfigError(f"discrepancy {name!r} has no parameter {exc.name!r}; valid: {valid}") from None
    except InvalidOption as exc:
        raise ConfigError(
            f"discrepancy {name!r}: parameter {exc.name!r} must be {exc.expected}; got {exc.value!r}"
        ) from None
    return functools.partial(fn, **bound)


def check_embeddings(real: Any, synthetic: Any) -> None:
    """Raise ValueError unless both are ``[n, d]`` tensors with ``n >= 1`` and the same ``d``."""
    for which, features in (("real", real), ("synthetic", synthetic)):
        if not isinstance(features, torch.Tensor):
            raise ValueError(
                f"{which} features must be an embedding tensor [n, d], got {type(features).__name__} "
                "(a gradient feature map needs a discrepancy that accepts gradients)"
            )
        if features.ndim != 2 or features.shape[0] == 0:
            raise ValueError(f"{which} features must be [n, d] with n >= 1, got shape {tuple(features.shape)}")
    if real.shape[1] != synthetic.shape[1]:
        raise ValueError(f"real and synthetic features differ in width: {real.shape[1]} vs {synthetic.shape[1]}")


def _keyword_params(fn: Callable[..., Any]) -> list[inspect.Parameter]:
    return [p for p in inspect.signature(fn).parameters.values() if p.kind is inspect.Parameter.KEYWORD_ONLY]
