"""The classifier interface every network implements, and the registry that builds them by name."""

from __future__ import annotations

import abc
from collections.abc import Callable, Mapping

import torch
from torch import nn

from fedcond.errors import ConfigError
from fedcond.registry import Registry
from fedcond.values import InvalidOption, UnknownOption, bind_options


class ImageClassifier(nn.Module, abc.ABC):
    """A network split into a feature embedding and a linear classifier on top of it.

    Distribution-matching methods compare :meth:`embed` outputs, gradient-matching methods the
    gradients of the whole network, so both parts must be reachable separately.
    """

    #: Width ``D`` of :meth:`embed`'s output.
    embed_dim: int
    classifier: nn.Linear

    @abc.abstractmethod
    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Embeddings ``[N, D]`` of images ``[N, C, H, W]``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``[N, num_classes]``."""
        return self.classifier(self.embed(x))


def batch_independent(net: nn.Module) -> bool:
    """Whether each sample's output and gradient ignore the rest of the batch (no batch norm).

    Such a network can be fed a batch in cache-sized pieces, accumulating gradients, and compute
    exactly what one big forward would (up to summation order).
    """
    return not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in net.modules())


ModelFactory = Callable[..., ImageClassifier]

MODELS: Registry[ModelFactory] = Registry("model")
register_model = MODELS.register

# Arguments every factory receives from build_model itself; the rest are the model's options.
_COMMON_ARGS = ("channels", "num_classes", "image_size")


def check_model_options(name: str, options: Mapping[str, object]) -> dict[str, object]:
    """``options`` of model ``name`` checked against its factory's signature, values coerced.

    No network is built: a config is checked without allocating anything. Raises
    :class:`ConfigError` for an unknown model, an unknown option or a value of the wrong type.
    """
    factory = MODELS.get(name)
    try:
        return bind_options(factory, options, exclude=_COMMON_ARGS)
    except UnknownOption as exc:
        unknown = sorted(set(options) - set(exc.accepted))
        allowed = ", ".join(exc.accepted) or "none"
        raise ConfigError(f"model {name!r} has no option(s) {', '.join(unknown)}; options: {allowed}") from None
    except InvalidOption as exc:
        raise ConfigError(f"model {name!r}: option {exc.name!r} must be {exc.expected}; got {exc.value!r}") from None


def build_model(
    name: str, *, channels: int, num_classes: int, image_size: tuple[int, int], **kwargs: object
) -> ImageClassifier:
    """A freshly initialised network ``name`` for ``channels``-channel images of ``image_size``.

    Parameters
    ----------
    name
        A registered model (``convnet``, ``lenet``, ``mlp``, ``resnet18`` or your own).
    channels, num_classes, image_size
        What the network is built for.
    **kwargs
        The model's options (e.g. ``width`` for ``convnet``); they usually come from a config
        file, so an unknown option is a :class:`ConfigError` rather than a ``TypeError``.
    """
    options = check_model_options(name, kwargs)
    if channels < 1 or num_classes < 1:
        raise ConfigError(f"model {name!r} needs channels >= 1 and num_classes >= 1")
    height, width = image_size
    if height < 1 or width < 1:
        raise ConfigError(f"model {name!r} needs a positive image size, got {tuple(image_size)}")
    return MODELS.get(name)(channels=channels, num_classes=num_classes, image_size=(height, width), **options)
