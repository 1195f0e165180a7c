"""LeNet-5: the classic convolutional baseline of the cross-architecture evaluations."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fedcond.models.base import ImageClassifier, register_model

# LeNet-5's first convolution maps 32x32 to 28x28; inputs are padded to at least that output.
_FIRST_CONV_OUT = 28


def _first_padding(side: int) -> int:
    """Zero padding that makes the 5x5 first convolution output at least 28 pixels along a side.

    This is no padding for 32x32 (CIFAR) and 2 for 28x28 (MNIST), as in the reference code, and
    enough for 8x8 digits to survive both convolutions and poolings.
    """
    return max(0, -(-(_FIRST_CONV_OUT - (side - 4)) // 2))


@register_model("lenet")
class LeNet(ImageClassifier):
    """conv 6@5x5 -> ReLU -> maxpool -> conv 16@5x5 -> ReLU -> maxpool -> fc 120 -> 84 -> classes.

    The embedding is the 84-unit layer, after its ReLU.
    """

    def __init__(self, *, channels: int, num_classes: int, image_size: tuple[int, int]) -> None:
        super().__init__()
        height, width = image_size
        pad_h, pad_w = _first_padding(height), _first_padding(width)
        self.features = nn.Sequential(
            nn.Conv2d(channels, 6, kernel_size=5, padding=(pad_h, pad_w)),
            nn.ReLU(),
            nn.MaxPool2d(kernel_size=2, stride=2),
            nn.Conv2d(6, 16, kernel_size=5),
            nn.ReLU(),
            nn.MaxPool2d(kernel_size=2, stride=2),
        )
        out_h = ((height + 2 * pad_h - 4) // 2 - 4) // 2
        out_w = ((width + 2 * pad_w - 4) // 2 - 4) // 2
        self.fc_1 = nn.Linear(16 * out_h * out_w, 120)
        self.fc_2 = nn.Linear(120, 84)
        self.embed_dim = 84
        self.classifier = nn.Linear(self.embed_dim, num_classes)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        out = self.features(x).flatten(1)
        return F.relu(self.fc_2(F.relu(self.fc_1(out))))
