"""Flower's own FedAvg and FedProx, wired to fedcond's clients, and the condensed-warm-start hybrid.

The hybrid is fedcond's own: its averaging rounds check every reply before Flower's aggregator
(``federated.aggregator``: FedAvg, or Flower's FedMedian, FedTrimmedAvg, Krum, MultiKrum) sees it.

The baselines are ``flwr.serverapp.strategy.FedAvg``/``FedProx`` unchanged: same model, same
partitions, and clients train locally for ``federated.local_epochs`` epochs per round. Evaluation
happens on the server's test set, so client-side evaluation is off.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord
from flwr.common.logger import log
from flwr.serverapp import Grid
from flwr.serverapp.strategy import FedAvg, FedMedian, FedProx, FedTrimmedAvg, Krum, MultiKrum, Strategy

from fedcond.errors import ModelRecordError
from fedcond.federated import wire
from strategies.context import ServerContext
from strategies.fedcondense import FedCondense
from strategies.registry import Plan, register_strategy
from strategies.uploads import UploadLog, check_fit_reply, reply_partition

if TYPE_CHECKING:
    from fedcond.federated.config import FederatedConfig


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


#: Flower's aggregators by ``federated.aggregator``, each sampling every client like the baselines.
AVERAGING: dict[str, Callable[[FederatedConfig, dict[str, Any]], FedAvg]] = {
    "fedavg": lambda f, sampling: FedAvg(**sampling),
    "fedmedian": lambda f, sampling: FedMedian(**sampling),
    "fedtrimmedavg": lambda f, sampling: FedTrimmedAvg(beta=f.trim_beta, **sampling),
    "krum": lambda f, sampling: Krum(num_malicious_nodes=f.num_malicious_clients, **sampling),
    "multikrum": lambda f, sampling: MultiKrum(
        num_malicious_nodes=f.num_malicious_clients, num_nodes_to_select=f.multikrum_select, **sampling
    ),
}


def averaging_strategy(context: ServerContext) -> FedAvg:
    """Flower's aggregator named by ``federated.aggregator``, sampling every client."""
    f = context.config.federated
    return AVERAGING[f.aggregator](f, _sampling(context))


class CondensedWarmStart(Strategy):
    """Round 1 is one-shot FedCondense (the global model trained on the clients' synthetic sets);
    rounds 2.. average the clients' locally trained weights from that model.

    Every fit reply is checked against the global model the round sent before it reaches the
    aggregator (:func:`~strategies.uploads.check_fit_reply`): a reply with other keys, shapes or
    dtypes, more bytes than those shapes need, values that are not finite or a bad example count
    is rejected with its reason and logged like a rejected upload, and the round goes on with the
    others (with none left, the global model stays as it was).

    Parameters
    ----------
    context
        The run's config, test set and server-side trainer.
    averaging
        The Flower strategy that configures and aggregates rounds 2.. (``FedAvg`` or one of
        Flower's robust aggregators, see :func:`averaging_strategy`).
    """

    def __init__(self, context: ServerContext, averaging: FedAvg) -> None:
        self.warm = FedCondense(context)
        self.averaging = averaging
        self._global: ArrayRecord | None = None

    @property
    def log(self) -> UploadLog:
        """The warm-start round's uploads and every rejected reply."""
        return self.warm.log

    @property
    def rejected(self) -> list[dict[str, object]]:
        return self.warm.rejected

    def summary(self) -> None:
        log(logging.INFO, "\t├── round 1: one-shot FedCondense")
        self.warm.summary()
        log(logging.INFO, "\t└── rounds 2..: %s, every reply checked first", type(self.averaging).__name__)
        self.averaging.summary()

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        if server_round == 1:
            warm_config = ConfigRecord({**config, wire.TASK_KEY: wire.CONDENSE_TASK})
            return self.warm.configure_train(server_round, arrays, warm_config, grid)
        self._global = arrays
        return self.averaging.configure_train(server_round, arrays, config, grid)

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        if server_round == 1:
            return self.warm.aggregate_train(server_round, replies)
        if self._global is None:
            raise RuntimeError("aggregate_train before configure_train: the round's global model is unknown")
        return self.averaging.aggregate_train(server_round, self._checked(server_round, replies))

    def _checked(self, server_round: int, replies: Iterable[Message]) -> list[Message]:
        """The replies that may be averaged: failures pass on (Flower logs them, metering counts them)."""
        kept = []
        for reply in replies:
            if not reply.has_error():
                try:
                    check_fit_reply(reply, self._global)
                except ModelRecordError as exc:
                    self.warm.reject(server_round, reply.metadata.src_node_id, reply_partition(reply), f"invalid weights: {exc}")
                    continue
            kept.append(reply)
        return kept

    def configure_evaluate(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        return self.averaging.configure_evaluate(server_round, arrays, config, grid)

    def aggregate_evaluate(self, server_round: int, replies: Iterable[Message]) -> MetricRecord | None:
        return self.averaging.aggregate_evaluate(server_round, replies)


@register_strategy("hybrid")
def build_hybrid(context: ServerContext) -> Plan:
    """One-shot FedCondense as the first round, then ``federated.aggregator`` (FedAvg by default)."""
    strategy = CondensedWarmStart(context, averaging_strategy(context))
    return Plan(strategy, context.config.federated.rounds, context.message_config(wire.FIT_TASK), uploads=strategy.log)
