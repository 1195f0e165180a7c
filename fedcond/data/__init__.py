"""Datasets: name -> loader registry, the built-in loaders, and normalisation helpers.

Every loader returns :class:`DatasetSplits` of float32 images ``[N, C, H, W]`` normalised per
channel, with int64 labels. Built in: ``digits`` (scikit-learn, always available), ``mnist``,
``fashion-mnist``, ``cifar10``, ``npz`` (a ``numpy.savez`` file) and ``image-folder``.
"""

# Imported for their side effect: each module registers its datasets.
from fedcond.data import cifar, digits, folder, mnist, npz  # noqa: F401
from fedcond.data.base import DatasetSplits, ImageDataset
from fedcond.data.config import DatasetConfig
from fedcond.data.convert import channel_stats, denormalise, normalise, stratified_split
from fedcond.data.paths import cache_dir
from fedcond.data.registry import (
    DATASETS,
    Loader,
    Probe,
    dataset_availability,
    load_dataset,
    register_dataset,
)

__all__ = [
    "DATASETS",
    "DatasetConfig",
    "DatasetSplits",
    "ImageDataset",
    "Loader",
    "Probe",
    "cache_dir",
    "channel_stats",
    "dataset_availability",
    "denormalise",
    "load_dataset",
    "normalise",
    "register_dataset",
    "stratified_split",
]
