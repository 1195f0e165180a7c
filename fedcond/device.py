"""Device selection, in one place: CUDA when present, CPU otherwise."""

from __future__ import annotations

import contextlib

import torch

from fedcond.errors import ConfigError


def check_device(spec: str = "auto") -> torch.device:
    """The device ``spec`` names (``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"``), checked; nothing is switched.

    ``auto`` picks the first CUDA device when one is visible (a Flower node given ``num_gpus``
    sees its GPU through ``CUDA_VISIBLE_DEVICES``) and the CPU otherwise. Config validation uses
    this: it has no side effects.
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


def resolve_device(spec: str = "auto") -> torch.device:
    """The device to run on: :func:`check_device`, then the CUDA settings of :func:`prepare_cuda`."""
    device = check_device(spec)
    prepare_cuda(device)
    return device


#: Samples per forward pass on the CPU. A ConvNet's activations for a few dozen 28x28 images at
#: width 128 stay in cache; at 512+ images they spill to RAM and instance norm, ReLU and pooling
#: become memory-bound (measured on 2 cores: 64-image chunks embed ~2x faster than 512).
CPU_CHUNK = 64
#: On a GPU larger batches pay; the bound only limits activation memory.
CUDA_CHUNK = 4096


def chunk_size(device: torch.device) -> int:
    """How many samples to push through a network at once on ``device``."""
    return CUDA_CHUNK if device.type == "cuda" else CPU_CHUNK


def autocast(device: torch.device) -> contextlib.AbstractContextManager[None]:
    """bf16 autocast on CUDA devices that support it; a no-op elsewhere (the CPU stays fp32)."""
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def prepare_cuda(device: torch.device) -> None:
    """TF32 matmuls/convolutions on CUDA: free speed on Ampere+, within the noise of this protocol."""
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
