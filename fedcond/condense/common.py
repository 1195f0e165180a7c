"""Pieces every condensation method shares: per-class quotas, seeding, the result's metadata."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from fedcond.synthetic import StoredImages, SyntheticSet, default_metadata

if TYPE_CHECKING:
    from fedcond.config import Config
    from fedcond.data.base import ImageDataset


def class_quotas(per_class: list[torch.Tensor], ipc: int) -> list[int]:
    """Synthetic images per class: ``ipc``, but never more than the class has real samples.

    A federated client may hold two samples of a class or none; a synthetic set larger than its
    source would only repeat it, so absent classes get no images at all.
    """
    return [min(ipc, len(idx)) for idx in per_class]


def select_real(per_class: list[torch.Tensor], quotas: list[int], generator: torch.Generator) -> torch.Tensor:
    """Indices of ``quotas[c]`` random samples of each class, without replacement, class by class."""
    chosen = [idx[torch.randperm(len(idx), generator=generator)[:q]] for idx, q in zip(per_class, quotas)]
    return torch.cat(chosen) if chosen else torch.empty(0, dtype=torch.int64)


def build_synthetic_set(
    images: torch.Tensor,
    labels: torch.Tensor,
    data: ImageDataset,
    config: Config,
    *,
    seconds: float,
    extra_timings: dict[str, float] | None = None,
    stored: StoredImages | None = None,
    **extra: Any,
) -> SyntheticSet:
    """Wrap finished tensors with the metadata downstream users rely on (and the factorised
    ``stored`` images they decode from, if any)."""
    c = config.condense
    matching = c.method == "matching"
    metadata = default_metadata(
        dataset=data.name,
        mean=list(data.mean),
        std=list(data.std),
        method=c.method,
        feature_map=c.feature_map,
        discrepancy=c.discrepancy if matching else None,
        ipc=c.ipc,
        init=c.init if matching else "real",  # coresets are real samples
        seed=config.seed,
        timings={"condense_seconds": seconds, **(extra_timings or {})},
        labels={"source": "learned" if labels.ndim == 2 else "hard"},
        **extra,
    )
    return SyntheticSet(
        images=images.detach().to("cpu", torch.float32).contiguous(),
        labels=labels.detach().cpu(),
        num_classes=data.num_classes,
        metadata=metadata,
        stored=None if stored is None else StoredImages(stored.images.detach().to("cpu", torch.float32).contiguous(), stored.factor),
    )
