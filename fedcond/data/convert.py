"""Turn raw image arrays into normalised :class:`DatasetSplits`, shared by every loader.

Loaders hand over the arrays as read (uint8 pixels, any strides); the pixels become float32
exactly once and every later step works in place, so a dataset needs one float copy in memory.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from fedcond.data.base import DatasetSplits, ImageDataset
from fedcond.errors import ConfigError, DataError

#: Arrays of images ``[N, C, H, W]`` and labels ``[N]``.
Arrays = tuple[np.ndarray, np.ndarray]


def to_float_images(images: np.ndarray, scale: float) -> torch.Tensor:
    """A contiguous float32 tensor of ``images / scale``; ``images`` is ``[N, C, H, W]`` of any strides.

    Already contiguous float32 ``images`` are not copied: the tensor (and later in-place steps) share
    their memory, which suits arrays a loader has just read.
    """
    tensor = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32))
    if scale != 1.0:
        tensor.div_(scale)
    return tensor


def channel_stats(images: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and (population) standard deviation of ``[N, C, H, W]`` images."""
    std, mean = torch.std_mean(images, dim=(0, 2, 3), correction=0)
    return tuple(mean.tolist()), tuple(std.tolist())


def _per_channel(values: Sequence[float], like: torch.Tensor) -> torch.Tensor:
    # Shaped [C, 1, 1] so it broadcasts over both [C, H, W] and [N, C, H, W].
    return torch.as_tensor(values, dtype=like.dtype, device=like.device).view(-1, 1, 1)


def normalise(
    images: torch.Tensor, mean: Sequence[float], std: Sequence[float], *, inplace: bool = False
) -> torch.Tensor:
    """``(images - mean) / std`` per channel, for ``[C, H, W]`` or ``[N, C, H, W]`` images."""
    out = images if inplace else images.clone()
    return out.sub_(_per_channel(mean, out)).div_(_per_channel(std, out))


def denormalise(images: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """Undo :func:`normalise`: back to the pixel scale (``[0, 1]`` for the built-in datasets)."""
    return images * _per_channel(std, images) + _per_channel(mean, images)


def stratified_split(
    labels: np.ndarray, test_fraction: float, seed: int, name: str
) -> tuple[np.ndarray, np.ndarray]:
    """Train and test indices of a fixed split that keeps every class's share in both parts."""
    if not 0 < test_fraction < 1:
        raise ConfigError(f"dataset.test_fraction must be in (0, 1), got {test_fraction}")
    # Imported here: scikit-learn takes a second to import and most datasets have official splits.
    from sklearn.model_selection import train_test_split

    try:
        train, test = train_test_split(
            np.arange(len(labels)), test_size=test_fraction, stratify=labels, random_state=seed
        )
    except ValueError as exc:
        raise DataError(
            f"{name}: cannot split {len(labels)} samples with test_fraction={test_fraction}: {exc}"
        ) from None
    # Sorted so both parts keep the source order (and the split depends only on the seed).
    return np.sort(train), np.sort(test)


def make_splits(
    name: str,
    train: Arrays,
    test: Arrays,
    *,
    scale: float,
    num_classes: int,
    class_names: Sequence[str] = (),
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> DatasetSplits:
    """Normalised train and test sets from raw arrays; ``images / scale`` puts pixels in ``[0, 1]``.

    Without ``mean``/``std`` they are computed from the train images, so the test set never
    leaks into the normalisation.
    """
    train_images = to_float_images(train[0], scale)
    if mean is None or std is None:
        mean, std = channel_stats(train_images)
    if min(std) <= 0:
        raise DataError(f"{name}: a channel of the train images is constant (std 0); cannot normalise")
    mean, std = tuple(float(m) for m in mean), tuple(float(s) for s in std)

    def build(images: torch.Tensor, labels: np.ndarray) -> ImageDataset:
        return ImageDataset(
            images=normalise(images, mean, std, inplace=True),
            labels=torch.tensor(labels, dtype=torch.int64),
            num_classes=num_classes,
            name=name,
            mean=mean,
            std=std,
            class_names=tuple(class_names),
        )

    return DatasetSplits(
        train=build(train_images, train[1]),
        test=build(to_float_images(test[0], scale), test[1]),
    )
