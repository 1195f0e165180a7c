"""Device handling lives in one module: selection, chunk sizes, mixed precision."""

from __future__ import annotations

import os
import subprocess
import sys

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


FAULTS = """
import resource, sys, torch
from fedcond.device import prepare_cpu
print(prepare_cpu(torch.device("cpu")))
x, w = torch.randn(64, 1, 28, 28), torch.randn(128, 1, 3, 3)
torch.nn.functional.conv2d(x, w, padding=1)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):  # a ConvNet's first convolution over one 64-image chunk: 25.7 MB of output
    torch.nn.functional.conv2d(x, w, padding=1)
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_prepare_cpu_keeps_activation_buffers_instead_of_faulting_them_in_again() -> None:
    def run(allocator: str) -> tuple[str, int]:
        env = {**os.environ, "FEDCOND_CPU_ALLOCATOR": allocator}
        out = subprocess.run([sys.executable, "-c", FAULTS], env=env, capture_output=True, text=True, check=True)
        prepared, faults = out.stdout.split()
        return prepared, int(faults)

    tuned, default = run("tuned"), run("default")
    assert tuned[0] == "True" and default[0] == "False"
    # glibc's default gives the convolution's buffers back to the OS and faults their pages in again
    # on every pass (~6,300 per 25.7 MB); kept in the heap, the warm-up pass was the last to fault.
    assert default[1] > 10 * 5000 and tuned[1] < default[1] / 5
