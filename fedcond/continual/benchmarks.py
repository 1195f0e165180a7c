"""Class-incremental benchmarks, built by Avalanche itself from fedcond's datasets.

* ``mnist`` / ``fashion-mnist``: Avalanche's classic ``SplitMNIST`` / ``SplitFMNIST`` (torchvision
  datasets, Avalanche's transforms) over a local root: the IDX files fedcond finds (Debian package,
  ``dataset.data_root``) are unpacked once into torchvision's layout, so nothing is downloaded.
* any other dataset (``digits``, ``cifar10``, folders, ``.npz``): ``class_incremental_benchmark`` over
  fedcond's normalised tensors.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from fedcond.config import Config
from fedcond.data.paths import cache_dir
from fedcond.errors import ConfigError

if TYPE_CHECKING:
    from avalanche.benchmarks import CLScenario

    from fedcond.data.mnist import IdxSource


@dataclass
class ContinualBenchmark:
    """An Avalanche scenario and what a model for it needs to know."""

    name: str
    scenario: CLScenario
    num_classes: int
    image_shape: tuple[int, int, int]
    class_order: list[int]


def build_benchmark(config: Config, seed: int) -> ContinualBenchmark:
    """The class-incremental benchmark of ``config.dataset`` in ``continual.experiences`` experiences."""
    from fedcond.data import load_dataset

    k = config.continual
    if config.dataset.name in _CLASSIC:
        return _classic(config, seed)
    splits = load_dataset(config.dataset)
    num_classes = splits.train.num_classes
    _check_split(num_classes, k.experiences, k.class_order)
    from avalanche.benchmarks.scenarios.supervised import class_incremental_benchmark
    from avalanche.benchmarks.utils import _make_taskaware_tensor_classification_dataset

    train = _make_taskaware_tensor_classification_dataset(splits.train.images, splits.train.labels)
    test = _make_taskaware_tensor_classification_dataset(splits.test.images, splits.test.labels)
    scenario = class_incremental_benchmark(
        {"train": train, "test": test},
        num_experiences=k.experiences,
        class_order=k.class_order,
        seed=None if k.class_order is not None else seed,
    )
    order = [c for exp in scenario.train_stream for c in sorted(exp.classes_in_this_experience)]
    return ContinualBenchmark(f"split-{config.dataset.name}", scenario, num_classes, tuple(splits.train.images.shape[1:]), order)


def _check_split(num_classes: int, experiences: int, class_order: list[int] | None) -> None:
    if experiences > num_classes:
        raise ConfigError(f"continual.experiences {experiences} exceeds the dataset's {num_classes} classes")
    if num_classes % experiences:
        raise ConfigError(f"continual.experiences {experiences} does not divide the dataset's {num_classes} classes evenly")
    if class_order is not None and sorted(class_order) != list(range(num_classes)):
        raise ConfigError(f"continual.class_order must be a permutation of 0..{num_classes - 1}")


def _classic(config: Config, seed: int) -> ContinualBenchmark:
    from avalanche.benchmarks.classic import SplitFMNIST, SplitMNIST

    from fedcond.data.mnist import FASHION_MNIST, MNIST

    source = {"mnist": MNIST, "fashion-mnist": FASHION_MNIST}[config.dataset.name]
    k = config.continual
    _check_split(len(source.class_names), k.experiences, k.class_order)
    root = avalanche_root(source, config)
    build = {"mnist": SplitMNIST, "fashion-mnist": SplitFMNIST}[config.dataset.name]
    scenario = build(
        n_experiences=k.experiences,
        seed=None if k.class_order is not None else seed,
        fixed_class_order=k.class_order,
        return_task_id=False,
        dataset_root=root,
    )
    x = scenario.train_stream[0].dataset[0][0]
    return ContinualBenchmark(
        f"split-{config.dataset.name}", scenario, len(source.class_names), tuple(x.shape), list(scenario.classes_order)
    )


_CLASSIC = ("mnist", "fashion-mnist")


def avalanche_root(source: IdxSource, config: Config) -> Path:
    """A torchvision-layout root (``<Name>/raw/<file>``) holding the dataset's four IDX files, unpacked.

    torchvision's MNIST classes download (which fails offline) unless the unpacked files are in
    ``raw/``; the Debian package ships them gzipped. The root is keyed by the source folder, so a
    test's tiny files and the real ones never mix.
    """
    from fedcond.errors import DatasetUnavailableError

    files = source.locate(config.dataset)
    if files is None:
        raise DatasetUnavailableError(f"{source.name} {source.missing_message(config.dataset)}")
    origin = next(iter(files.values())).parent.resolve()
    fingerprint = "|".join(f"{p.name}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in files.values())
    key = hashlib.sha1(f"{origin}|{fingerprint}".encode()).hexdigest()[:12]
    root = cache_dir() / "avalanche" / key
    raw = root / source.torchvision_class / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for stem, path in files.items():
        target = raw / stem
        if target.is_file():
            continue
        partial = raw / f".{stem}.{os.getpid()}.partial"
        with (gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")) as src, open(partial, "wb") as dst:
            shutil.copyfileobj(src, dst)
        os.replace(partial, target)  # atomic: a crash never leaves a truncated file torchvision trusts
    return root
