"""Continual learning with condensed replay memory, for Avalanche.

:class:`CondensedBuffer` (the storage policy: what is kept) and the plugins that use it
(:class:`CondensedReplayPlugin`, :class:`CondensedGDumbPlugin`, :class:`CondensedDERPlugin`: when it
is used), and :class:`BalancedFinetunePlugin`, bias correction on any class-balanced memory. They are loaded
on first use: importing Avalanche takes seconds, and config validation only needs the method names.
"""

from __future__ import annotations

from typing import Any

_EXPORTS = {
    "CondensedBuffer": "fedcond.continual.storage",
    "CondensedReplayPlugin": "fedcond.continual.plugins",
    "CondensedGDumbPlugin": "fedcond.continual.plugins",
    "CondensedDERPlugin": "fedcond.continual.plugins",
    "BalancedFinetunePlugin": "fedcond.continual.plugins",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(_EXPORTS[name]), name)
