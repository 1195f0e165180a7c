"""Flower server strategies that consume synthetic sets, and the baselines they are compared with.

Importing the package registers ``fedcondense``, ``fedcondense-iterative``, ``hybrid``,
``fedavg`` and ``fedprox`` in :data:`STRATEGIES`.
"""

from strategies.registry import STRATEGIES, Plan, register_strategy

from strategies import baselines, fedcondense  # noqa: E402,F401  (registers the strategies)

__all__ = ["STRATEGIES", "Plan", "register_strategy"]
