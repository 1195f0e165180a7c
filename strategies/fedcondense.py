"""FedCondense: clients condense their partitions and upload synthetic sets; the server trains on them.

One-shot (``fedcondense``): one round, no model is sent, the global model is trained on the union
of the accepted sets. Iterative (``fedcondense-iterative``, in the style of FedDM/FedAF): every round
the server sends the current global model, clients condense against its features (mixed with fresh
random networks), and the server fine-tunes the global model on the round's sets (or retrains on all
sets so far). Every upload is validated and screened; a bad one is rejected with its reason, logged
and counted, and the round goes on.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from flwr.app import ArrayRecord, ConfigRecord, Message, MessageType, MetricRecord, RecordDict
from flwr.common.logger import log
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Strategy
from flwr.serverapp.strategy.strategy_utils import sample_nodes

from fedcond.errors import SyntheticSetError
from fedcond.federated import wire
from fedcond.seeds import derive_seed
from fedcond.synthetic import SyntheticSet, merge_synthetic_sets
from strategies.context import ServerContext
from strategies.defence import screen
from strategies.registry import Plan, register_strategy
from strategies.uploads import UploadLog, read_upload, reply_metrics, reply_partition


class FedCondense(Strategy):
    """Collect one synthetic set per client, validate and screen them, train the global model on the union.

    Parameters
    ----------
    context
        The run's config, test set and server-side trainer.
    send_model
        Send the current global model with every condense message (clients condense against its
        features, mixed with random networks: FedDM/FedAF-style rounds).
    server_update
        With ``send_model``, what the server does with each round's sets after the first:
        ``finetune`` the global model on them, or ``retrain`` it from scratch on every set so far.
    log
        Where rejected uploads and per-round facts are recorded (a fresh log by default); a
        strategy that wraps this one shares it.
    """

    def __init__(
        self,
        context: ServerContext,
        *,
        send_model: bool = False,
        server_update: str = "retrain",
        log: UploadLog | None = None,
    ) -> None:
        self.context = context
        self.send_model = send_model
        self.server_update = server_update
        self.log = log if log is not None else UploadLog()
        self._all_sets: list[SyntheticSet] = []
        self._current: ArrayRecord | None = None

    @property
    def rejected(self) -> list[dict[str, object]]:
        """Every rejected or dropped upload: round, node, partition, reason."""
        return self.log.rejected

    @property
    def sets(self) -> list[SyntheticSet]:
        """Every set the global model was trained on from scratch so far (one-shot: the round's)."""
        return list(self._all_sets)

    def summary(self) -> None:
        f = self.context.config.federated
        log(logging.INFO, "\t├── send global model: %s (random mix %.2f)", self.send_model, f.random_mix)
        log(logging.INFO, "\t├── defence: %s (ratio %.2f, at most %d folds)", f.defence, f.defence_ratio, f.defence_folds)
        log(logging.INFO, "\t└── max images per class: %d", self.context.spec.max_per_class)

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        self._current = arrays
        return self.condense_messages(server_round, arrays, config, grid, send_model=self.send_model)

    def condense_messages(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid, *, send_model: bool
    ) -> list[Message]:
        """One condense message per client; with ``send_model`` each carries the global model ``arrays``."""
        config = ConfigRecord({**config, wire.TASK_KEY: wire.CONDENSE_TASK, wire.SERVER_ROUND_KEY: server_round})
        content = RecordDict({wire.CONFIG_RECORD: config})
        if send_model:
            content[wire.MODEL_RECORD] = arrays
        # Every client condenses: wait until all of them are connected (late SuperNodes are not skipped).
        clients = self.context.config.federated.num_clients
        nodes, _ = sample_nodes(grid, clients, clients)
        return [Message(content=content, message_type=MessageType.TRAIN, dst_node_id=node) for node in nodes]

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        sets = self.accept(server_round, replies)
        if not sets:
            log(logging.WARNING, "round %d: no acceptable synthetic set; the global model is unchanged", server_round)
            return None, MetricRecord({"accepted-sets": 0})
        arrays = self._update(server_round, sets)
        return arrays, MetricRecord({"accepted-sets": len(sets), "synthetic-images": sum(len(s) for s in sets)})

    def accept(self, server_round: int, replies: Iterable[Message]) -> list[SyntheticSet]:
        """The synthetic sets of ``replies`` that pass validation and the defence; the others are
        rejected with their reason, and the round's facts go to :attr:`log`.

        A strategy that collects sets for another purpose (the server's correction of
        ``fedavg-corrected``) uses this to receive them exactly as FedCondense does.
        """
        sets, senders, clients = [], [], []
        for reply in replies:
            if reply.has_error():
                continue  # recorded as a failure by the metering grid
            node, partition = reply.metadata.src_node_id, reply_partition(reply)
            clients.append({"node_id": node, **reply_metrics(reply)})
            try:
                sets.append(read_upload(reply, self.context.spec))
                senders.append((node, partition))
            except SyntheticSetError as exc:
                self.reject(server_round, node, partition, f"invalid upload: {exc}")
        scores = None
        if self.context.config.federated.defence and sets:
            seed = derive_seed(self.context.config.seed, "defence", server_round, bits=32)
            f = self.context.config.federated
            screening = screen(sets, f.defence_ratio, seed=seed, folds=f.defence_folds)
            scores = screening.scores
            for i in screening.dropped:
                self.reject(server_round, *senders[i],
                             f"dropped by the defence: agreement {screening.scores[i]} < {screening.threshold}")  # fmt: skip
            sets = [s for i, s in enumerate(sets) if i not in screening.dropped]
        self.log.rounds[server_round] = {"accepted": len(sets), "defence_scores": scores, "clients": clients}
        return sets

    def _update(self, server_round: int, sets: list[SyntheticSet]) -> ArrayRecord:
        f, seed = self.context.config.federated, derive_seed(self.context.config.seed, "server-training", server_round)
        if self.send_model and self.server_update == "finetune" and server_round > 1:
            return self.context.train_on(merge_synthetic_sets(sets), start=self._current, epochs=f.finetune_epochs, seed=seed)
        self._all_sets.extend(sets)
        return self.context.train_on(merge_synthetic_sets(self._all_sets), start=None, epochs=f.server_epochs, seed=seed)

    def reject(self, server_round: int, node: int, partition: int | None, reason: str) -> None:
        """Record (and log) that ``node``'s reply of ``server_round`` was not used, and why."""
        log(logging.WARNING, "round %d: rejected node %d (partition %s): %s", server_round, node, partition, reason)
        self.log.rejected.append({"round": server_round, "node_id": node, "partition_id": partition, "reason": reason})

    def configure_evaluate(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        return []  # the server evaluates on its own test set

    def aggregate_evaluate(self, server_round: int, replies: Iterable[Message]) -> MetricRecord | None:
        return None


@register_strategy("fedcondense")
def build_fedcondense(context: ServerContext) -> Plan:
    """One-shot: one round, every client condenses, the global model is trained on the union."""
    strategy = FedCondense(context)
    return Plan(strategy, 1, context.message_config(wire.CONDENSE_TASK), uploads=strategy.log)


@register_strategy("fedcondense-iterative")
def build_iterative(context: ServerContext) -> Plan:
    """``federated.rounds`` rounds of condensing against the current global model."""
    f = context.config.federated
    strategy = FedCondense(context, send_model=True, server_update=f.server_update)
    return Plan(strategy, f.rounds, context.message_config(wire.CONDENSE_TASK), uploads=strategy.log)
