"""Misbehaving clients for simulations and tests: fedcond's ClientApp with some partitions turned bad.

``label-flip`` uploads the honest set with labels ``y -> K-1-y`` and trains its fit replies on its
partition with those labels; ``garbage`` uploads noise of the
honest set's shape and labels; ``nan-weights`` replies to fit tasks with its trained weights turned
to NaN (a diverged or hostile FedAvg client); ``crash`` raises; ``stall`` does not reply until ``release`` (a file)
exists, or ``stall_seconds`` have passed: a client the server's timeout gives up on, whatever the
machine's load. Garbage alters condense replies, nan-weights fit replies, label-flip both; a crashing or stalling client misbehaves on every task.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np
from flwr.app import Array, ArrayRecord, Context, Message, RecordDict
from flwr.clientapp import ClientApp

from fedcond.federated import client_app as fedcond_client
from fedcond.federated import wire

BEHAVIOURS = ("label-flip", "garbage", "nan-weights", "crash", "stall")


def attacked_client_app(
    behaviour: dict[int, str], *, num_classes: int, stall_seconds: float = 600.0, release: Path | None = None
) -> ClientApp:
    """fedcond's ClientApp, except that partition ``p`` behaves as ``behaviour[p]``.

    Parameters
    ----------
    behaviour
        Partition id -> one of :data:`BEHAVIOURS`; other partitions are honest.
    num_classes
        Classes of the label space (a flipped label is ``num_classes - 1 - y``).
    stall_seconds, release
        A stalling client waits until the file ``release`` exists, for at most ``stall_seconds``.
    """
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
            _wait_for(release, stall_seconds)
        if kind == "label-flip":
            task = fedcond_client.client_task(msg, context)
            if task.name == wire.FIT_TASK:  # a poisoned FedAvg client trains on the flipped labels
                flipped = dataclasses.replace(task.data, labels=num_classes - 1 - task.data.labels)
                content = fedcond_client.fit_reply(msg, task.settings, task.config, flipped, task.device, task.partition_id)
                return Message(content=content, reply_to=msg)
        reply = fedcond_client.train(msg, context)
        if kind in ("label-flip", "garbage") and wire.SET_RECORD in reply.content.array_records:
            record = reply.content.array_records[wire.SET_RECORD]
            poisoned = poison(record, kind, num_classes=num_classes)
            metrics = reply.content.metric_records[wire.METRICS_RECORD]
            content = RecordDict({wire.SET_RECORD: poisoned, wire.METRICS_RECORD: metrics})
            return Message(content=content, reply_to=msg)
        if kind == "nan-weights" and wire.ARRAYS_RECORD in reply.content.array_records:
            weights = reply.content.array_records[wire.ARRAYS_RECORD]
            nan = ArrayRecord({k: Array(np.full_like(a.numpy(), np.nan) if a.numpy().dtype.kind == "f" else a.numpy())
                               for k, a in weights.items()})  # fmt: skip
            content = RecordDict({wire.ARRAYS_RECORD: nan, wire.METRICS_RECORD: reply.content.metric_records[wire.METRICS_RECORD],
                                  **reply.content.config_records})  # fmt: skip
            return Message(content=content, reply_to=msg)
        return reply

    return app


def poison(record: ArrayRecord, kind: str, *, num_classes: int, seed: int = 0) -> ArrayRecord:
    """A poisoned copy of a synthetic-set record (hard labels), in the record's own form: decoded
    ``images``, or a factorised set's ``stored`` images (its ``factor`` kept)."""
    arrays = {key: array.numpy().copy() for key, array in record.items()}
    pixels = "stored" if "stored" in arrays else "images"
    if kind == "label-flip":
        arrays["labels"] = (num_classes - 1 - arrays["labels"]).astype(arrays["labels"].dtype)
    elif kind == "garbage":
        rng = np.random.default_rng(seed)
        images = arrays[pixels]
        arrays[pixels] = rng.normal(0.0, float(images.std()) + 1.0, size=images.shape).astype(images.dtype)
    else:
        raise ValueError(f"cannot poison with {kind!r}")
    return ArrayRecord({key: Array(values) for key, values in arrays.items()})


def _wait_for(release: Path | None, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not (release is not None and release.exists()):
        time.sleep(0.2)
