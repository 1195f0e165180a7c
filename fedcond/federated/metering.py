"""Count what really travels, and who failed: a Grid wrapper the server's strategies talk through.

Bytes are those of the arrays in each message (model weights, synthetic sets), as Flower's own
``Result`` counts them (``len(Array.data)``); config and metric records, a few hundred bytes
per message, are not counted. A sent message without a reply (timeout) or with an error reply
marks its node as failed for that round.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from flwr.app import Message, RecordDict
from flwr.serverapp import Grid

from fedcond.federated.wire import SERVER_ROUND_KEY, array_record_bytes


def record_bytes(content: RecordDict) -> int:
    """Bytes of all arrays in ``content``."""
    return sum(array_record_bytes(record) for record in content.array_records.values())


@dataclass
class RoundTraffic:
    """One round's traffic and failures, summed over the train and evaluate exchanges."""

    round: int
    upload_bytes: int = 0
    download_bytes: int = 0
    failed: list[dict[str, Any]] = field(default_factory=list)


class MeteredGrid:
    """Delegates to a Flower ``Grid``; meters ``send_and_receive`` per server round.

    The round of an exchange is the ``server-round`` that Flower's strategies (and ours) put in
    the ``config`` record of every message; messages without one count towards round 0.
    """

    def __init__(self, grid: Grid) -> None:
        self._grid = grid
        self.rounds: dict[int, RoundTraffic] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self._grid, name)

    def traffic(self, server_round: int) -> RoundTraffic:
        return self.rounds.setdefault(server_round, RoundTraffic(server_round))

    def send_and_receive(self, messages: Iterable[Message], *, timeout: float | None = None) -> Iterable[Message]:
        messages = list(messages)
        if not messages:
            return []
        sent: dict[int, int] = {}  # node id -> server round
        for message in messages:
            server_round = _server_round(message.content)
            sent[message.metadata.dst_node_id] = server_round
            self.traffic(server_round).download_bytes += record_bytes(message.content)
        replies = list(self._grid.send_and_receive(messages, timeout=timeout))
        answered = set()
        for reply in replies:
            node = reply.metadata.src_node_id
            answered.add(node)
            traffic = self.traffic(sent.get(node, 0))
            if reply.has_error():
                traffic.failed.append({"node_id": node, "reason": f"error: {reply.error.reason}"})
            else:
                traffic.upload_bytes += record_bytes(reply.content)
        for node, server_round in sent.items():
            if node not in answered:
                self.traffic(server_round).failed.append(
                    {"node_id": node, "reason": f"no reply within {timeout} s" if timeout else "no reply"}
                )
        return replies


def _server_round(content: RecordDict) -> int:
    for record in content.config_records.values():
        value = record.get(SERVER_ROUND_KEY)
        if isinstance(value, int):
            return value
    return 0
