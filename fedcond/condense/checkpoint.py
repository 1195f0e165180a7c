"""Resumable state of a matching run: saved atomically, loaded without unpickling objects.

A checkpoint holds the synthetic tensors, the optimiser's and the feature map's state, the
iteration reached, the time spent and the loss trace, plus a fingerprint of every setting that
must not change on resumption (all of ``seed``, ``dataset`` and ``condense`` except
``iterations``, which may grow, and ``checkpoint_every``).
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from fedcond.errors import ConfigError
from fedcond.io import atomic_write_bytes

if TYPE_CHECKING:
    from fedcond.config import Config

CHECKPOINT_FORMAT = "fedcond.checkpoint/1"


def fingerprint(config: Config) -> str:
    """What must not change between a checkpoint and its resumption (iterations may grow)."""
    data = config.to_dict()
    condense = {k: v for k, v in data["condense"].items() if k not in ("iterations", "checkpoint_every")}
    return json.dumps({"seed": config.seed, "dataset": data["dataset"], "condense": condense}, sort_keys=True)


class MatchingCheckpoint:
    """The checkpoint file of one matching run.

    Parameters
    ----------
    path
        The file; it is replaced atomically at every save.
    config
        The run's config, whose fingerprint a resumed run must match.
    """

    def __init__(self, path: Path, config: Config) -> None:
        self.path, self.fingerprint = path, fingerprint(config)

    def save(self, state: dict[str, Any]) -> None:
        """Write ``state`` (tensors and plain values only) with the format and fingerprint."""
        buffer = io.BytesIO()
        torch.save({"format": CHECKPOINT_FORMAT, "fingerprint": self.fingerprint, **state}, buffer)
        atomic_write_bytes(self.path, buffer.getvalue())

    def load(self) -> dict[str, Any] | None:
        """The saved state, or None when there is no checkpoint yet; :class:`ConfigError` if it cannot be used."""
        if not self.path.exists():
            return None
        try:
            state = torch.load(self.path, map_location="cpu", weights_only=True)
            ok = isinstance(state, dict) and state.get("format") == CHECKPOINT_FORMAT
        except Exception as exc:
            raise ConfigError(f"cannot resume from checkpoint {self.path}: {str(exc).splitlines()[0]}") from None
        if not ok:
            raise ConfigError(f"cannot resume from checkpoint {self.path}: not a fedcond checkpoint")
        if state["fingerprint"] != self.fingerprint:
            raise ConfigError(
                f"checkpoint {self.path} was made with a different config; delete it or restore that config"
            )
        return state
