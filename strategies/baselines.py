"""Flower's own FedAvg and FedProx, wired to fedcond's clients, and the condensed-warm-start hybrid.

The baselines are ``flwr.serverapp.strategy.FedAvg``/``FedProx`` unchanged: same model, same
partitions, and clients train locally for ``federated.local_epochs`` epochs per round. Evaluation
happens on the server's test set, so client-side evaluation is off.
"""

from __future__ import annotations

from collections.abc import Iterable

from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord
from flwr.serverapp import Grid
from flwr.serverapp.strategy import FedAvg, FedProx

from fedcond.federated import wire
from strategies.context import ServerContext
from strategies.fedcondense import FedCondense
from strategies.registry import Plan, register_strategy
from strategies.uploads import UploadLog


def _sampling(context: ServerContext) -> dict[str, object]:
    n = context.config.federated.num_clients
    return {"fraction_train": 1.0, "fraction_evaluate": 0.0, "min_train_nodes": 1, "min_available_nodes": n}


@register_strategy("fedavg")
def build_fedavg(context: ServerContext) -> Plan:
    """Flower's FedAvg, every client training locally each round."""
    return Plan(FedAvg(**_sampling(context)), context.config.federated.rounds, context.message_config(wire.FIT_TASK))


@register_strategy("fedprox")
def build_fedprox(context: ServerContext) -> Plan:
    """Flower's FedProx with ``federated.proximal_mu``."""
    f = context.config.federated
    strategy = FedProx(proximal_mu=f.proximal_mu, **_sampling(context))
    return Plan(strategy, f.rounds, context.message_config(wire.FIT_TASK))


class CondensedWarmStart(FedAvg):
    """Round 1 is one-shot FedCondense (the global model trained on the clients' synthetic sets);
    rounds 2.. are FedAvg from that model.

    Parameters
    ----------
    context
        The run's config, test set and server-side trainer.
    **kwargs
        Flower's ``FedAvg`` arguments (sampling fractions, minimum nodes).
    """

    def __init__(self, context: ServerContext, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.warm = FedCondense(context)

    @property
    def log(self) -> UploadLog:
        """The warm-start round's uploads."""
        return self.warm.log

    @property
    def rejected(self) -> list[dict[str, object]]:
        return self.warm.rejected

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        if server_round == 1:
            warm_config = ConfigRecord({**config, wire.TASK_KEY: wire.CONDENSE_TASK})
            return self.warm.configure_train(server_round, arrays, warm_config, grid)
        return super().configure_train(server_round, arrays, config, grid)

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        if server_round == 1:
            return self.warm.aggregate_train(server_round, replies)
        return super().aggregate_train(server_round, replies)


@register_strategy("hybrid")
def build_hybrid(context: ServerContext) -> Plan:
    """One-shot FedCondense as the first round, FedAvg after it."""
    strategy = CondensedWarmStart(context, **_sampling(context))
    return Plan(strategy, context.config.federated.rounds, context.message_config(wire.FIT_TASK), uploads=strategy.log)
