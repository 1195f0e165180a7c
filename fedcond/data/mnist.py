"""MNIST and Fashion-MNIST, read from their four IDX files.

The files are looked for in ``dataset.data_root`` (flat, or torchvision's ``<root>/<Name>/raw``);
without a ``data_root``, in the Debian package's folder and then the download cache. torchvision
only downloads (``dataset.download=true``); the files are always parsed by :mod:`fedcond.data.idx`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fedcond.data.base import DatasetSplits
from fedcond.data.config import DatasetConfig
from fedcond.data.convert import Arrays, make_splits
from fedcond.data.idx import read_idx
from fedcond.data.paths import (
    SYSTEM_DATASETS_DIR,
    cache_dir,
    data_root,
    download_root,
    torchvision_download,
)
from fedcond.data.registry import register_dataset
from fedcond.errors import DataError, DatasetUnavailableError

_SPLIT_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_STEMS = tuple(stem for pair in _SPLIT_FILES.values() for stem in pair)


def _find_files(directory: Path) -> dict[str, Path] | None:
    """File stem -> path when ``directory`` holds all four files (each plain or gzipped), else None."""
    files = {}
    for stem in _STEMS:
        # The plain file first: torchvision's raw/ folder keeps both, and plain reads faster.
        path = next((p for p in (directory / stem, directory / f"{stem}.gz") if p.is_file()), None)
        if path is None:
            return None
        files[stem] = path
    return files


@dataclass(frozen=True)
class IdxSource:
    """One IDX dataset: its torchvision class (also its folder name), normalisation and classes."""

    name: str
    torchvision_class: str
    mean: float
    std: float
    class_names: tuple[str, ...]
    #: Debian package that installs the files into ``SYSTEM_DATASETS_DIR / name``.
    debian_package: str | None = None

    def search_dirs(self, cfg: DatasetConfig) -> list[Path]:
        """The folders that may hold the four files, in the order they are tried."""
        root = data_root(cfg)
        if root is not None:
            return [root, root / self.torchvision_class / "raw"]
        system = [SYSTEM_DATASETS_DIR / self.name] if self.debian_package else []
        return [*system, cache_dir() / self.torchvision_class / "raw"]

    def locate(self, cfg: DatasetConfig) -> dict[str, Path] | None:
        """File stem -> path of the first folder holding all four files, or None."""
        for directory in self.search_dirs(cfg):
            files = _find_files(directory)
            if files is not None:
                return files
        return None

    def missing_message(self, cfg: DatasetConfig) -> str:
        """Where the files were looked for and the ways to get them, on one line."""
        ways = []
        if self.debian_package and not cfg.data_root:  # the package only helps without a data_root
            ways.append(f"run `apt-get install {self.debian_package}`")
        ways.append("pass dataset.data_root=DIR holding the IDX files")
        ways.append("set dataset.download=true with internet")
        where = " or ".join(str(d) for d in self.search_dirs(cfg))
        return f"not found in {where}: {', '.join(ways[:-1])}, or {ways[-1]}"

    def probe(self, cfg: DatasetConfig) -> tuple[bool, str]:
        """Availability for ``fedcond datasets``: looks for the files without reading them."""
        files = self.locate(cfg)
        if files is not None:
            return True, f"IDX files in {next(iter(files.values())).parent}"
        if cfg.download:
            target = download_root(cfg) / self.torchvision_class / "raw"
            return True, f"downloads into {target} on first use (needs internet)"
        return False, self.missing_message(cfg)

    def load(self, cfg: DatasetConfig) -> DatasetSplits:
        """The official 60000/10000 train/test splits, normalised with the standard constants."""
        files = self.locate(cfg) or self._download(cfg)
        return make_splits(
            self.name,
            self._read(files, "train"),
            self._read(files, "test"),
            scale=255.0,
            num_classes=len(self.class_names),
            class_names=self.class_names,
            mean=(self.mean,),
            std=(self.std,),
        )

    def _download(self, cfg: DatasetConfig) -> dict[str, Path]:
        if not cfg.download:
            raise DatasetUnavailableError(f"{self.name} {self.missing_message(cfg)}")
        root = download_root(cfg)
        instead = "pass dataset.data_root=DIR holding the IDX files instead"
        torchvision_download(self.name, self.torchvision_class, root, instead)
        files = self.locate(dataclasses.replace(cfg, data_root=str(root)))
        if files is None:
            raise DatasetUnavailableError(f"{self.name}: the download left no IDX files in {root}")
        return files

    def _read(self, files: dict[str, Path], split: str) -> Arrays:
        images_path, labels_path = (files[stem] for stem in _SPLIT_FILES[split])
        images, labels = read_idx(images_path), read_idx(labels_path)
        if images.dtype != np.uint8 or images.ndim != 3:
            raise DataError(
                f"{images_path}: expected uint8 images [N, H, W], got {images.dtype} {images.shape}"
            )
        if labels.dtype != np.uint8 or labels.ndim != 1:
            raise DataError(f"{labels_path}: expected uint8 labels [N], got {labels.dtype} {labels.shape}")
        if len(labels) != len(images):
            raise DataError(f"{labels_path} has {len(labels)} labels for {len(images)} images")
        if len(labels) and int(labels.max()) >= len(self.class_names):
            raise DataError(f"{labels_path}: labels outside 0..{len(self.class_names) - 1}")
        return images[:, None], labels


MNIST = IdxSource(
    name="mnist",
    torchvision_class="MNIST",
    mean=0.1307,
    std=0.3081,
    class_names=tuple(str(digit) for digit in range(10)),
)
FASHION_MNIST = IdxSource(
    name="fashion-mnist",
    torchvision_class="FashionMNIST",
    mean=0.2860,
    std=0.3530,
    class_names=(
        "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
        "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
    ),
    debian_package="dataset-fashion-mnist",
)

register_dataset("mnist", probe=MNIST.probe)(MNIST.load)
register_dataset("fashion-mnist", probe=FASHION_MNIST.probe)(FASHION_MNIST.load)
