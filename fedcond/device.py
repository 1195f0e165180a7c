"""Device selection, in one place: CUDA when present, CPU otherwise."""

from __future__ import annotations

import contextlib
import ctypes
import os
from collections.abc import Callable
from typing import TypeVar

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
    """The device to run on: :func:`check_device`, then :func:`prepare_cuda` or :func:`prepare_cpu`."""
    device = check_device(spec)
    prepare_cuda(device)
    prepare_cpu(device)
    return device


#: glibc's ``mallopt`` parameters (malloc.h) and the values :func:`prepare_cpu` sets.
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
#: Buffers up to glibc's largest mmap threshold (32 MiB: a 64-image chunk's 128 x 28 x 28 activations
#: are 25.7 MB) come from the heap, and freed heap memory is kept for reuse rather than trimmed.
_MMAP_THRESHOLD = 32 * 2**20
_TRIM_THRESHOLD = 2**30
_cpu_prepared = False


def prepare_cpu(device: torch.device) -> bool:
    """Keep the CPU's activation buffers in the process: once per process, on glibc; True when set.

    Every forward pass allocates its activations anew. Under glibc's defaults the large ones are
    mapped from the OS and returned on free, so each pass pays a page fault per 4 KiB touched
    (expensive in a VM): measured on 2 cores, a ConvNet-3 first convolution over 64 28x28 images took
    79 ms, 17.5 ms with the buffers kept. This is the in-process form of the usual advice to run
    PyTorch on CPUs with tcmalloc or jemalloc; arithmetic is unchanged. The cost is that the
    process keeps its peak heap until it exits. ``FEDCOND_CPU_ALLOCATOR=default`` leaves glibc alone.
    """
    global _cpu_prepared
    if device.type != "cpu" or _cpu_prepared:
        return _cpu_prepared
    if os.environ.get("FEDCOND_CPU_ALLOCATOR", "tuned") == "default":
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (macOS, musl): nothing to tune
        return False
    _cpu_prepared = bool(mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD)) and bool(mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD))
    return _cpu_prepared


#: Samples per forward pass on the CPU. A ConvNet's activations for a few dozen 28x28 images at
#: width 128 stay in cache; at 512+ images they spill to RAM and instance norm, ReLU and pooling
#: become memory-bound (measured on 2 cores: 64-image chunks embed ~2x faster than 512).
CPU_CHUNK = 64
#: On a GPU larger batches pay; the bound only limits activation memory.
CUDA_CHUNK = 4096


def chunk_size(device: torch.device) -> int:
    """How many samples to push through a network at once on ``device``."""
    return CUDA_CHUNK if device.type == "cuda" else CPU_CHUNK


def split_pieces(
    x: torch.Tensor, y: torch.Tensor, size: int, *, equal: bool
) -> tuple[tuple[torch.Tensor, ...], tuple[torch.Tensor, ...]]:
    """``x`` and ``y`` in pieces of at most ``size`` samples, for a chunked forward pass.

    A compiled graph is specialised to its input shape, so compiled callers ask for ``equal``
    pieces (100 -> 50 + 50, not 64 + 36: one shape per call); eager callers keep the plain split,
    so their numerics are unchanged.
    """
    if equal:
        count = -(-len(x) // size)
        return x.tensor_split(count), y.tensor_split(count)
    return x.split(size), y.split(size)


#: ``evaluation.precision``: ``auto`` is bf16 autocast on CUDA devices that support it and fp32 on
#: the CPU; ``fp32`` never autocasts (the old CUDA numerics are ``auto``); ``bf16`` autocasts on
#: either device, with fp32 master weights. CPU bf16 pays only where the CPU has bf16 instructions
#: (AVX-512 BF16, AMX); on an AVX2 CPU oneDNN emulates it and a ConvNet step runs ~10x slower.
PRECISIONS = ("auto", "fp32", "bf16")


def autocast(device: torch.device, precision: str = "auto") -> contextlib.AbstractContextManager[None]:
    """The autocast context of ``precision`` on ``device`` (see :data:`PRECISIONS`); a no-op for fp32."""
    if precision == "bf16" or (precision == "auto" and device.type == "cuda" and torch.cuda.is_bf16_supported()):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def prepare_cuda(device: torch.device) -> None:
    """TF32 matmuls/convolutions on CUDA: free speed on Ampere+, within the noise of this protocol."""
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True


Fn = TypeVar("Fn", bound=Callable[..., object])
_COMPILED: dict[str, Callable[..., object]] = {}


def compiled_function(name: str, function: Fn) -> Fn:
    """``torch.compile(function)``, made once per process under ``name`` and then shared.

    The compiled functions take the network as an argument, so every fresh network of the same
    architecture, input shape and precision reuses one graph (dynamo guards on the module's
    structure, not its identity): the compile cost is paid once per process, not once per network.
    """
    if name not in _COMPILED:
        _COMPILED[name] = torch.compile(function)
    return _COMPILED[name]  # type: ignore[return-value]
