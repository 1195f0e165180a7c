"""Differentially private real-side statistics for condensation (DP-MERF / NDPDC style).

Only per-class sums of clipped per-sample embeddings leave the real data, with Gaussian noise
calibrated by :mod:`fedcond.privacy.accounting`; the synthetic set is then optimised against those
noised statistics alone, which is post-processing and costs no further privacy.

Each sample contributes a vector ``[e_1 .. e_P, C]``: its embedding by each of the ``P`` random
networks released together, each clipped to norm ``C / sqrt(P)``, and a constant ``C`` that makes
the class count part of the same release. Its norm is at most ``C * sqrt(2)``: that is the L2
sensitivity under adding or removing one sample, and the noise's standard deviation is the
calibrated noise multiplier times it. Class means are the noised sums over the noised counts.

* ``once``: one release over every sample, for a fixed pool of ``P`` networks (their augmentation
  draws fixed too); the condenser matches against it like against the ordinary pool.
* ``per-iteration``: every iteration a fresh network, a Poisson sample of the data (each sample
  independently with probability ``sample_rate``) and a fresh release; ``iterations`` releases
  are composed with subsampling amplification.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from fedcond.augment import apply_dsa, sample_dsa_params
from fedcond.condense.targets.pool import RealStatisticsPool, network_seed
from fedcond.features import FeatureMap, embed_in_chunks
from fedcond.privacy.accounting import calibrate_noise, epsilon_spent
from fedcond.seeds import derive_seed

if TYPE_CHECKING:
    from fedcond.config import Config

#: Samples embedded per pass when summing over a whole dataset.
CHUNK = 2048


def sensitivity(clip: float) -> float:
    """L2 sensitivity of one release (embeddings clipped to ``clip`` in total, plus the count)."""
    return clip * math.sqrt(2.0)


def clipped_class_sums(
    embeddings: list[torch.Tensor], labels: torch.Tensor, classes: list[int], clip: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-class sums ``[K, P, D]`` of each network's embedding clipped to ``clip / sqrt(P)``, and counts ``[K]``.

    ``embeddings`` holds one ``[N, D]`` tensor per network for the same ``N`` samples.
    """
    bound = clip / math.sqrt(len(embeddings))
    stacked = torch.stack(embeddings, dim=1).float()  # [N, P, D]
    norms = stacked.norm(dim=2, keepdim=True)
    clipped = stacked * (bound / norms.clamp_min(1e-12)).clamp(max=1.0)
    index = torch.tensor(classes, device=labels.device)
    one_hot = (labels[:, None] == index[None, :]).to(clipped.dtype)  # [N, K]
    sums = torch.einsum("nk,npd->kpd", one_hot, clipped)
    return sums, one_hot.sum(0)


def noised_means(
    sums: torch.Tensor, counts: torch.Tensor, clip: float, noise_multiplier: float, generator: torch.Generator
) -> torch.Tensor:
    """Class means ``[K, P, D]`` from sums and counts released with Gaussian noise of std ``noise_multiplier * sensitivity``."""
    std = noise_multiplier * sensitivity(clip)
    noise = torch.randn(sums.shape, generator=generator, dtype=sums.dtype).to(sums.device) * std
    count_noise = torch.randn(counts.shape, generator=generator, dtype=counts.dtype).to(counts.device) * std / clip
    noisy_counts = (counts + count_noise).clamp_min(1.0)
    return (sums + noise) / noisy_counts[:, None, None]


@dataclass
class PrivateRelease:
    """What the privacy mode decided: how much noise, for which accounting."""

    mode: str
    clip: float
    noise_multiplier: float
    releases: int
    sample_size: int
    population: int
    epsilon: float
    delta: float

    def embedding_bound(self, networks: int) -> float:
        """Norm bound of one network's embedding of one sample: ``clip`` shared by the networks released together."""
        return self.clip / math.sqrt(networks if self.mode == "once" else 1)

    def metadata(self) -> dict[str, float | int | str]:
        return {
            "epsilon": self.epsilon, "delta": self.delta, "mode": self.mode, "clip": self.clip,
            "noise_multiplier": self.noise_multiplier, "releases": self.releases,
            "sample_rate": self.sample_size / self.population, "accountant": "flwr RdpAccountant",
        }  # fmt: skip


