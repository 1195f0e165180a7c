"""The dataset registry: a config names a dataset, a registered loader builds its splits.

A user adds a dataset without touching fedcond::

    from fedcond.data import register_dataset

    @register_dataset("my-scans", probe=lambda cfg: (True, "generated"))
    def load_my_scans(cfg: DatasetConfig) -> DatasetSplits: ...
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import TYPE_CHECKING

from fedcond.data.base import DatasetSplits
from fedcond.data.config import DatasetConfig
from fedcond.errors import DataError
from fedcond.registry import Registry

if TYPE_CHECKING:
    from fedcond.config import Config

#: Builds a dataset's fixed train/test splits from its config.
Loader = Callable[[DatasetConfig], DatasetSplits]
#: Answers cheaply, without loading, whether a dataset is usable here: ``(usable, where or how)``.
Probe = Callable[[DatasetConfig], tuple[bool, str]]

DATASETS: Registry[Loader] = Registry("dataset")
_PROBES: dict[str, Probe] = {}


def register_dataset(
    name: str, *, probe: Probe | None = None, overwrite: bool = False
) -> Callable[[Loader], Loader]:
    """Decorator registering a loader under ``name``, with an optional availability ``probe``."""
    register = DATASETS.register(name, overwrite=overwrite)

    def decorator(loader: Loader) -> Loader:
        register(loader)
        if probe is None:
            _PROBES.pop(name, None)  # an overwritten dataset must not keep its old probe
        else:
            _PROBES[name] = probe
        return loader

    return decorator


def load_dataset(cfg: DatasetConfig | Config) -> DatasetSplits:
    """The train and test splits of the dataset ``cfg.name`` (a whole :class:`Config`: its ``dataset``).

    Raises :class:`~fedcond.errors.ConfigError` for an unknown name,
    :class:`~fedcond.errors.DatasetUnavailableError` when its files are missing and
    :class:`~fedcond.errors.DataError` when they are malformed.
    """
    if not isinstance(cfg, DatasetConfig):
        cfg = cfg.dataset  # a whole Config
    loader = DATASETS.get(cfg.name)
    splits = loader(cfg)
    if not isinstance(splits, DatasetSplits):
        raise TypeError(f"dataset loader {cfg.name!r} returned {type(splits).__name__}, not DatasetSplits")
    _check_compatible(cfg.name, splits)
    return splits


def dataset_availability(
    cfg_or_name: DatasetConfig | str, data_root: str | None = None
) -> tuple[bool, str]:
    """Whether a dataset is usable here, and a one-line message saying where it is or how to get it.

    Only looks for files (it never loads the dataset), so the ``fedcond datasets`` listing is fast.
    ``data_root``, when given, replaces the config's.
    """
    cfg = DatasetConfig(name=cfg_or_name) if isinstance(cfg_or_name, str) else cfg_or_name
    if data_root is not None:
        cfg = dataclasses.replace(cfg, data_root=data_root)
    loader = DATASETS.get(cfg.name)
    probe = _PROBES.get(cfg.name)
    if probe is None:
        return True, f"custom loader {getattr(loader, '__qualname__', repr(loader))} (not checked)"
    return probe(cfg)


def _check_compatible(name: str, splits: DatasetSplits) -> None:
    # A model trained on one split is evaluated on the other: they must agree on shapes and classes.
    train, test = splits.train, splits.test
    expected = (train.channels, train.image_size, train.num_classes)
    if expected != (test.channels, test.image_size, test.num_classes):
        raise DataError(
            f"{name}: train images are {train.channels}x{train.image_size} in {train.num_classes} classes "
            f"but test images are {test.channels}x{test.image_size} in {test.num_classes} classes"
        )
