"""The public entry point: ``fedcond.condense(data, config) -> SyntheticSet``."""

from __future__ import annotations

from pathlib import Path

import torch

from fedcond.config import Config
from fedcond.data.base import ImageDataset
from fedcond.device import resolve_device
from fedcond.errors import DataError
from fedcond.synthetic import SyntheticSet


def condense(
    data: ImageDataset,
    config: Config,
    *,
    device: torch.device | str | None = None,
    progress: bool | None = None,
    checkpoint: str | Path | None = None,
) -> SyntheticSet:
    """Condense ``data`` into a small synthetic set with the method named in ``config.condense``.

    ``device`` overrides ``config.device`` (a Flower client passes the device its node was given);
    ``checkpoint`` is a file where matching saves its state every ``condense.checkpoint_every``
    iterations and from which it resumes when the file exists.
    """
    from fedcond.condense import CONDENSE_METHODS

    config.validate()
    if len(data) == 0:
        raise DataError(f"{data.name}: cannot condense an empty dataset")
    method = CONDENSE_METHODS.get(config.condense.method)
    return method(
        data,
        config,
        device=resolve_device(config.device) if device is None else torch.device(device),
        progress=config.progress if progress is None else progress,
        checkpoint=Path(checkpoint) if checkpoint is not None else None,
    )
