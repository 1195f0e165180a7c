"""Images in class subfolders, torchvision's ``ImageFolder`` layout: ``<root>/<class>/<image>``.

torchvision's ``ImageFolder`` finds the classes (sorted folder names) and the image files; the
pixels are decoded here into one uint8 array. Every image is resized (bilinear) to the size of the
first one, so a folder of mixed sizes still gives one tensor. The images stay one channel when all
are 8-bit grayscale and become RGB otherwise (alpha is dropped). A stratified ``test_fraction``
(``split_seed``) is held out; mean and std come from the train images.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image

from fedcond.data.base import DatasetSplits
from fedcond.data.config import DatasetConfig
from fedcond.data.convert import Arrays, make_splits, stratified_split
from fedcond.data.paths import data_root
from fedcond.data.registry import register_dataset
from fedcond.errors import DataError, DatasetUnavailableError

_FOLDER = "dataset.data_root=DIR with one subfolder of images per class"
_GRAYSCALE_MODES = ("1", "L", "LA")


def _header(path: str) -> tuple[str, tuple[int, int]]:
    """Mode and size of an image, read from its header only."""
    try:
        with Image.open(path) as image:
            return image.mode, image.size
    except (OSError, ValueError, SyntaxError) as exc:  # PIL's errors for unreadable image files
        raise DataError(f"{path} is not a readable image: {exc}") from None


def read_images(samples: list[tuple[str, int]]) -> Arrays:
    """uint8 pixels ``[N, C, H, W]`` (a view) and int64 labels of ``(path, class index)`` samples."""
    headers = [_header(path) for path, _ in samples]
    mode = "L" if all(m in _GRAYSCALE_MODES for m, _ in headers) else "RGB"
    width, height = headers[0][1]
    pixels = np.empty((len(samples), height, width, len(mode)), dtype=np.uint8)
    for i, (path, _) in enumerate(samples):
        try:
            with Image.open(path) as opened:
                image = opened.convert(mode)
                if image.size != (width, height):
                    image = image.resize((width, height), Image.Resampling.BILINEAR)
                pixels[i] = np.asarray(image).reshape(height, width, len(mode))
        except (OSError, ValueError, SyntaxError) as exc:
            raise DataError(f"{path} is not a readable image: {exc}") from None
    labels = np.array([label for _, label in samples], dtype=np.int64)
    return pixels.transpose(0, 3, 1, 2), labels


def _missing(root: Path | None) -> str:
    if root is None:
        return f"needs {_FOLDER}"
    return f"not found at {root}: pass {_FOLDER}"


def _root(cfg: DatasetConfig) -> Path:
    root = data_root(cfg)
    if root is None or not root.is_dir():
        raise DatasetUnavailableError(f"image-folder {_missing(root)}")
    return root


def _probe(cfg: DatasetConfig) -> tuple[bool, str]:
    root = data_root(cfg)
    if root is None or not root.is_dir():
        return False, _missing(root)
    # Counts class folders the way ImageFolder finds them, without importing torchvision.
    classes = [entry.name for entry in os.scandir(root) if entry.is_dir()]
    if not classes:
        return False, f"no class subfolders in {root}: pass {_FOLDER}"
    return True, f"{len(classes)} classes in {root}"


@register_dataset("image-folder", probe=_probe)
def load_image_folder(cfg: DatasetConfig) -> DatasetSplits:
    """The images under ``dataset.data_root``, one class per subfolder."""
    root = _root(cfg)
    # Imported here: torchvision takes seconds to import and only this dataset needs it to load.
    from torchvision.datasets import ImageFolder

    try:
        folder = ImageFolder(str(root))
    except FileNotFoundError as exc:  # no class folders, or a class without image files
        raise DataError(f"image-folder {root}: {exc}") from None
    images, labels = read_images(folder.samples)
    train, test = stratified_split(labels, cfg.test_fraction, cfg.split_seed, "image-folder")
    return make_splits(
        "image-folder",
        (images[train], labels[train]),
        (images[test], labels[test]),
        scale=255.0,
        num_classes=len(folder.classes),
        class_names=folder.classes,
    )
