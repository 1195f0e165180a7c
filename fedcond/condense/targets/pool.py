"""``pool``: cached real-side statistics of a fixed pool of random networks and what each sees of the real data.

The reference DM loop embeds ``batch_real`` real images per class with a fresh network every
iteration, and that real-side forward costs ~90% of an iteration. A pool draws ``networks``
entries once, each exactly what one reference iteration draws: a random network, ``batch_real``
real images per class and one DSA draw per class; it embeds the augmented real images and keeps
their features, reduced by the discrepancy's ``real_summary`` where it has one (linear MMD
keeps one mean row per class). An iteration then picks an entry, re-creates its network from
its seed, applies the entry's DSA draw to the synthetic images (siamese, as in the reference)
and embeds only them.

So every iteration optimises one term of the reference objective exactly; what changes is that
the terms come from a finite sample of ``networks`` draws instead of a new draw each iteration.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import nn
from tqdm.auto import tqdm

from fedcond.augment import DSAParams, apply_dsa, sample_dsa_params
from fedcond.condense.targets.base import RealSide, RealTarget, register_real_target
from fedcond.discrepancies import summarise_real
from fedcond.errors import ConfigError
from fedcond.features import FeatureMap, embed_in_chunks
from fedcond.seeds import derive_seed

if TYPE_CHECKING:
    from fedcond.config import Config


def network_seed(seed: int, network: int) -> int:
    """The seed of pool network ``network`` of the run seeded ``seed``."""
    return derive_seed(seed, "pool-network", network)


@dataclass
class RealStatisticsPool:
    """Per entry ``k``: its seed, its DSA draw (``None`` without DSA) and its real features per
    class, ``features[k][i]`` belonging to the ``i``-th class that has samples.

    An entry's network is the random one its seed initialises, or ``networks[k]`` when the pool was
    built over given (e.g. trained) networks; then the seed only draws the entry's real images and DSA.
    """

    seeds: list[int]
    augmentations: list[DSAParams | None]
    features: list[list[torch.Tensor]]
    seconds: float
    networks: list[nn.Module] | None = None

    @classmethod
    def build(
        cls,
        feature_map: FeatureMap,
        discrepancy: str,
        real_images: torch.Tensor,
        real_per_class: list[torch.Tensor],
        classes: list[int],
        num_classes: int,
        *,
        networks: int,
        batch_real: int,
        dsa_strategy: str | None,
        dsa_mode: str,
        seed: int,
        progress: bool,
        given: list[nn.Module] | None = None,
        perturb: Callable[[torch.Tensor, torch.Tensor, torch.Generator], torch.Tensor] | None = None,
    ) -> "RealStatisticsPool":
        """Draw ``networks`` entries and embed each one's augmented real images with its network.

        ``given``: one network per entry (``len(given) == networks``) instead of random ones, made
        active with ``feature_map.use_network``. ``perturb``: what the augmented real images become
        before the entry's network embeds them (:meth:`RealData.perturb`; a robustness term).
        """
        started = time.perf_counter()
        if given is not None and len(given) != networks:
            raise ValueError(f"{len(given)} given networks for a pool of {networks}")
        seeds = [network_seed(seed, k) for k in range(networks)]
        features, augmentations = [], []
        cuda = [real_images.device] if real_images.device.type == "cuda" else []
        for k in tqdm(range(networks), desc="real statistics", disable=None if progress else True, leave=False):
            with torch.random.fork_rng(devices=cuda):
                torch.manual_seed(seeds[k])
                generator = torch.Generator().manual_seed(seeds[k])
                if given is None:
                    feature_map.refresh()
                else:
                    feature_map.use_network(given[k])
                picks = [
                    idx[torch.randperm(len(idx), generator=generator)[:batch_real].to(idx.device)]
                    for idx in real_per_class
                ]
                counts = [len(p) for p in picks]
                real = real_images[torch.cat(picks)]
                labels = torch.repeat_interleave(
                    torch.tensor(classes, device=real.device), torch.tensor(counts, device=real.device)
                )
                params = None
                if dsa_strategy is not None:
                    params = sample_dsa_params(
                        dsa_strategy,
                        num_classes,
                        generator=generator,
                        device=real.device,
                        image_size=(real.shape[2], real.shape[3]),
                        mode=dsa_mode,
                    )
                    real = apply_dsa(real, params, labels)  # one draw per class, as the reference
                if perturb is not None:
                    real = perturb(real, labels, generator)
                augmentations.append(params)
                embedded = embed_in_chunks(feature_map, real, labels)
                features.append([summarise_real(discrepancy, part) for part in embedded.split(counts)])
        seconds = time.perf_counter() - started
        return cls(seeds=seeds, augmentations=augmentations, features=features, seconds=seconds, networks=given)

    def __len__(self) -> int:
        return len(self.seeds)

    def draw(self, generator: torch.Generator) -> int:
        """A pool network for this iteration, uniformly at random."""
        return int(torch.randint(len(self.seeds), (1,), generator=generator))

    def activate(self, network: int, feature_map: FeatureMap) -> None:
        """Make pool network ``network`` active in ``feature_map`` (a random one re-created from its
        seed; the global RNG is left as it was)."""
        if self.networks is not None:
            feature_map.use_network(self.networks[network])
            return
        cuda = [torch.device("cuda")] if torch.cuda.is_available() else []
        with torch.random.fork_rng(devices=cuda):
            torch.manual_seed(self.seeds[network])
            feature_map.refresh()

    def augment(self, network: int, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """``images`` under entry ``network``'s DSA draw (the one its real images saw), by class."""
        params = self.augmentations[network]
        return images if params is None else apply_dsa(images, params, labels)

    def memory_bytes(self) -> int:
        return sum(t.numel() * t.element_size() for per_net in self.features for t in per_net)


@register_real_target("pool")
class PoolTarget(RealTarget):
    """Matches against a :class:`RealStatisticsPool` of ``condense.pool_networks`` entries: each
    iteration draws an entry, re-creates its network and returns its cached real features."""

    @classmethod
    def check_config(cls, config: Config) -> None:
        if config.condense.pool_networks < 1:
            raise ConfigError(f"condense.real_target {config.condense.real_target} needs condense.pool_networks >= 1")

    def prepare(self, classes: list[int]) -> None:
        super().prepare(classes)
        self.pool = self.build_pool()
        self.seconds = self.pool.seconds

    def build_pool(self) -> RealStatisticsPool:
        """Embed the pool's real statistics (subclasses release them differently)."""
        real, c = self.real, self.real.config.condense
        return RealStatisticsPool.build(
            real.feature_map, c.discrepancy, real.images, [real.per_class[k] for k in self.classes], self.classes,
            real.num_classes, networks=c.pool_networks, batch_real=c.batch_real, dsa_strategy=real.dsa_strategy,
            dsa_mode=c.dsa_mode, seed=real.config.seed, progress=real.progress, perturb=real.perturb,
        )  # fmt: skip

    def draw(self, generator: torch.Generator) -> RealSide:
        entry = self.pool.draw(generator)
        self.pool.activate(entry, self.real.feature_map)
        return RealSide(self.pool.features[entry], self.pool.augmentations[entry], self.synthetic_bound())

    def synthetic_bound(self) -> float | None:
        """The norm the synthetic embeddings are clipped to (None: not clipped)."""
        return None

    def metadata(self) -> dict[str, int]:
        return {"pool_networks": len(self.pool)}
