"""CIFAR-10 from its python pickle batches (``cifar-10-batches-py/``).

torchvision only downloads (``dataset.download=true``). The batches are read here with a
restricted unpickler, for two reasons: a pickle can run arbitrary code, so only the numpy
globals a batch needs are allowed; and torchvision insists on the md5 of the official files,
while this reader checks the structure instead, so a subset or re-packed batches load too.
"""

from __future__ import annotations

import codecs
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from fedcond.data.base import DatasetSplits
from fedcond.data.config import DatasetConfig
from fedcond.data.convert import Arrays, make_splits
from fedcond.data.paths import cache_dir, data_root, download_root, torchvision_download
from fedcond.data.registry import register_dataset
from fedcond.errors import DataError, DatasetUnavailableError

BATCH_FOLDER = "cifar-10-batches-py"
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCHES = ("test_batch",)
CLASS_NAMES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
MEAN = (0.4914, 0.4822, 0.4465)
STD = (0.2470, 0.2435, 0.2616)

# numpy's own reconstructors, taken from its reducers so the names resolve on numpy 1.x and 2.x
# alike (the official batches were pickled by numpy 1 under Python 2; new ones name numpy._core).
_RECONSTRUCT = np.zeros(0).__reduce__()[0]
_FROMBUFFER = np.zeros(1).__reduce_ex__(5)[0]
_SAFE_GLOBALS: dict[tuple[str, str], Any] = {
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy.core.numeric", "_frombuffer"): _FROMBUFFER,
    ("numpy._core.numeric", "_frombuffer"): _FROMBUFFER,
    ("_codecs", "encode"): codecs.encode,  # how protocol 2 stores bytes, e.g. b"data" keys
}


class _BatchUnpickler(pickle.Unpickler):
    """Unpickles numpy arrays, lists, dicts, strings and numbers; refuses any other global."""

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _SAFE_GLOBALS[module, name]
        except KeyError:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}") from None


def read_batch(path: Path) -> Arrays:
    """Images ``[n, 3, 32, 32]`` uint8 and labels ``[n]`` of one batch file, validated."""
    try:
        with path.open("rb") as f:
            # latin1 decodes Python 2 strings to str and is what numpy needs for Python 2 arrays.
            entry = _BatchUnpickler(f, encoding="latin1").load()
    except Exception as exc:  # garbage bytes can raise nearly any exception inside pickle
        raise DataError(f"{path} is not a readable CIFAR batch: {exc}") from None
    if not isinstance(entry, dict):
        raise DataError(f"{path} is not a CIFAR batch: holds a {type(entry).__name__}, not a dict")
    # Python 3 pickles (and pickle.load(encoding="bytes")) give bytes keys, Python 2 ones str.
    entry = {key.decode("latin1") if isinstance(key, bytes) else key: value for key, value in entry.items()}
    data, labels = entry.get("data"), entry.get("labels")
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        described = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise DataError(f"{path}: 'data' must be a uint8 array [N, 3072], got {described}")
    if not isinstance(labels, (list, np.ndarray)):
        raise DataError(f"{path}: 'labels' must be a list of class indices, got {type(labels).__name__}")
    labels = np.asarray(labels)
    if labels.shape != (len(data),) or (len(labels) and not np.issubdtype(labels.dtype, np.integer)):
        raise DataError(f"{path}: 'labels' must be {len(data)} integers, got {labels.dtype} {labels.shape}")
    if len(labels) and (labels.min() < 0 or labels.max() >= len(CLASS_NAMES)):
        raise DataError(f"{path}: labels outside 0..{len(CLASS_NAMES) - 1}")
    return data.reshape(-1, 3, 32, 32), labels.astype(np.int64)


def _search_dirs(cfg: DatasetConfig) -> list[Path]:
    root = data_root(cfg) or cache_dir()
    return [root / BATCH_FOLDER, root]


def _locate(cfg: DatasetConfig) -> Path | None:
    """The first folder holding all six batches (``<root>/cifar-10-batches-py`` or ``<root>``)."""
    for directory in _search_dirs(cfg):
        if all((directory / name).is_file() for name in TRAIN_BATCHES + TEST_BATCHES):
            return directory
    return None


def _missing_message(cfg: DatasetConfig) -> str:
    where = " or ".join(str(d) for d in _search_dirs(cfg))
    return (
        f"not found in {where}: pass dataset.data_root=DIR holding {BATCH_FOLDER}/, "
        "or set dataset.download=true with internet (170 MB)"
    )


def _probe(cfg: DatasetConfig) -> tuple[bool, str]:
    directory = _locate(cfg)
    if directory is not None:
        return True, f"pickle batches in {directory}"
    if cfg.download:
        return True, f"downloads into {download_root(cfg) / BATCH_FOLDER} on first use (needs internet)"
    return False, _missing_message(cfg)


def _download(cfg: DatasetConfig) -> Path:
    if not cfg.download:
        raise DatasetUnavailableError(f"cifar10 {_missing_message(cfg)}")
    root = download_root(cfg)
    instead = f"pass dataset.data_root=DIR holding {BATCH_FOLDER}/ instead"
    torchvision_download("cifar10", "CIFAR10", root, instead)
    return root / BATCH_FOLDER


def _read_batches(directory: Path, names: tuple[str, ...]) -> Arrays:
    images, labels = zip(*(read_batch(directory / name) for name in names))
    return np.concatenate(images), np.concatenate(labels)


@register_dataset("cifar10", probe=_probe)
def load_cifar10(cfg: DatasetConfig) -> DatasetSplits:
    """The official 50000/10000 splits of 32x32 colour images, normalised with the standard constants."""
    directory = _locate(cfg) or _download(cfg)
    return make_splits(
        "cifar10",
        _read_batches(directory, TRAIN_BATCHES),
        _read_batches(directory, TEST_BATCHES),
        scale=255.0,
        num_classes=len(CLASS_NAMES),
        class_names=CLASS_NAMES,
        mean=MEAN,
        std=STD,
    )
