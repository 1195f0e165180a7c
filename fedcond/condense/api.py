"""The public entry point: ``fedcond.condense(data, config) -> SyntheticSet``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import torch

from fedcond.condense.registry import CONDENSE_METHODS
from fedcond.device import resolve_device
from fedcond.errors import DataError
from fedcond.labels import build_teacher, relabel

if TYPE_CHECKING:
    from fedcond.config import Config
    from fedcond.data.base import ImageDataset
    from fedcond.labels import Teacher
    from fedcond.synthetic import SyntheticSet


def condense(
    data: ImageDataset,
    config: Config,
    *,
    device: torch.device | str | None = None,
    progress: bool | None = None,
    checkpoint: str | Path | None = None,
    teacher: Teacher | None = None,
) -> SyntheticSet:
    """Condense ``data`` into a small synthetic set with the method named in ``config.condense``.

    Parameters
    ----------
    data
        The real images and labels to condense (a training split, a client's partition, an
        experience of a continual benchmark).
    config
        The experiment config; it is validated here. ``condense`` says how, ``privacy`` whether
        the set is a private release.
    device
        Where to condense; overrides ``config.device`` (a Flower client passes the device its
        node was given).
    progress
        Show a progress bar; overrides ``config.progress``.
    checkpoint
        A file where matching saves its state every ``condense.checkpoint_every`` iterations and
        from which it resumes when the file exists.
    teacher
        With ``condense.labels: teacher``, label the set with this teacher instead of building the
        one ``condense.teacher`` names (one teacher shared by several sets); its seconds still
        count in each set's ``condense_seconds``.

    Returns
    -------
    SyntheticSet
        Images ``[M, C, H, W]`` on the CPU, hard or soft labels, and metadata saying how they
        were made (method, discrepancy, ipc, timings, privacy).

    Raises
    ------
    fedcond.errors.ConfigError
        An invalid config, or a condensation that diverged.
    fedcond.errors.DataError
        An empty dataset.
    """
    config.validate()
    if len(data) == 0:
        raise DataError(f"{data.name}: cannot condense an empty dataset")
    method = CONDENSE_METHODS.get(config.condense.method)
    device = resolve_device(config.device) if device is None else torch.device(device)
    synthetic = method(
        data,
        config,
        device=device,
        progress=config.progress if progress is None else progress,
        checkpoint=Path(checkpoint) if checkpoint is not None else None,
    )
    if config.condense.label_source != "teacher":
        return synthetic
    if teacher is None:
        teacher = build_teacher(data, config, device=device)
    return relabel(synthetic, teacher, config)
