"""Any image dataset saved with ``numpy.savez``: ``x_train, y_train`` and optionally ``x_test, y_test``.

Images are ``[N, H, W]``, ``[N, H, W, C]`` or ``[N, C, H, W]`` (1, 3 or 4 channels; channels first
when both axes could be), uint8 (0..255) or float; labels are non-negative integers and there are
``max label + 1`` classes. An optional 1-D string array ``class_names`` names them. Without test
arrays, a stratified ``test_fraction`` of the train arrays is held out. Mean and std come from the
train images. The file is read with ``allow_pickle=False``, so it cannot run code.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from fedcond.data.base import DatasetSplits
from fedcond.data.config import DatasetConfig
from fedcond.data.convert import make_splits, stratified_split
from fedcond.data.paths import data_root
from fedcond.data.registry import register_dataset
from fedcond.errors import DataError, DatasetUnavailableError

_FILE = "dataset.data_root=FILE.npz holding x_train, y_train and optionally x_test, y_test"
_CHANNELS = (1, 3, 4)


def _open(path: Path) -> np.lib.npyio.NpzFile:
    """The archive, checked to hold train arrays and either both test arrays or neither."""
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise DataError(f"{path} is not a readable .npz file: {exc}") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise DataError(f"{path} holds a single array, not an .npz archive with x_train and y_train")
    keys = set(archive.files)
    if not {"x_train", "y_train"} <= keys or len(keys & {"x_test", "y_test"}) == 1:
        archive.close()
        raise DataError(
            f"{path} must hold x_train, y_train and optionally both x_test, y_test; "
            f"it holds {', '.join(sorted(keys)) or 'nothing'}"
        )
    return archive


def _array(archive: np.lib.npyio.NpzFile, key: str, path: Path) -> np.ndarray:
    try:
        return archive[key]
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:  # corrupt member, object array
        raise DataError(f"{path}: cannot read {key}: {exc}") from None


def _images(x: np.ndarray, key: str, path: Path) -> tuple[np.ndarray, float]:
    """``[N, C, H, W]`` (a view) and the divisor that puts the pixels on a unit scale."""
    if x.dtype == np.uint8:
        scale = 255.0
    elif np.issubdtype(x.dtype, np.floating):
        if not np.isfinite(x).all():
            raise DataError(f"{path}: {key} holds NaN or infinite values")
        scale = 1.0
    else:
        raise DataError(f"{path}: {key} must be uint8 (0..255) or float, got {x.dtype}")
    if x.ndim == 3:
        x = x[:, None]
    elif x.ndim == 4 and x.shape[1] not in _CHANNELS and x.shape[3] in _CHANNELS:
        x = x.transpose(0, 3, 1, 2)
    elif x.ndim != 4 or x.shape[1] not in _CHANNELS:
        raise DataError(
            f"{path}: {key} must be [N, H, W], [N, H, W, C] or [N, C, H, W] with C in 1, 3, 4; got {x.shape}"
        )
    if len(x) == 0:
        raise DataError(f"{path}: {key} holds no images")
    return x, scale


def _labels(y: np.ndarray, key: str, count: int, path: Path) -> np.ndarray:
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise DataError(f"{path}: {key} must be a 1-D integer array, got {y.dtype} {y.shape}")
    if len(y) != count:
        raise DataError(f"{path}: {key} has {len(y)} labels for {count} images")
    if y.min() < 0:
        raise DataError(f"{path}: {key} holds negative labels")
    return y.astype(np.int64)


def _class_names(archive: np.lib.npyio.NpzFile, num_classes: int, path: Path) -> tuple[str, ...]:
    if "class_names" not in archive.files:
        return ()
    names = _array(archive, "class_names", path)
    if names.dtype.kind != "U" or names.shape != (num_classes,):
        raise DataError(f"{path}: class_names must be {num_classes} strings, got {names.dtype} {names.shape}")
    return tuple(str(name) for name in names)


def _missing(path: Path | None) -> str:
    if path is None:
        return f"needs {_FILE}"
    return f"not found at {path}: pass {_FILE}"


def _path(cfg: DatasetConfig) -> Path:
    path = data_root(cfg)
    if path is None or not path.is_file():
        raise DatasetUnavailableError(f"npz {_missing(path)}")
    return path


def _probe(cfg: DatasetConfig) -> tuple[bool, str]:
    path = data_root(cfg)
    if path is None or not path.is_file():
        return False, _missing(path)
    try:
        with _open(path) as archive:
            has_test = "x_test" in archive.files
    except DataError as exc:
        return False, str(exc)
    return True, f"{path} ({'own test split' if has_test else 'test split held out of the train arrays'})"


@register_dataset("npz", probe=_probe)
def load_npz(cfg: DatasetConfig) -> DatasetSplits:
    """The arrays of the .npz file at ``dataset.data_root``, validated and normalised."""
    path = _path(cfg)
    with _open(path) as archive:
        x_train, scale = _images(_array(archive, "x_train", path), "x_train", path)
        y_train = _labels(_array(archive, "y_train", path), "y_train", len(x_train), path)
        if "x_test" in archive.files:
            x_test, test_scale = _images(_array(archive, "x_test", path), "x_test", path)
            y_test = _labels(_array(archive, "y_test", path), "y_test", len(x_test), path)
            if test_scale != scale:
                raise DataError(f"{path}: x_train is {x_train.dtype} but x_test is {x_test.dtype}")
        else:
            train, test = stratified_split(y_train, cfg.test_fraction, cfg.split_seed, "npz")
            x_train, y_train, x_test, y_test = x_train[train], y_train[train], x_train[test], y_train[test]
        num_classes = int(max(y_train.max(), y_test.max())) + 1
        class_names = _class_names(archive, num_classes, path)
    return make_splits(
        "npz",
        (x_train, y_train),
        (x_test, y_test),
        scale=scale,
        num_classes=num_classes,
        class_names=class_names,
    )
