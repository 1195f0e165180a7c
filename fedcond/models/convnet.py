"""ConvNet: the small network of the DC/DSA/DM evaluation protocol."""

from __future__ import annotations

import torch
from torch import nn

from fedcond.errors import ConfigError
from fedcond.models.base import ImageClassifier, register_model
from fedcond.models.layers import make_activation, make_norm, make_pooling


@register_model("convnet")
class ConvNet(ImageClassifier):
    """``depth`` blocks of conv3x3 -> norm -> activation -> 2x2 pooling, then a linear classifier.

    The embedding is the flattened output of the last block, so its size follows the input
    resolution: 128 * 4 * 4 for 32x32, 128 * 3 * 3 for 28x28, 128 * 1 * 1 for 8x8 (depth 3).
    Pooling stops once a side would drop below one pixel, so deep nets still fit tiny images.
    """

    def __init__(
        self,
        *,
        channels: int,
        num_classes: int,
        image_size: tuple[int, int],
        width: int = 128,
        depth: int = 3,
        norm: str = "instancenorm",
        activation: str = "relu",
        pooling: str = "avgpool",
    ) -> None:
        super().__init__()
        if width < 1 or depth < 1:
            raise ConfigError(f"convnet needs width >= 1 and depth >= 1, got width={width}, depth={depth}")
        height, wide = image_size
        layers: list[nn.Module] = []
        in_channels = channels
        for _ in range(depth):
            layers += [
                nn.Conv2d(in_channels, width, kernel_size=3, padding=1),
                make_norm(norm, width),
                make_activation(activation),
            ]
            pool = make_pooling(pooling)
            if pool is not None and height >= 2 and wide >= 2:
                layers.append(pool)
                height, wide = height // 2, wide // 2
            in_channels = width
        self.features = nn.Sequential(*layers)
        self.embed_dim = width * height * wide
        self.classifier = nn.Linear(self.embed_dim, num_classes)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x).flatten(1)
