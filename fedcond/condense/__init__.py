"""Condensation methods, registered by name: discrepancy matching and the coreset baselines.

Every method is a function ``(data, config, *, device, progress, checkpoint) -> SyntheticSet``
so the CLI, the Flower client and the Avalanche storage policy call them the same way.
"""

from fedcond.condense import coreset, matching  # noqa: F401  (registers the methods)
from fedcond.condense.api import condense
from fedcond.condense.registry import CONDENSE_METHODS, CondenseMethod, register_condense_method
from fedcond.condense.robustness import ROBUSTNESS_TERMS, RobustnessTerm, register_robustness

__all__ = [
    "CONDENSE_METHODS", "ROBUSTNESS_TERMS", "CondenseMethod", "RobustnessTerm", "condense", "register_condense_method",
    "register_robustness",
]  # fmt: skip
