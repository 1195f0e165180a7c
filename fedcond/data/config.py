"""The ``dataset`` section of a config: which dataset, and where its files are.

It lives beside the loaders that read it (and that the root :class:`~fedcond.config.Config`
validates it against), so the data package never imports the root config.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class DatasetConfig:
    """Which dataset, and where its files are."""

    name: str = "digits"
    #: Folder holding the dataset's files (IDX files, CIFAR batches, an image folder, an .npz file).
    data_root: str | None = None
    #: Allow torchvision to download when the files are missing (needs internet).
    download: bool = False
    #: Share of samples held out for testing where a dataset has no official split (digits, folders).
    test_fraction: float = 0.25
    #: Seed of that fixed stratified split; kept apart from ``seed`` so runs share one test set.
    split_seed: int = 0
