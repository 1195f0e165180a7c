"""Cached real-side statistics: a fixed pool of random networks and what each sees of the real data.

The reference DM loop embeds ``batch_real`` real images per class with a fresh network every
iteration, and that real-side forward costs ~90% of an iteration. With a pool, ``networks``
random networks are drawn once; each embeds its own ``batch_real`` real images per class (every
image under its own DSA draw) and keeps the features, reduced by the discrepancy's
``real_summary`` where it has one (linear MMD keeps one mean row per class). An iteration then
re-creates one pool network from its seed and only embeds the synthetic images.

The objective changes slightly: synthetic features are matched to real features seen through
one of ``networks`` networks (not a new one each time) and under independent augmentations (not
the siamese draw shared with the synthetic batch), i.e. to the expected embedding under DSA.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from fedcond.augment import dsa
from fedcond.discrepancies import summarise_real
from fedcond.features import FeatureMap, embed_in_chunks


def network_seed(seed: int, network: int) -> int:
    """The seed of pool network ``network``: apart from every iteration's seed."""
    return (seed * 1_000_033 + network * 104_723 + 99_991) % (2**63 - 1)


@dataclass
class RealStatisticsPool:
    """Real features per pool network and class; ``features[k][i]`` belongs to ``classes[i]``."""

    seeds: list[int]
    features: list[list[torch.Tensor]]
    seconds: float

    @classmethod
    def build(
        cls,
        feature_map: FeatureMap,
        discrepancy: str,
        real_images: torch.Tensor,
        real_per_class: list[torch.Tensor],
        *,
        networks: int,
        batch_real: int,
        dsa_strategy: str | None,
        dsa_mode: str,
        seed: int,
        progress: bool,
    ) -> "RealStatisticsPool":
        """Embed ``batch_real`` real images per class with each of ``networks`` seeded networks."""
        started = time.perf_counter()
        seeds = [network_seed(seed, k) for k in range(networks)]
        features = []
        cuda = [real_images.device] if real_images.device.type == "cuda" else []
        for k in tqdm(range(networks), desc="real statistics", disable=None if progress else True, leave=False):
            with torch.random.fork_rng(devices=cuda):
                torch.manual_seed(seeds[k])
                generator = torch.Generator().manual_seed(seeds[k])
                feature_map.refresh()
                picks = [
                    idx[torch.randperm(len(idx), generator=generator)[:batch_real].to(idx.device)]
                    for idx in real_per_class
                ]
                counts = [len(p) for p in picks]
                real = real_images[torch.cat(picks)]
                if dsa_strategy is not None:
                    real = dsa(real, dsa_strategy, generator=generator, mode=dsa_mode)  # one draw per image
                labels = torch.repeat_interleave(
                    torch.arange(len(picks), device=real.device), torch.tensor(counts, device=real.device)
                )
                embedded = embed_in_chunks(feature_map, real, labels)
                features.append([summarise_real(discrepancy, part) for part in embedded.split(counts)])
        return cls(seeds=seeds, features=features, seconds=time.perf_counter() - started)

    def __len__(self) -> int:
        return len(self.seeds)

    def draw(self, generator: torch.Generator) -> int:
        """A pool network for this iteration, uniformly at random."""
        return int(torch.randint(len(self.seeds), (1,), generator=generator))

    def activate(self, network: int, feature_map: FeatureMap) -> None:
        """Re-create pool network ``network`` inside ``feature_map``; the global RNG is left as it was."""
        cuda = [torch.device("cuda")] if torch.cuda.is_available() else []
        with torch.random.fork_rng(devices=cuda):
            torch.manual_seed(self.seeds[network])
            feature_map.refresh()

    def memory_bytes(self) -> int:
        return sum(t.numel() * t.element_size() for per_net in self.features for t in per_net)
