"""Validate a client's reply before anything is done with it: an upload, a set or weights, is untrusted input."""

from __future__ import annotations

from dataclasses import dataclass, field

import math

from flwr.app import ArrayRecord, Message

from fedcond.errors import ModelRecordError, SyntheticSetError
from fedcond.federated import wire
from fedcond.synthetic import SyntheticSet


@dataclass(frozen=True)
class UploadSpec:
    """What the server accepts: classes, image shape, the most (decoded) images per class, and the
    factor a set's stored form must have (the run's ``condense.factor``)."""

    num_classes: int
    image_shape: tuple[int, int, int]
    max_per_class: int
    factor: int | None = None


@dataclass
class UploadLog:
    """What a strategy that receives synthetic sets records, for the run's ``results.json``.

    Parameters
    ----------
    rejected
        Every rejected or dropped upload: ``round``, ``node_id``, ``partition_id``, ``reason``.
    rounds
        Per server round: ``accepted`` (sets used), ``defence_scores`` (None without the
        defence) and ``clients`` (each replying client's node id and reported metrics).
    """

    rejected: list[dict[str, object]] = field(default_factory=list)
    rounds: dict[int, dict[str, object]] = field(default_factory=dict)


def read_upload(reply: Message, spec: UploadSpec) -> SyntheticSet:
    """The synthetic set in ``reply``, validated; :class:`SyntheticSetError` names what is wrong."""
    content = reply.content
    if set(content.array_records.keys()) != {wire.SET_RECORD}:
        raise SyntheticSetError(f"reply must carry one ArrayRecord {wire.SET_RECORD!r}")
    synthetic = wire.from_array_record(
        content.array_records[wire.SET_RECORD],
        num_classes=spec.num_classes,
        max_per_class=spec.max_per_class,
        image_shape=spec.image_shape,
        factor=spec.factor,
    )
    if len(synthetic) == 0:
        raise SyntheticSetError("the set is empty")
    return synthetic


def check_fit_reply(reply: Message, reference: ArrayRecord) -> None:
    """Check a fit reply before it is averaged: one ArrayRecord ``"arrays"`` that fits ``reference``
    (the global model the round sent) and one MetricRecord ``"metrics"`` holding exactly
    :data:`~fedcond.federated.wire.FIT_METRICS`, finite, with at least one example.

    Flower's own check raises for the whole round when one reply differs from the others; this one
    names what is wrong with a single reply, so that reply alone is rejected.

    Raises
    ------
    ModelRecordError
        What is wrong, in one line.
    """
    content = reply.content
    if set(content.array_records.keys()) != {wire.ARRAYS_RECORD}:
        raise ModelRecordError(f"reply must carry one ArrayRecord {wire.ARRAYS_RECORD!r}")
    if set(content.metric_records.keys()) != {wire.METRICS_RECORD}:
        raise ModelRecordError(f"reply must carry one MetricRecord {wire.METRICS_RECORD!r}")
    metrics = content.metric_records[wire.METRICS_RECORD]
    if set(metrics.keys()) != set(wire.FIT_METRICS):
        raise ModelRecordError(f"metrics must hold exactly {', '.join(wire.FIT_METRICS)}")
    for key in wire.FIT_METRICS:
        value = metrics[key]
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value) or value < 0:
            raise ModelRecordError(f"metric {key!r} must be a finite number >= 0")
    examples = metrics[wire.NUM_EXAMPLES]
    if not isinstance(examples, int) or examples < 1:
        raise ModelRecordError(f"metric {wire.NUM_EXAMPLES!r} must be an integer >= 1, the weight of the reply")
    wire.check_model_record(content.array_records[wire.ARRAYS_RECORD], reference)


def reply_metrics(reply: Message) -> dict[str, int | float]:
    """The client's own numbers (num-examples, condense-seconds, ...): scalars only, for the record."""
    metrics = reply.content.metric_records.get(wire.METRICS_RECORD)
    if metrics is None:
        return {}
    return {str(k): v for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def reply_partition(reply: Message) -> int | None:
    """The partition id a client reports: in the metrics of a condense reply, in the ``"client"``
    ConfigRecord of a fit reply (None when absent or not an integer; it is only for the record)."""
    for record in (reply.content.metric_records.get(wire.METRICS_RECORD),
                   reply.content.config_records.get(wire.CLIENT_RECORD)):  # fmt: skip
        value = None if record is None else record.get(wire.PARTITION_ID)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return None
