"""The registry of condensation methods: ``(data, config, *, device, progress, checkpoint) -> SyntheticSet``.

Every method has that signature, so the CLI, the Flower client and the Avalanche storage policy
call them the same way; ``condense.method`` names one.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import torch

from fedcond.registry import Registry

if TYPE_CHECKING:
    from fedcond.config import Config
    from fedcond.data.base import ImageDataset
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
