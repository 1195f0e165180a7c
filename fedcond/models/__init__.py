"""Image classifiers by name: ``build_model("convnet", channels=1, num_classes=10, image_size=(28, 28))``.

Importing this package registers the built-in networks; a user network registers itself with
``@register_model("name")`` on an :class:`ImageClassifier` subclass (or factory) that takes
keyword arguments ``channels``, ``num_classes``, ``image_size`` and its own options.
"""

from fedcond.models.base import (
    MODELS,
    ImageClassifier,
    batch_independent,
    build_model,
    check_model_options,
    register_model,
)
from fedcond.models.convnet import ConvNet
from fedcond.models.lenet import LeNet
from fedcond.models.mlp import MLP
from fedcond.models.resnet import ResNet18

__all__ = [
    "MODELS",
    "ConvNet",
    "ImageClassifier",
    "LeNet",
    "MLP",
    "ResNet18",
    "batch_independent",
    "build_model",
    "check_model_options",
    "register_model",
]
