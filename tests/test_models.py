"""Tests for the model registry and the built-in networks."""

from __future__ import annotations

import pytest
import torch

from fedcond.errors import ConfigError
from fedcond.models import MODELS, ImageClassifier, build_model, register_model

SHAPES = [(1, 8, 8), (1, 28, 28), (3, 32, 32)]
NAMES = ["convnet", "mlp", "lenet", "resnet18"]


def _build(name: str, shape: tuple[int, int, int], classes: int = 10, **kwargs: object) -> ImageClassifier:
    return build_model(name, channels=shape[0], num_classes=classes, image_size=shape[1:], **kwargs)


def test_builtin_models_are_registered() -> None:
    assert set(NAMES) <= set(MODELS.names())


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("name", NAMES)
def test_logits_and_embedding_shapes(name: str, shape: tuple[int, int, int]) -> None:
    torch.manual_seed(0)
    net = _build(name, shape, classes=7)
    x = torch.randn(3, *shape)
    embedding = net.embed(x)
    assert embedding.shape == (3, net.embed_dim)
    assert net(x).shape == (3, 7)
    assert torch.allclose(net(x), net.classifier(embedding))


@pytest.mark.parametrize(("shape", "side"), [((1, 8, 8), 1), ((1, 28, 28), 3), ((3, 32, 32), 4)])
def test_convnet_embedding_follows_resolution(shape: tuple[int, int, int], side: int) -> None:
    assert _build("convnet", shape).embed_dim == 128 * side * side


def test_convnet_stops_pooling_at_one_pixel() -> None:
    net = _build("convnet", (1, 8, 8), width=16, depth=5)
    assert net.embed_dim == 16
    assert net.embed(torch.randn(2, 1, 8, 8)).shape == (2, 16)


@pytest.mark.parametrize(
    "options",
    [
        {"norm": "batchnorm", "activation": "leakyrelu", "pooling": "maxpool"},
        {"norm": "none", "activation": "sigmoid", "pooling": "none"},
        {"width": 32, "depth": 2},
    ],
)
def test_convnet_options(options: dict[str, object]) -> None:
    net = _build("convnet", (1, 28, 28), **options)
    assert net(torch.randn(2, 1, 28, 28)).shape == (2, 10)


def test_convnet_without_pooling_keeps_resolution() -> None:
    assert _build("convnet", (1, 8, 8), width=8, pooling="none").embed_dim == 8 * 8 * 8


def test_resnet18_batchnorm_option() -> None:
    net = _build("resnet18", (3, 32, 32), norm="batchnorm")
    assert net(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_unknown_model_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="convnet"):
        _build("no-such-net", (1, 28, 28))


@pytest.mark.parametrize(
    ("name", "options"),
    [
        ("convnet", {"norm": "layernorm"}),
        ("convnet", {"activation": "gelu"}),
        ("convnet", {"pooling": "stride"}),
        ("convnet", {"depth": 0}),
        ("convnet", {"colour": 3}),
        ("mlp", {"width": 64}),
        ("resnet18", {"norm": "none"}),
    ],
)
def test_bad_options_are_config_errors(name: str, options: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        _build(name, (1, 28, 28), **options)


@pytest.mark.parametrize("name", NAMES)
def test_gradients_reach_the_input(name: str) -> None:
    torch.manual_seed(0)
    net = _build(name, (1, 28, 28))
    x = torch.randn(2, 1, 28, 28, requires_grad=True)
    net(x).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


@pytest.mark.parametrize("name", ["convnet", "resnet18"])
def test_instance_norm_output_ignores_the_rest_of_the_batch(name: str) -> None:
    # The condenser embeds all classes in one forward pass: samples must not see each other.
    torch.manual_seed(0)
    net = _build(name, (3, 32, 32)).train()
    x = torch.randn(5, 3, 32, 32)
    alone = net.embed(x[:1])
    together = net.embed(torch.cat([x[:1], 10 * x[1:]]))[:1]
    assert torch.allclose(alone, together, atol=1e-5)


def test_same_seed_same_weights() -> None:
    torch.manual_seed(3)
    a = _build("convnet", (1, 28, 28))
    torch.manual_seed(3)
    b = _build("convnet", (1, 28, 28))
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa, pb)


def test_user_model_registers_and_builds() -> None:
    @register_model("test-linear")
    class Linear(ImageClassifier):
        def __init__(self, *, channels: int, num_classes: int, image_size: tuple[int, int]) -> None:
            super().__init__()
            self.embed_dim = channels * image_size[0] * image_size[1]
            self.classifier = torch.nn.Linear(self.embed_dim, num_classes)

        def embed(self, x: torch.Tensor) -> torch.Tensor:
            return x.flatten(1)

    net = _build("test-linear", (1, 8, 8), classes=3)
    assert isinstance(net, Linear)
    assert net(torch.randn(4, 1, 8, 8)).shape == (4, 3)
