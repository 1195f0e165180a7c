"""``fresh``: DM's reference loop, a fresh random network and a fresh real batch every iteration."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from fedcond.augment import apply_dsa
from fedcond.condense.targets.base import RealSide, RealTarget, register_real_target
from fedcond.errors import ConfigError
from fedcond.features import embed_in_chunks

if TYPE_CHECKING:
    from fedcond.config import Config


@register_real_target("fresh")
class FreshNetworks(RealTarget):
    """Every iteration: the feature map refreshed (a new random network, or DC's next step), then
    ``condense.batch_real`` random real images per class under one DSA draw per class, mapped
    through it. Embedding maps see every class in one forward pass; gradient maps (DC), whose
    features depend on the whole batch, one class at a time."""

    @classmethod
    def check_config(cls, config: Config) -> None:
        if config.condense.pool_networks:
            raise ConfigError("condense.real_target fresh draws a new network every iteration; set condense.pool_networks 0")

    def prepare(self, classes: list[int]) -> None:
        super().prepare(classes)
        self._per_class = [self.real.per_class[k] for k in self.classes]

    def draw(self, generator: torch.Generator) -> RealSide:
        feature_map, batch = self.real.feature_map, self.real.config.condense.batch_real
        feature_map.refresh()
        picks = [idx[torch.randperm(len(idx), generator=generator)[:batch].to(idx.device)] for idx in self._per_class]
        counts = [len(p) for p in picks]
        images = self.real.images[torch.cat(picks)]
        device = images.device
        labels = torch.repeat_interleave(torch.tensor(self.classes, device=device), torch.tensor(counts, device=device))
        augmentation = self.real.sample_augmentation(generator)
        if augmentation is not None:
            images = apply_dsa(images, augmentation, labels)
        images = self.real.perturb(images, labels, generator)
        if feature_map.kind == "embedding":
            features = list(embed_in_chunks(feature_map, images, labels).split(counts))
        else:
            features = [
                feature_map(x, y, differentiable=False) for x, y in zip(images.split(counts), labels.split(counts))
            ]
        return RealSide(features, augmentation)