def build_private_pool(
    feature_map: FeatureMap,
    real_images: torch.Tensor,
    real_labels: torch.Tensor,
    classes: list[int],
    num_classes: int,
    release: PrivateRelease,
    *,
    networks: int,
    dsa_strategy: str | None,
    dsa_mode: str,
    seed: int,
) -> RealStatisticsPool:
    """``once`` mode: one noised release of every class's mean embedding by ``networks`` random networks."""
    started = time.perf_counter()
    seeds = [network_seed(seed, k) for k in range(networks)]
    device = real_images.device
    generator = torch.Generator().manual_seed(derive_seed(seed, "private-pool-augmentations"))
    augmentations = [
        sample_dsa_params(dsa_strategy, num_classes, generator=generator, device=device,
                          image_size=(real_images.shape[2], real_images.shape[3]), mode=dsa_mode)
        if dsa_strategy is not None else None
        for _ in seeds
    ]  # fmt: skip
    sums, counts = None, None
    cuda = [device] if device.type == "cuda" else []
    for start in range(0, len(real_images), CHUNK):
        images, labels = real_images[start : start + CHUNK], real_labels[start : start + CHUNK]
        embedded = []
        for k in range(networks):
            with torch.random.fork_rng(devices=cuda):
                torch.manual_seed(seeds[k])
                feature_map.refresh()
            x = images if augmentations[k] is None else apply_dsa(images, augmentations[k], labels)
            embedded.append(embed_in_chunks(feature_map, x, labels))
        part_sums, part_counts = clipped_class_sums(embedded, labels, classes, release.clip)
        sums = part_sums if sums is None else sums + part_sums
        counts = part_counts if counts is None else counts + part_counts
    noise = torch.Generator().manual_seed(derive_seed(seed, "private-release"))
    means = noised_means(sums, counts, release.clip, release.noise_multiplier, noise)  # [K, P, D]
    features = [[means[i, k][None] for i in range(len(classes))] for k in range(networks)]
    return RealStatisticsPool(seeds=seeds, augmentations=augmentations, features=features, seconds=time.perf_counter() - started)


@dataclass
class PrivateIterationStatistics:
    """``per-iteration`` mode: a fresh Poisson sample and a fresh noised release at every iteration."""

    real_images: torch.Tensor
    real_labels: torch.Tensor
    classes: list[int]
    release: PrivateRelease

    def class_means(self, feature_map: FeatureMap, generator: torch.Generator, augment: object = None) -> list[torch.Tensor]:
        """This iteration's noised class means (``[1, D]`` each) under the feature map's current network."""
        rate = self.release.sample_size / self.release.population
        keep = torch.rand(len(self.real_labels), generator=generator) < rate  # Poisson sampling, data-independent
        keep = keep.to(self.real_labels.device)
        images, labels = self.real_images[keep], self.real_labels[keep]
        if augment is not None and len(images):
            images = augment(images, labels)
        if len(images):
            embedded = embed_in_chunks(feature_map, images, labels)
            sums, counts = clipped_class_sums([embedded], labels, self.classes, self.release.clip)
        else:  # an empty sample is still released (as noise): skipping it would depend on the data
            dim = embed_in_chunks(feature_map, self.real_images[:1], self.real_labels[:1]).shape[1]
            sums = torch.zeros(len(self.classes), 1, dim, device=self.real_images.device)
            counts = torch.zeros(len(self.classes), device=self.real_images.device)
        means = noised_means(sums, counts, self.release.clip, self.release.noise_multiplier, generator)
        return [means[i, 0][None] for i in range(len(self.classes))]


def plan_release(config: "Config", population: int) -> PrivateRelease:
    """The noise that makes this condensation ``(privacy.epsilon, privacy.delta)``-DP, and its accounting.

    Per-iteration releases are accounted as Poisson-subsampled at exactly ``privacy.sample_rate``
    (the sampling in :class:`PrivateIterationStatistics` keeps each sample with that probability);
    the one-off release is over every sample, without amplification.
    """
    p = config.privacy
    if p.mode == "once":
        releases, sample_size, accounted = 1, 1, 1
    else:
        releases, accounted = config.condense.iterations, 10**6
        sample_size = max(1, round(p.sample_rate * accounted))
    noise = calibrate_noise(p.epsilon, p.delta, releases=max(releases, 1), sample_size=sample_size, population=accounted)
    spent = epsilon_spent(noise, p.delta, releases=max(releases, 1), sample_size=sample_size, population=accounted)
    return PrivateRelease(p.mode, p.clip, noise, releases, sample_size, accounted, spent, p.delta)
