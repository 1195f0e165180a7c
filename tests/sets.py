"""Small synthetic sets for tests, and how tests expect a rejection to look."""

from __future__ import annotations

import pytest
import torch

from fedcond.condense.parameterisation import decode
from fedcond.errors import SyntheticSetError
from fedcond.synthetic import StoredImages, SyntheticSet, default_metadata


def make_set(
    *,
    num_classes: int = 3,
    per_class: int = 2,
    soft: bool = False,
    shape: tuple[int, int, int] = (3, 8, 8),
) -> SyntheticSet:
    """A valid set: ``per_class`` images of each class, in class order."""
    generator = torch.Generator().manual_seed(0)
    hard = torch.arange(num_classes).repeat_interleave(per_class)
    images = torch.randn(len(hard), *shape, generator=generator)
    labels = hard
    if soft:
        logits = torch.randn(len(hard), num_classes, generator=generator)
        labels = torch.softmax(logits + 10 * torch.nn.functional.one_hot(hard, num_classes), dim=1)
    channels = shape[0]
    metadata = default_metadata(
        dataset="digits", mean=(0.5,) * channels, std=(0.25,) * channels, ipc=per_class
    )
    return SyntheticSet(images=images, labels=labels, num_classes=num_classes, metadata=metadata)


def make_factorised_set(
    *, factor: int = 2, soft: bool = False, num_classes: int = 3, shape: tuple[int, int, int] = (3, 8, 8)
) -> SyntheticSet:
    """A valid set with a stored form: one stored image per class, decoding to ``factor``² images
    each (class-grouped)."""
    generator = torch.Generator().manual_seed(1)
    stored = torch.randn(num_classes, *shape, generator=generator)
    base = make_set(num_classes=num_classes, per_class=factor * factor, soft=soft, shape=shape)
    return SyntheticSet(decode(stored, factor), base.labels, num_classes, base.metadata, stored=StoredImages(stored, factor))


def rejects(match: str) -> pytest.RaisesExc[SyntheticSetError]:
    return pytest.raises(SyntheticSetError, match=match)


def assert_one_line(err: pytest.ExceptionInfo[SyntheticSetError]) -> None:
    assert "\n" not in str(err.value)
