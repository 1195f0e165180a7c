"""Coreset baselines: real samples selected per class, returned as a :class:`SyntheticSet`.

They are the bar a condensed set must clear. Herding and k-center select in the embedding of
the configured feature map when it produces embeddings (a random ConvNet by default), otherwise
in that of a random network of ``condense.model``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from fedcond.condense.common import build_synthetic_set, class_quotas, select_real
from fedcond.condense.registry import register_condense_method
from fedcond.features import FeatureContext, build_feature_map, embed_in_chunks, feature_kind
from fedcond.seeds import derive_seed
from fedcond.synthetic import SyntheticSet

if TYPE_CHECKING:
    from fedcond.config import Config
    from fedcond.data.base import ImageDataset


def _embed(data: ImageDataset, config: Config, device: torch.device) -> torch.Tensor:
    c = config.condense
    use_configured = feature_kind(c.feature_map) == "embedding"
    name = c.feature_map if use_configured else "random-embedding"
    params = c.feature_params if use_configured else {}
    context = FeatureContext(c.model, data.channels, data.num_classes, data.image_size, device, c.model_params)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(derive_seed(config.seed, "coreset-network"))
        feature_map = build_feature_map(name, context, **params)
        feature_map.refresh()
        return embed_in_chunks(feature_map, data.images, data.labels, device=device).cpu()


def herding_order(features: torch.Tensor, count: int) -> torch.Tensor:
    """Greedy herding (Welling 2009, as in iCaRL): each pick keeps the running mean closest to the class mean."""
    mean = features.mean(0)
    chosen: list[int] = []
    running = torch.zeros_like(mean)
    available = torch.ones(len(features), dtype=torch.bool)
    for k in range(1, count + 1):
        candidates = (running.unsqueeze(0) + features) / k
        distance = (candidates - mean).pow(2).sum(1)
        distance[~available] = float("inf")
        pick = int(distance.argmin())
        chosen.append(pick)
        available[pick] = False
        running = running + features[pick]
    return torch.tensor(chosen, dtype=torch.int64)


def k_center_order(features: torch.Tensor, count: int) -> torch.Tensor:
    """Greedy k-center (Sener & Savarese 2018): start nearest the mean, then always the farthest point."""
    first = int((features - features.mean(0)).pow(2).sum(1).argmin())
    chosen = [first]
    nearest = (features - features[first]).pow(2).sum(1)
    for _ in range(count - 1):
        pick = int(nearest.argmax())
        chosen.append(pick)
        nearest = torch.minimum(nearest, (features - features[pick]).pow(2).sum(1))
    return torch.tensor(chosen, dtype=torch.int64)


#: Selections in an embedding, by name: ``(features [n, d], count) -> indices``. The coresets of the
#: same names use them, and so does the matching condenser's ``condense.init``.
EMBEDDING_SELECTIONS: dict[str, Callable[[torch.Tensor, int], torch.Tensor]] = {
    "herding": herding_order,
    "k-center": k_center_order,
}


def select_in_embedding(
    data: ImageDataset, config: Config, device: torch.device, method: str, counts: list[int]
) -> list[torch.Tensor]:
    """Per class of the label space, ``counts[k]`` sample indices chosen by ``method`` (a name in
    :data:`EMBEDDING_SELECTIONS`) in the coreset embedding; a class with fewer samples than asked
    gives all of them. Classes asked for 0 give an empty tensor."""
    order = EMBEDDING_SELECTIONS[method]
    features = _embed(data, config, device)
    picks = []
    for idx, count in zip(data.indices_per_class(), counts):
        count = min(count, len(idx))
        picks.append(idx[order(features[idx], count)] if count > 0 else idx[:0])
    return picks


def _select(data: ImageDataset, config: Config, device: torch.device, method: str) -> torch.Tensor:
    quotas = class_quotas(data.indices_per_class(), config.condense.ipc)
    return torch.cat(select_in_embedding(data, config, device, method, quotas))


def _coreset(data: ImageDataset, config: Config, indices: torch.Tensor, started: float) -> SyntheticSet:
    return build_synthetic_set(
        data.images[indices], data.labels[indices], data, config, seconds=time.perf_counter() - started
    )


@register_condense_method("random")
def random_coreset(
    data: ImageDataset, config: Config, *, device: torch.device, progress: bool, checkpoint: Path | None
) -> SyntheticSet:
    """``ipc`` real samples per class, uniformly at random (the field's random-real baseline)."""
    started = time.perf_counter()
    per_class = data.indices_per_class()
    generator = torch.Generator().manual_seed(derive_seed(config.seed, "real-selection"))
    return _coreset(data, config, select_real(per_class, class_quotas(per_class, config.condense.ipc), generator), started)


@register_condense_method("herding")
def herding_coreset(
    data: ImageDataset, config: Config, *, device: torch.device, progress: bool, checkpoint: Path | None
) -> SyntheticSet:
    """Per class, the samples whose running mean embedding tracks the class mean best."""
    started = time.perf_counter()
    return _coreset(data, config, _select(data, config, device, "herding"), started)


@register_condense_method("k-center")
def k_center_coreset(
    data: ImageDataset, config: Config, *, device: torch.device, progress: bool, checkpoint: Path | None
) -> SyntheticSet:
    """Per class, samples that cover the class's embedding (greedy farthest-first traversal)."""
    started = time.perf_counter()
    return _coreset(data, config, _select(data, config, device, "k-center"), started)
