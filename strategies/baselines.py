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

from strategies.context import ServerContext
from strategies.fedcondense import CONDENSE_TASK, FedCondense
from strategies.registry import Plan, register_strategy

#: The task a local-training message asks for.
FIT_TASK = "fit"


def _sampling(context: ServerContext) -> dict[str, object]:
    n = context.config.federated.num_clients
    return {"fraction_train": 1.0, "fraction_evaluate": 0.0, "min_train_nodes": 1, "min_available_nodes": n}


@register_strategy("fedavg")
def build_fedavg(context: ServerContext) -> Plan:
    return Plan(FedAvg(**_sampling(context)), context.config.federated.rounds, context.message_config(FIT_TASK))


@register_strategy("fedprox")
def build_fedprox(context: ServerContext) -> Plan:
    f = context.config.federated
    return Plan(FedProx(proximal_mu=f.proximal_mu, **_sampling(context)), f.rounds, context.message_config(FIT_TASK))


class CondensedWarmStart(FedAvg):
    """Round 1 is one-shot FedCondense (the global model trained on the clients' synthetic sets);
    rounds 2.. are FedAvg from that model."""

    def __init__(self, context: ServerContext, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.warm = FedCondense(context)

    @property
    def rejected(self) -> list[dict[str, object]]:
        return self.warm.rejected

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        if server_round == 1:
            return self.warm.configure_train(server_round, arrays, ConfigRecord({**config, "task": CONDENSE_TASK}), grid)
        return super().configure_train(server_round, arrays, config, grid)

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        if server_round == 1:
            return self.warm.aggregate_train(server_round, replies)
        return super().aggregate_train(server_round, replies)


@register_strategy("hybrid")
def build_hybrid(context: ServerContext) -> Plan:
    strategy = CondensedWarmStart(context, **_sampling(context))
    return Plan(strategy, context.config.federated.rounds, context.message_config(FIT_TASK))
