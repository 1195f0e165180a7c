"""The private real-side targets: the matching loop sees noised statistics of the real data, nothing else.

``private-once`` releases every class's mean embedding once, for a pool of
``condense.pool_networks`` random networks, and matches against the release like the ordinary
pool; ``private-per-iteration`` makes a fresh Poisson-subsampled release against a fresh network
every iteration. Both give every class of the label space ``ipc`` images (which classes a client
holds, and how many samples, are private too) and clip the synthetic embeddings the way the
released ones were clipped, so both sides are the same function. Neither resumes from a
checkpoint: a resumed run would release again.
"""

from __future__ import annotations

from typing import Any

import torch

from fedcond.augment import apply_dsa
from fedcond.condense.targets import RealSide, RealTarget, register_real_target
from fedcond.condense.targets.pool import PoolTarget, RealStatisticsPool
from fedcond.privacy.release import PrivateIterationStatistics, PrivateRelease, build_private_pool, plan_release


@register_real_target("private-once")
class PrivatePoolTarget(PoolTarget):
    """One noised release of the class means under a pool of random networks (``privacy.mode: once``)."""

    resumable = False

    def quotas(self, ipc: int) -> list[int]:
        return [ipc] * self.real.num_classes

    def build_pool(self) -> RealStatisticsPool:
        real, c = self.real, self.real.config.condense
        self.release: PrivateRelease = plan_release(real.config, len(real.images))
        return build_private_pool(
            real.feature_map, real.images, real.labels, self.classes, real.num_classes, self.release,
            networks=c.pool_networks, dsa_strategy=real.dsa_strategy, dsa_mode=c.dsa_mode, seed=real.config.seed,
        )  # fmt: skip

    def synthetic_bound(self) -> float:
        return self.release.embedding_bound(self.real.config.condense.pool_networks)

    def metadata(self) -> dict[str, Any]:
        return {**super().metadata(), "privacy": self.release.metadata()}


@register_real_target("private-per-iteration")
class PrivateIterationTarget(RealTarget):
    """A fresh network, Poisson sample and noised release every iteration (``privacy.mode: per-iteration``)."""

    resumable = False

    def quotas(self, ipc: int) -> list[int]:
        return [ipc] * self.real.num_classes

    def prepare(self, classes: list[int]) -> None:
        super().prepare(classes)
        real = self.real
        self.release: PrivateRelease = plan_release(real.config, len(real.images))
        self.statistics = PrivateIterationStatistics(real.images, real.labels, self.classes, self.release)

    def draw(self, generator: torch.Generator) -> RealSide:
        self.real.feature_map.refresh()
        augmentation = self.real.sample_augmentation(generator)
        augment = None if augmentation is None else (lambda x, labels: apply_dsa(x, augmentation, labels))
        means = self.statistics.class_means(self.real.feature_map, generator, augment)
        return RealSide(means, augmentation, self.release.embedding_bound(1))

    def metadata(self) -> dict[str, Any]:
        return {"privacy": self.release.metadata()}
