"""Device handling lives in one module: selection, chunk sizes, mixed precision."""

from __future__ import annotations

import pytest
import torch

from fedcond.device import CPU_CHUNK, CUDA_CHUNK, autocast, chunk_size, resolve_device
from fedcond.errors import ConfigError


def test_cpu_is_fp32_and_cache_sized() -> None:
    cpu = resolve_device("cpu")
    assert chunk_size(cpu) == CPU_CHUNK < CUDA_CHUNK == chunk_size(torch.device("cuda"))
    with autocast(cpu):
        y = torch.ones(2, 2) @ torch.ones(2, 2)
    assert y.dtype == torch.float32


def test_auto_picks_what_is_there() -> None:
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")


@pytest.mark.parametrize("spec", ["tpu", "gpu:0", "cuda:x"])
def test_bad_specs_are_one_line_errors(spec: str) -> None:
    with pytest.raises(ConfigError, match="device"):
        resolve_device(spec)


@pytest.mark.skipif(torch.cuda.is_available(), reason="only meaningful without a GPU")
def test_cuda_without_a_gpu_says_so() -> None:
    with pytest.raises(ConfigError, match="CUDA is not available"):
        resolve_device("cuda")
