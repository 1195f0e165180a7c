"""What fedcond's own averaging strategies (hybrid, fedavg-corrected) share: Flower's aggregator by
name, the check of every fit reply before it is averaged, and the server's correction step."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord
from flwr.serverapp import Grid
from flwr.serverapp.strategy import FedAvg, FedMedian, FedTrimmedAvg, Krum, MultiKrum, Strategy

from fedcond.errors import ModelRecordError
from fedcond.seeds import derive_seed
from fedcond.synthetic import SyntheticSet, merge_synthetic_sets
from strategies.context import ServerContext
from strategies.uploads import check_fit_reply, reply_partition

if TYPE_CHECKING:
    from fedcond.federated.config import FederatedConfig

#: ``reject(server_round, node_id, partition_id, reason)``: records a reply that is not used.
Reject = Callable[[int, int, "int | None", str], None]


def sampling(context: ServerContext) -> dict[str, object]:
    """Flower's sampling arguments that make every client train each round, none evaluate."""
    n = context.config.federated.num_clients
    return {"fraction_train": 1.0, "fraction_evaluate": 0.0, "min_train_nodes": 1, "min_available_nodes": n}


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
    return AVERAGING[f.aggregator](f, sampling(context))


def checked_fit_replies(
    server_round: int, replies: Iterable[Message], reference: ArrayRecord, reject: Reject
) -> list[Message]:
    """The fit replies that may be averaged: each is checked against ``reference`` (the global model
    the round sent, :func:`~strategies.uploads.check_fit_reply`); a bad one goes to ``reject`` with
    its reason. Error replies pass on: Flower logs them and the metering grid counts them."""
    kept = []
    for reply in replies:
        if not reply.has_error():
            try:
                check_fit_reply(reply, reference)
            except ModelRecordError as exc:
                reject(server_round, reply.metadata.src_node_id, reply_partition(reply), f"invalid weights: {exc}")
                continue
        kept.append(reply)
    return kept


def correct(context: ServerContext, arrays: ArrayRecord, sets: list[SyntheticSet], server_round: int) -> ArrayRecord:
    """The server's correction: ``arrays`` fine-tuned for ``federated.correction_steps`` SGD steps on
    the union of ``sets`` (FedDF/FedFTG-style server training, on the clients' synthetic data)."""
    seed = derive_seed(context.config.seed, "server-correction", server_round)
    steps = context.config.federated.correction_steps
    return context.train_on(merge_synthetic_sets(sets), start=arrays, epochs=1, seed=seed, steps=steps)


class AveragingStrategy(Strategy):
    """A fedcond strategy whose weights rounds are Flower's ``averaging``: it checks every fit reply,
    averages the good ones and, given synthetic sets, corrects the average on them; evaluation is
    ``averaging``'s (off: the server tests on its own test set)."""

    context: ServerContext
    averaging: FedAvg

    def average(
        self,
        server_round: int,
        replies: Iterable[Message],
        reference: ArrayRecord,
        reject: Reject,
        sets: list[SyntheticSet],
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """Average the fit replies that pass :func:`checked_fit_replies` against ``reference`` (the
        round's global model); with ``sets``, :func:`correct` the average (or ``reference``, when no
        reply was left) on them."""
        kept = checked_fit_replies(server_round, replies, reference, reject)
        arrays, metrics = self.averaging.aggregate_train(server_round, kept)
        if sets:
            arrays = correct(self.context, arrays if arrays is not None else reference, sets, server_round)
        return arrays, metrics

    def configure_evaluate(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        return self.averaging.configure_evaluate(server_round, arrays, config, grid)

    def aggregate_evaluate(self, server_round: int, replies: Iterable[Message]) -> MetricRecord | None:
        return self.averaging.aggregate_evaluate(server_round, replies)
