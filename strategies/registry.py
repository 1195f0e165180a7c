"""Strategies by name, so a config's ``federated.strategies`` can list any of them.

A builder takes the run's :class:`~strategies.context.ServerContext` and returns a
:class:`Plan`: the Flower strategy, how many rounds it runs and the config its train messages
carry. Register your own with ``@register_strategy("name")``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from fedcond.registry import Registry

if TYPE_CHECKING:
    from flwr.app import ConfigRecord
    from flwr.serverapp.strategy import Strategy

    from strategies.context import ServerContext
    from strategies.uploads import UploadLog


@dataclass
class Plan:
    """What the server runs for one strategy.

    Parameters
    ----------
    strategy
        The Flower strategy.
    num_rounds
        Server rounds it runs.
    train_config
        The ConfigRecord of its train messages (task and experiment config).
    uploads
        Where a strategy that receives synthetic sets logs them (None for FedAvg and FedProx);
        the ServerApp reports it.
    """

    strategy: Strategy
    num_rounds: int
    train_config: ConfigRecord
    uploads: UploadLog | None = None


Builder = Callable[["ServerContext"], Plan]
STRATEGIES: Registry[Builder] = Registry("strategy")


def register_strategy(name: str) -> Callable[[Builder], Builder]:
    return STRATEGIES.register(name)
