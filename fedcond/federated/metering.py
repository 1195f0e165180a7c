"""Count what really travels, and who failed: a Grid wrapper the server's strategies talk through.

Bytes are those of the arrays in each message (model weights, synthetic sets), as Flower's own
``Result`` counts them (``len(Array.data)``); config and metric records, a few hundred bytes
per message, are not counted. A sent message without a reply (timeout) or with an error reply
marks its node as failed for that round.

With ``max_in_flight`` set, an exchange keeps at most that many messages out at once and sends the
next as replies come in, within the same timeout. Flower's simulation engine scans every message
still held for every node at each poll (10 per second), so 1,000 messages out at once cost it most
of a core; a window keeps that scan short without changing who is asked or what they answer.
"""

from __future__ import annotations

import time
from collections import deque
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

    #: Seconds between pulls while a window is full (Flower's in-memory grid polls at 0.1 s too).
    PULL_INTERVAL = 0.1

    def __init__(self, grid: Grid, max_in_flight: int | None = None) -> None:
        """
        Parameters
        ----------
        grid : Grid
            The Flower grid to delegate to.
        max_in_flight : int, optional
            Most messages of one exchange out at once (``federated.max_in_flight``); None sends them
            all at once, as Flower's ``send_and_receive`` does.
        """
        if max_in_flight is not None and max_in_flight < 1:
            raise ValueError("max_in_flight must be None or >= 1")
        self._grid = grid
        self.max_in_flight = max_in_flight
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
        if self.max_in_flight is None or len(messages) <= self.max_in_flight:
            replies = list(self._grid.send_and_receive(messages, timeout=timeout))
        else:
            replies = self._windowed_exchange(messages, timeout, self.max_in_flight)
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

    def _windowed_exchange(self, messages: list[Message], timeout: float | None, window: int) -> list[Message]:
        """Send ``messages`` with at most ``window`` awaiting a reply; stop at ``timeout`` seconds.

        Messages not yet sent when the time is up are never sent; like those sent and unanswered,
        they count as failed (no reply within the timeout).
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        waiting, out, replies = deque(messages), set(), []
        while waiting or out:
            while waiting and len(out) < window:
                out.update(self._grid.push_messages([waiting.popleft()]))
            pulled = list(self._grid.pull_messages(out))
            replies.extend(pulled)
            out.difference_update(reply.metadata.reply_to_message_id for reply in pulled)
            if deadline is not None and time.monotonic() >= deadline:
                break
            if out and not pulled:
                time.sleep(self.PULL_INTERVAL)
        return replies


def _server_round(content: RecordDict) -> int:
    for record in content.config_records.values():
        value = record.get(SERVER_ROUND_KEY)
        if isinstance(value, int):
            return value
    return 0
