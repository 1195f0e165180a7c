"""Flower's own FedAvg and FedProx, wired to fedcond's clients, and the condensed-warm-start hybrid.

The hybrid is fedcond's own: its averaging rounds check every reply before Flower's aggregator
(``federated.aggregator``: FedAvg, or Flower's FedMedian, FedTrimmedAvg, Krum, MultiKrum) sees it.

The baselines are ``flwr.serverapp.strategy.FedAvg``/``FedProx`` unchanged: same model, same
partitions, and clients train locally for ``federated.local_epochs`` epochs per round. Evaluation
happens on the server's test set, so client-side evaluation is off.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord
from flwr.common.logger import log
from flwr.serverapp import Grid
from flwr.serverapp.strategy import FedAvg, FedProx

from fedcond.federated import wire
from strategies.averaging import AveragingStrategy, averaging_strategy, sampling
from strategies.context import ServerContext
from strategies.fedcondense import FedCondense
from strategies.registry import Plan, register_strategy
from strategies.uploads import UploadLog


@register_strategy("fedavg")
def build_fedavg(context: ServerContext) -> Plan:
    """Flower's FedAvg, every client training locally each round."""
    return Plan(FedAvg(**sampling(context)), context.config.federated.rounds, context.message_config(wire.FIT_TASK))


@register_strategy("fedprox")
def build_fedprox(context: ServerContext) -> Plan:
    """Flower's FedProx with ``federated.proximal_mu``."""
    f = context.config.federated
    strategy = FedProx(proximal_mu=f.proximal_mu, **sampling(context))
    return Plan(strategy, f.rounds, context.message_config(wire.FIT_TASK))


class CondensedWarmStart(AveragingStrategy):
    """Round 1 is one-shot FedCondense (the global model trained on the clients' synthetic sets);
    rounds 2.. average the clients' locally trained weights from that model.

    Every fit reply is checked against the global model the round sent before it reaches the
    aggregator (:func:`~strategies.averaging.checked_fit_replies`): a reply with other keys, shapes
    or dtypes, more bytes than those shapes need, values that are not finite or a bad example count
    is rejected with its reason and logged like a rejected upload, and the round goes on with the
    others (with none left, the global model stays as it was).

    Parameters
    ----------
    context
        The run's config, test set and server-side trainer.
    averaging
        The Flower strategy that configures and aggregates rounds 2.. (``FedAvg`` or one of
        Flower's robust aggregators, see :func:`~strategies.averaging.averaging_strategy`).
    correction
        After each averaging round, fine-tune the global model on the round-1 sets
        (:func:`~strategies.averaging.correct`, ``federated.correction_steps``).
    """

    def __init__(self, context: ServerContext, averaging: FedAvg, *, correction: bool = False) -> None:
        self.context = context
        self.warm = FedCondense(context)
        self.averaging = averaging
        self.correction = correction
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
        log(logging.INFO, "\t├── rounds 2..: %s, every reply checked first", type(self.averaging).__name__)
        self.averaging.summary()
        steps = self.context.config.federated.correction_steps if self.correction else 0
        log(logging.INFO, "\t└── server correction on the round-1 sets: %d steps", steps)

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
        sets = self.warm.sets if self.correction else []
        return self.average(server_round, replies, self._global, self.warm.reject, sets)


@register_strategy("hybrid")
def build_hybrid(context: ServerContext) -> Plan:
    """One-shot FedCondense as the first round, then ``federated.aggregator`` (FedAvg by default),
    with the server's correction after each averaging round when ``federated.hybrid_correction``."""
    f = context.config.federated
    strategy = CondensedWarmStart(context, averaging_strategy(context), correction=f.hybrid_correction)
    return Plan(strategy, f.rounds, context.message_config(wire.FIT_TASK), uploads=strategy.log)
