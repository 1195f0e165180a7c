"""FedAvg with a server-side correction on the clients' synthetic sets (``fedavg-corrected``).

Each round is Flower's averaging (``federated.aggregator``, FedAvg by default) of the clients'
locally trained weights, every reply checked first; then the server fine-tunes the averaged model
on the union of the clients' synthetic sets, as FedDF and FedFTG fine-tune on server-side data and
FedAF keeps training on the union of synthetic sets. Clients condense in round 1 (beside their
local training: two messages per client that round) and, with ``federated.correction_refresh: k``,
again every k rounds against the current global model, so the sets follow the model. Uploads are
validated and screened exactly as FedCondense's; their bytes are counted with the weights'.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord
from flwr.common.logger import log
from flwr.serverapp import Grid
from flwr.serverapp.strategy import FedAvg

from fedcond.federated import wire
from fedcond.synthetic import SyntheticSet
from strategies.averaging import AveragingStrategy, averaging_strategy
from strategies.context import ServerContext
from strategies.fedcondense import FedCondense
from strategies.registry import Plan, register_strategy
from strategies.uploads import UploadLog, reply_partition


class CorrectedFedAvg(AveragingStrategy):
    """Average, then correct the average on the clients' synthetic sets.

    Parameters
    ----------
    context
        The run's config, test set and server-side trainer.
    averaging
        The Flower strategy that configures and aggregates the weights (``FedAvg`` or one of
        Flower's robust aggregators, see :func:`~strategies.averaging.averaging_strategy`).
    refresh
        0: clients upload their sets once, in round 1; k > 0: again every k rounds (rounds 1,
        1 + k, ...), condensed against the current global model, the new sets replacing the old.
    """

    def __init__(self, context: ServerContext, averaging: FedAvg, *, refresh: int = 0) -> None:
        self.context = context
        self.averaging = averaging
        self.refresh = refresh
        self.collector = FedCondense(context)
        self._sets: list[SyntheticSet] = []
        self._global: ArrayRecord | None = None

    @property
    def log(self) -> UploadLog:
        """Every upload round's facts and every rejected reply (sets and weights)."""
        return self.collector.log

    @property
    def sets(self) -> list[SyntheticSet]:
        """The sets the server corrects with now (the latest accepted upload round's)."""
        return list(self._sets)

    def uploads_in(self, server_round: int) -> bool:
        """Whether clients condense and upload their sets in ``server_round``."""
        return server_round == 1 or (self.refresh > 0 and (server_round - 1) % self.refresh == 0)

    def summary(self) -> None:
        f = self.context.config.federated
        log(logging.INFO, "\t├── averaging: %s, every reply checked first", type(self.averaging).__name__)
        self.averaging.summary()
        when = "round 1 only" if self.refresh == 0 else f"every {self.refresh} rounds from round 1"
        log(logging.INFO, "\t├── synthetic sets uploaded: %s", when)
        self.collector.summary()
        log(logging.INFO, "\t└── server correction: %d SGD steps after each aggregation", f.correction_steps)

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        self._global = arrays
        messages = list(self.averaging.configure_train(server_round, arrays, config, grid))
        if self.uploads_in(server_round):
            # After round 1 the sets are condensed against the current global model (FedDM/FedAF-style).
            messages += self.collector.condense_messages(server_round, arrays, config, grid, send_model=server_round > 1)
        return messages

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        if self._global is None:
            raise RuntimeError("aggregate_train before configure_train: the round's global model is unknown")
        uploads, fits = [], []
        for reply in replies:
            is_upload = not reply.has_error() and wire.SET_RECORD in reply.content.array_records
            (uploads if is_upload else fits).append(reply)
        if uploads and not self.uploads_in(server_round):
            for reply in uploads:
                self.collector.reject(server_round, reply.metadata.src_node_id, reply_partition(reply),
                                      "unexpected upload: a synthetic set in a round that asked for weights")  # fmt: skip
            uploads = []
        if self.uploads_in(server_round):
            accepted = self.collector.accept(server_round, uploads)
            if accepted:
                self._sets = accepted
            else:
                log(logging.WARNING, "round %d: no acceptable synthetic set; correcting with the previous ones", server_round)
        return self.average(server_round, fits, self._global, self.collector.reject, self._sets)


@register_strategy("fedavg-corrected")
def build_corrected(context: ServerContext) -> Plan:
    """``federated.aggregator`` (FedAvg by default), each aggregate fine-tuned on the clients' sets."""
    f = context.config.federated
    strategy = CorrectedFedAvg(context, averaging_strategy(context), refresh=f.correction_refresh)
    return Plan(strategy, f.rounds, context.message_config(wire.FIT_TASK), uploads=strategy.log)
