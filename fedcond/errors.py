"""Exceptions with one-line messages that name the problem.

The CLI turns any :class:`FedcondError` into a single line on stderr and exit status 2,
so every message here must make sense on its own, without a traceback.
"""

from __future__ import annotations


class FedcondError(Exception):
    """Base class: a problem with the user's input, not a bug in fedcond."""


class ConfigError(FedcondError, ValueError):
    """An unknown config key, a value of the wrong type or out of range, an unknown name."""


class DatasetUnavailableError(FedcondError):
    """A dataset that is not on this machine; the message says how to get it."""


class DataError(FedcondError, ValueError):
    """Data that is present but malformed (a corrupt file, inconsistent arrays)."""


class SyntheticSetError(FedcondError, ValueError):
    """A synthetic set that fails validation: untrusted content is rejected, never repaired."""


class ModelRecordError(FedcondError, ValueError):
    """Model weights received from a client that do not fit the global model: other keys, shapes or
    dtypes, more bytes than those shapes need, or values that are not finite."""


def check(ok: bool, message: str) -> None:
    """Raise :class:`ConfigError` with ``message`` unless ``ok``: the shape of every config rule."""
    if not ok:
        raise ConfigError(message)


def check_choice(key: str, value: str, choices: tuple[str, ...]) -> None:
    """Raise :class:`ConfigError` unless ``value`` is one of ``choices``, naming ``key`` and the choices."""
    check(value in choices, f"{key} must be one of {', '.join(choices)}; got {value!r}")
