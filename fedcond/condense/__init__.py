"""Condensation methods, registered by name: discrepancy matching and the coreset baselines.

Every method is a function ``(data, config, *, device, progress, checkpoint) -> SyntheticSet``
so the CLI, the Flower client and the Avalanche storage policy call them the same way.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import torch

from fedcond.config import Config
from fedcond.data.base import ImageDataset
from fedcond.registry import Registry
from fedcond.synthetic import SyntheticSet


class CondenseMethod(Protocol):
    def __call__(
        self,
        data: ImageDataset,
        config: Config,
        *,
        device: torch.device,
        progress: bool,
        checkpoint: Path | None,
    ) -> SyntheticSet: ...


CONDENSE_METHODS: Registry[CondenseMethod] = Registry("condense method")
register_condense_method = CONDENSE_METHODS.register

# Importing the modules registers their methods.
from fedcond.condense import coreset, matching  # noqa: E402,F401
from fedcond.condense.api import condense  # noqa: E402

__all__ = ["CONDENSE_METHODS", "CondenseMethod", "condense", "register_condense_method"]
