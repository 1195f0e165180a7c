"""Flower server strategies that consume synthetic sets, and the baselines they are compared with.

Importing the package registers ``fedcondense``, ``fedcondense-iterative``, ``hybrid``,
``fedavg-corrected``, ``fedavg`` and ``fedprox`` in :data:`STRATEGIES`.
"""

from strategies import baselines, corrected, fedcondense  # noqa: E402,F401  (registers the strategies)
from strategies.registry import STRATEGIES, Plan, register_strategy

__all__ = ["STRATEGIES", "Plan", "register_strategy"]
