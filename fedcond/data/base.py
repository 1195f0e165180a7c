"""The in-memory image dataset every part of fedcond works on."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from fedcond.errors import DataError


@dataclass(frozen=True)
class ImageDataset:
    """Normalised images ``[N, C, H, W]`` float32 with labels ``[N]`` int64 in ``[0, num_classes)``.

    ``mean``/``std`` are the per-channel normalisation already applied to ``images``; they travel
    with synthetic sets so that a set can be shown (denormalised) or checked against a dataset.
    """

    images: torch.Tensor
    labels: torch.Tensor
    num_classes: int
    name: str
    mean: tuple[float, ...]
    std: tuple[float, ...]
    class_names: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        if self.images.ndim != 4:
            raise DataError(f"{self.name}: images must be [N, C, H, W], got shape {tuple(self.images.shape)}")
        if self.images.dtype != torch.float32:
            raise DataError(f"{self.name}: images must be float32, got {self.images.dtype}")
        if self.labels.ndim != 1 or self.labels.dtype != torch.int64:
            raise DataError(f"{self.name}: labels must be a 1-D int64 tensor")
        if len(self.labels) != len(self.images):
            raise DataError(f"{self.name}: {len(self.images)} images but {len(self.labels)} labels")
        if len(self.labels) and (int(self.labels.min()) < 0 or int(self.labels.max()) >= self.num_classes):
            raise DataError(f"{self.name}: labels outside [0, {self.num_classes})")
        if len(self.mean) != self.channels or len(self.std) != self.channels:
            raise DataError(f"{self.name}: mean/std need one value per channel ({self.channels})")

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def channels(self) -> int:
        return int(self.images.shape[1])

    @property
    def image_size(self) -> tuple[int, int]:
        return int(self.images.shape[2]), int(self.images.shape[3])

    def indices_per_class(self) -> list[torch.Tensor]:
        """For each class, the indices of its samples (possibly empty)."""
        return [torch.nonzero(self.labels == c, as_tuple=True)[0] for c in range(self.num_classes)]

    def class_counts(self) -> torch.Tensor:
        return torch.bincount(self.labels, minlength=self.num_classes)

    def subset(self, indices: torch.Tensor) -> "ImageDataset":
        """The samples at ``indices``, with the same classes and normalisation."""
        return ImageDataset(
            images=self.images[indices],
            labels=self.labels[indices],
            num_classes=self.num_classes,
            name=self.name,
            mean=self.mean,
            std=self.std,
            class_names=self.class_names,
        )


@dataclass(frozen=True)
class DatasetSplits:
    """A dataset's fixed train and test splits."""

    train: ImageDataset
    test: ImageDataset
