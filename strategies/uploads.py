"""Validate a client's reply before anything is done with it: an upload is untrusted input."""

from __future__ import annotations

from dataclasses import dataclass, field

from flwr.app import Message

from fedcond.errors import SyntheticSetError
from fedcond.federated import wire
from fedcond.synthetic import SyntheticSet


@dataclass(frozen=True)
class UploadSpec:
    """What the server accepts: classes, image shape and the most images per class."""

    num_classes: int
    image_shape: tuple[int, int, int]
    max_per_class: int


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
    )
    if len(synthetic) == 0:
        raise SyntheticSetError("the set is empty")
    return synthetic


def reply_metrics(reply: Message) -> dict[str, int | float]:
    """The client's own numbers (num-examples, condense-seconds, ...): scalars only, for the record."""
    metrics = reply.content.metric_records.get(wire.METRICS_RECORD)
    if metrics is None:
        return {}
    return {str(k): v for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def reply_partition(reply: Message) -> int | None:
    """The partition id a client reports in its metrics (None when absent or not an integer)."""
    metrics = reply.content.metric_records.get(wire.METRICS_RECORD)
    value = None if metrics is None else metrics.get(wire.PARTITION_ID)
    return value if isinstance(value, int) else None
