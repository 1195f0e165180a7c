"""Misbehaving clients for simulations and tests: fedcond's ClientApp with some partitions turned bad.

``label-flip`` uploads the honest set with labels ``y -> K-1-y``; ``garbage`` uploads noise of the
honest set's shape and labels; ``crash`` raises; ``stall`` sleeps ``stall_seconds`` before replying
(longer than the server's timeout, it counts as a failed client). Only condense replies are
altered; a crashing or stalling client misbehaves on every task.
"""

from __future__ import annotations

import time

import numpy as np
from flwr.app import Array, ArrayRecord, Context, Message, RecordDict
from flwr.clientapp import ClientApp

from fedcond.federated import client_app as fedcond_client
from fedcond.federated import wire

BEHAVIOURS = ("label-flip", "garbage", "crash", "stall")


def attacked_client_app(behaviour: dict[int, str], *, num_classes: int, stall_seconds: float = 60.0) -> ClientApp:
    """fedcond's ClientApp, except that partition ``p`` behaves as ``behaviour[p]``."""
    unknown = sorted(set(behaviour.values()) - set(BEHAVIOURS))
    if unknown:
        raise ValueError(f"unknown client behaviour {unknown[0]!r}; valid: {', '.join(BEHAVIOURS)}")
    app = ClientApp()

    @app.train()
    def train(msg: Message, context: Context) -> Message:
        kind = behaviour.get(int(context.node_config["partition-id"]))
        if kind == "crash":
            raise RuntimeError("simulated client crash")
        if kind == "stall":
            time.sleep(stall_seconds)
        reply = fedcond_client.train(msg, context)
        if kind in ("label-flip", "garbage") and wire.SET_RECORD in reply.content.array_records:
            record = reply.content.array_records[wire.SET_RECORD]
            poisoned = poison(record, kind, num_classes=num_classes)
            metrics = reply.content.metric_records[wire.METRICS_RECORD]
            content = RecordDict({wire.SET_RECORD: poisoned, wire.METRICS_RECORD: metrics})
            return Message(content=content, reply_to=msg)
        return reply

    return app


def poison(record: ArrayRecord, kind: str, *, num_classes: int, seed: int = 0) -> ArrayRecord:
    """A poisoned copy of a synthetic-set record (hard labels)."""
    images, labels = record["images"].numpy(), record["labels"].numpy()
    if kind == "label-flip":
        flipped = (num_classes - 1 - labels).astype(labels.dtype)
        return ArrayRecord({"images": Array(images.copy()), "labels": Array(flipped)})
    if kind == "garbage":
        rng = np.random.default_rng(seed)
        noise = rng.normal(0.0, float(images.std()) + 1.0, size=images.shape).astype(images.dtype)
        return ArrayRecord({"images": Array(noise), "labels": Array(labels.copy())})
    raise ValueError(f"cannot poison with {kind!r}")
