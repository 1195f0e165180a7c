"""Validate a client's reply before anything is done with it: an upload is untrusted input."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from flwr.app import Message

from fedcond.errors import SyntheticSetError
from fedcond.synthetic import SyntheticSet

#: The keys of a condense reply: the set travels as an ArrayRecord, its facts as a MetricRecord.
SET_KEY = "synthetic"
METRICS_KEY = "metrics"


@dataclass(frozen=True)
class UploadSpec:
    """What the server accepts: classes, image shape and the most images per class."""

    num_classes: int
    image_shape: tuple[int, int, int]
    max_per_class: int


def read_upload(reply: Message, spec: UploadSpec) -> SyntheticSet:
    """The synthetic set in ``reply``, validated; :class:`SyntheticSetError` names what is wrong."""
    content = reply.content
    if set(content.array_records.keys()) != {SET_KEY}:
        raise SyntheticSetError(f"reply must carry one ArrayRecord {SET_KEY!r}")
    synthetic = SyntheticSet.from_array_record(
        content.array_records[SET_KEY],
        num_classes=spec.num_classes,
        max_per_class=spec.max_per_class,
        image_shape=spec.image_shape,
    )
    if len(synthetic) == 0:
        raise SyntheticSetError("the set is empty")
    return synthetic


def reply_metrics(reply: Message) -> dict[str, int | float]:
    """The client's own numbers (num-examples, condense-seconds, ...): scalars only, for the record."""
    metrics = reply.content.metric_records.get(METRICS_KEY)
    if metrics is None:
        return {}
    return {str(k): v for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def reply_partition(reply: Message) -> int | None:
    """The partition id a client reports in its metrics (None when absent or not an integer)."""
    metrics = reply.content.metric_records.get(METRICS_KEY)
    value = None if metrics is None else metrics.get("partition-id")
    return value if isinstance(value, int) else None


def merge(sets: list[SyntheticSet]) -> SyntheticSet:
    """The union of ``sets``: soft labels if any set has them (hard ones become one-hot)."""
    num_classes = sets[0].num_classes
    soft = any(s.is_soft for s in sets)
    labels = [
        (s.labels if s.is_soft else torch.nn.functional.one_hot(s.labels, num_classes).float()) if soft else s.labels
        for s in sets
    ]
    return SyntheticSet(
        images=torch.cat([s.images for s in sets]), labels=torch.cat(labels), num_classes=num_classes
    )
