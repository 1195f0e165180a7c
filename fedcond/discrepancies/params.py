"""Numeric limits of discrepancy parameters (``Annotated[float, Positive]``).

Parameters come from YAML (``condense.discrepancy_params``), so a wrong value fails when the
discrepancy is built, not hundreds of iterations into a run. The checking is
:mod:`fedcond.values`, the coercer every config value goes through; this module keeps the names
discrepancy authors import.
"""

from fedcond.values import Bound, InvalidValue, NonNegative, Positive, coerce, describe

__all__ = ["Bound", "InvalidValue", "NonNegative", "Positive", "coerce", "describe"]
