"""MLP: the fully connected baseline of the cross-architecture evaluations."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fedcond.models.base import ImageClassifier, register_model


@register_model("mlp")
class MLP(ImageClassifier):
    """Flattened pixels -> 128 -> 128 -> classes with ReLU; the embedding is the last hidden layer."""

    def __init__(self, *, channels: int, num_classes: int, image_size: tuple[int, int]) -> None:
        super().__init__()
        self.fc_1 = nn.Linear(channels * image_size[0] * image_size[1], 128)
        self.fc_2 = nn.Linear(128, 128)
        self.embed_dim = 128
        self.classifier = nn.Linear(self.embed_dim, num_classes)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.fc_2(F.relu(self.fc_1(x.flatten(1)))))
