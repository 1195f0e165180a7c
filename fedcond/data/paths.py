"""Where dataset files are looked for and downloaded to."""

from __future__ import annotations

import os
from pathlib import Path

from fedcond.data.config import DatasetConfig
from fedcond.errors import DatasetUnavailableError

#: Debian's dataset packages (e.g. ``dataset-fashion-mnist``) install here.
SYSTEM_DATASETS_DIR = Path("/usr/share/datasets")


def cache_dir() -> Path:
    """The download folder for datasets without a ``data_root``: ``$XDG_CACHE_HOME/fedcond/datasets``.

    It follows torchvision's layout (``MNIST/raw``, ``cifar-10-batches-py``) so torchvision downloads
    land where the loaders look.
    """
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "fedcond" / "datasets"


def data_root(cfg: DatasetConfig) -> Path | None:
    """The config's ``data_root`` as a path (``~`` expanded), or None when unset."""
    return Path(cfg.data_root).expanduser() if cfg.data_root else None


def download_root(cfg: DatasetConfig) -> Path:
    """Where torchvision downloads to: the ``data_root`` when given, the cache otherwise."""
    return data_root(cfg) or cache_dir()


def torchvision_download(name: str, torchvision_class: str, root: Path, instead: str) -> None:
    """Download a dataset into ``root`` with torchvision; a failure is one line ending in ``instead``.

    Only the download is torchvision's (its URLs, mirrors and checksums); fedcond reads the files.
    """
    # Imported here: torchvision takes seconds to import and is only needed to download.
    import torchvision.datasets

    try:
        getattr(torchvision.datasets, torchvision_class)(root=str(root), train=False, download=True)
    except (OSError, RuntimeError) as exc:  # torchvision's errors for no network or a bad checksum
        # torchvision's message spans lines (one per mirror tried): fold it onto one.
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise DatasetUnavailableError(f"{name}: download into {root} failed ({reason}); {instead}") from None
