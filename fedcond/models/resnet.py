"""ResNet-18 for small images (CIFAR-style stem), as in the DC/DSA/DM cross-architecture tables."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fedcond.models.base import ImageClassifier, register_model
from fedcond.models.layers import check_choice, make_norm


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with a residual connection (projected when the shape changes)."""

    def __init__(self, in_channels: int, channels: int, stride: int, norm: str) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, channels, kernel_size=3, stride=stride, padding=1, bias=False)
        self.norm1 = make_norm(norm, channels)
        self.conv2 = nn.Conv2d(channels, channels, kernel_size=3, stride=1, padding=1, bias=False)
        self.norm2 = make_norm(norm, channels)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, channels, kernel_size=1, stride=stride, bias=False),
                make_norm(norm, channels),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.norm1(self.conv1(x)))
        out = self.norm2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


@register_model("resnet18")
class ResNet18(ImageClassifier):
    """3x3 stem with 64 channels and no max-pool, BasicBlocks [2, 2, 2, 2], global average pool.

    The global pool (instead of the reference's fixed 4x4 pool) gives the same result on 32x32 and
    28x28 inputs and also accepts 8x8 ones; the embedding is the pooled 512-d vector.
    """

    def __init__(
        self, *, channels: int, num_classes: int, image_size: tuple[int, int], norm: str = "instancenorm"
    ) -> None:
        super().__init__()
        check_choice("norm", norm, ("instancenorm", "batchnorm"))
        self.conv1 = nn.Conv2d(channels, 64, kernel_size=3, stride=1, padding=1, bias=False)
        self.norm1 = make_norm(norm, 64)
        stages: list[nn.Module] = []
        in_channels = 64
        for width, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
            stages += [BasicBlock(in_channels, width, stride, norm), BasicBlock(width, width, 1, norm)]
            in_channels = width
        self.layers = nn.Sequential(*stages)
        self.embed_dim = 512
        self.classifier = nn.Linear(self.embed_dim, num_classes)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        out = self.layers(F.relu(self.norm1(self.conv1(x))))
        return F.adaptive_avg_pool2d(out, 1).flatten(1)
