"""The fast paths' properties: compiled and eager give the same losses, bf16 stays within tolerance.

torch.compile needs a C++ compiler (inductor); the tests share one tiny network so each graph is
compiled once per test process.
"""

from __future__ import annotations

import shutil

import pytest
import torch

from fedcond.device import autocast, compiled_function
from fedcond.evaluation import piece_loss
from fedcond.evaluation import test_accuracy as accuracy_on
from fedcond.features import FeatureContext
from fedcond.models import build_model

CPU = torch.device("cpu")
needs_compiler = pytest.mark.skipif(shutil.which("c++") is None and shutil.which("g++") is None,
                                    reason="torch.compile's inductor needs a C++ compiler")  # fmt: skip


def tiny_network(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_model("convnet", channels=1, num_classes=10, image_size=(8, 8), width=8, depth=2)


def gradients(net: torch.nn.Module) -> list[torch.Tensor]:
    return [p.grad.detach().clone() for p in net.parameters()]


@needs_compiler
def test_compiled_loss_and_gradients_equal_eager_for_fresh_networks(digits) -> None:
    x, y = digits.train.images[:50], digits.train.labels[:50]
    compiled = compiled_function("piece-loss", piece_loss)
    for seed in (0, 1):  # the second fresh network reuses the first one's graph
        net = tiny_network(seed)
        eager = piece_loss(net, x, y)
        eager.backward()
        expected = gradients(net)
        net.zero_grad(set_to_none=True)
        loss = compiled(net, x, y)
        loss.backward()
        assert float(loss) == pytest.approx(float(eager), rel=1e-5)
        for got, want in zip(gradients(net), expected):
            torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
    soft = torch.softmax(torch.randn(50, 10, generator=torch.Generator().manual_seed(0)), 1)
    assert float(compiled(net, x, soft)) == pytest.approx(float(piece_loss(net, x, soft)), rel=1e-5)


@needs_compiler
def test_compiled_test_pass_counts_the_same_predictions(digits) -> None:
    net = tiny_network(0)
    assert len(digits.test) % 64 != 0  # the padded last chunk is exercised
    eager = accuracy_on(net, digits.test, CPU)
    assert accuracy_on(net, digits.test, CPU, compiled=True) == pytest.approx(eager, abs=100 / len(digits.test))


@needs_compiler
def test_compiled_embeddings_equal_eager(digits) -> None:
    net = tiny_network(0)
    x = digits.train.images[:64]
    eager = FeatureContext("convnet", 1, 10, (8, 8), CPU).embed(net, x)
    compiled = FeatureContext("convnet", 1, 10, (8, 8), CPU, compile=True).embed(net, x)
    torch.testing.assert_close(compiled, eager, rtol=1e-4, atol=1e-5)


def test_bf16_loss_within_tolerance_of_fp32(digits) -> None:
    net = tiny_network(0)
    x, y = digits.train.images[:32], digits.train.labels[:32]
    fp32 = float(piece_loss(net, x, y))
    with autocast(CPU, "bf16"):
        bf16 = piece_loss(net, x, y)
    assert bf16.dtype == torch.float32  # cross-entropy runs in fp32 under autocast: fp32 master values
    assert float(bf16) == pytest.approx(fp32, rel=2e-2)
    with autocast(CPU, "fp32"), autocast(CPU, "auto"):  # neither autocasts on the CPU
        assert float(piece_loss(net, x, y)) == fp32
