"""Device selection, in one place: CUDA when present, CPU otherwise."""

from __future__ import annotations

import torch

from fedcond.errors import ConfigError


def resolve_device(spec: str = "auto") -> torch.device:
    """Turn ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"`` into a usable device.

    ``auto`` picks the first CUDA device when one is visible (a Flower node given ``num_gpus``
    sees its GPU through ``CUDA_VISIBLE_DEVICES``) and the CPU otherwise.
    """
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(spec)
    except RuntimeError:
        raise ConfigError(f"unknown device {spec!r}; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {spec!r} requested but CUDA is not available here; use auto or cpu")
    if device.type not in ("cpu", "cuda"):
        raise ConfigError(f"unsupported device {spec!r}; use auto, cpu, cuda or cuda:N")
    return device
