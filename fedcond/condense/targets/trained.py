"""``trained-pool``: cached real statistics of networks trained briefly on the real data.

A random network embeds the real data through features no training has shaped; DANCE and IDM
match through networks that have begun to learn the task, whose embeddings already separate the
classes, and IDM adds a cross-entropy term that asks those networks to classify the synthetic
images correctly. This target trains ``condense.pool_networks`` networks for ``train_steps`` SGD
steps each on real batches (under the run's DSA strategy), keeps ``snapshots`` frozen copies of
each at evenly spaced points of its training, and caches the real statistics of every (network,
snapshot) entry exactly as the ``pool`` target does for random networks. Each iteration draws one
entry. The training is part of the target's preparation, so its time is inside
``condense_seconds`` (and reported as ``pool_seconds``).
"""

from __future__ import annotations

import copy
import inspect
import time
from typing import TYPE_CHECKING, Annotated, Any

import torch
import torch.nn.functional as F
from torch import nn

from fedcond.augment import dsa
from fedcond.condense.targets.base import RealData, RealSide, check_real_target_params, register_real_target
from fedcond.condense.targets.pool import PoolTarget, RealStatisticsPool
from fedcond.device import chunk_size, split_pieces
from fedcond.errors import ConfigError
from fedcond.features import FEATURE_MAPS
from fedcond.models.base import batch_independent
from fedcond.seeds import derive_seed
from fedcond.values import Bound, NonNegative, Positive

if TYPE_CHECKING:
    from fedcond.config import Config

AtLeastOne = Bound(1.0, inclusive=True)


def snapshot_steps(train_steps: int, snapshots: int, include_initial: bool) -> list[int]:
    """The training steps after which a copy is kept: evenly spaced, the last one at ``train_steps``."""
    steps = [round(train_steps * (j + 1) / snapshots) for j in range(snapshots)]
    return ([0] if include_initial else []) + steps


def train_on_real(
    net: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    steps: int,
    keep_after: list[int],
    lr: float,
    momentum: float,
    batch: int,
    dsa_strategy: str | None,
    dsa_mode: str,
    generator: torch.Generator,
) -> list[nn.Module]:
    """Train ``net`` for ``steps`` SGD steps on random real batches; frozen copies after each step in ``keep_after``.

    Step 0 in ``keep_after`` keeps the untrained network. Batches are drawn uniformly over the real
    images; a batch is fed in cache-sized pieces when the network allows it (no batch norm).
    """
    optimizer = torch.optim.SGD(net.parameters(), lr=lr, momentum=momentum, weight_decay=5e-4)
    piece = chunk_size(images.device) if batch_independent(net) else batch
    kept = [_frozen_copy(net)] if 0 in keep_after else []
    net.train()
    for step in range(1, steps + 1):
        idx = torch.randint(len(images), (batch,), generator=generator).to(images.device)
        x, y = images[idx], labels[idx]
        if dsa_strategy is not None:
            x = dsa(x, dsa_strategy, generator=generator, mode=dsa_mode)
        optimizer.zero_grad(set_to_none=True)
        for xp, yp in zip(*split_pieces(x, y, piece, equal=False)):
            (F.cross_entropy(net(xp), yp, reduction="sum") / len(x)).backward()
        optimizer.step()
        if step in keep_after:
            kept.append(_frozen_copy(net))
    return kept


def _frozen_copy(net: nn.Module) -> nn.Module:
    copied = copy.deepcopy(net).eval()
    for p in copied.parameters():
        p.requires_grad_(False)
    return copied


@register_real_target("trained-pool")
class TrainedPoolTarget(PoolTarget):
    """A pool of (network, snapshot) entries: ``condense.pool_networks`` networks, each trained
    ``train_steps`` SGD steps on real data, kept at ``snapshots`` points of its training.

    Parameters
    ----------
    real
        The run's real data, feature map and config.
    train_steps
        SGD steps per network, batches of ``batch`` real images (DSA-augmented when ``condense.dsa``).
    snapshots
        Copies kept per network, evenly spaced, the last one fully trained.
    include_initial
        Also keep each network before training (a random network, as in ``pool``).
    lr, momentum
        The networks' SGD (weight decay 5e-4, as the evaluation protocol).
    batch
        Real images per training step.
    ce_weight
        Weight of IDM's class-aware term: the cross-entropy of the entry's classifier on the
        synthetic embeddings, added to the discrepancy (0: off).
    """

    def __init__(
        self,
        real: RealData,
        *,
        train_steps: Annotated[int, AtLeastOne] = 100,
        snapshots: Annotated[int, AtLeastOne] = 4,
        include_initial: bool = False,
        lr: Annotated[float, Positive] = 0.01,
        momentum: Annotated[float, NonNegative] = 0.9,
        batch: Annotated[int, AtLeastOne] = 256,
        ce_weight: Annotated[float, NonNegative] = 0.0,
    ) -> None:
        super().__init__(real)
        self.train_steps, self.snapshots, self.include_initial = train_steps, snapshots, include_initial
        self.lr, self.momentum, self.batch, self.ce_weight = lr, momentum, batch, ce_weight
        self.train_seconds = 0.0

    @classmethod
    def check_config(cls, config: Config) -> None:
        c = config.condense
        if c.pool_networks < 1:
            raise ConfigError("condense.real_target trained-pool trains condense.pool_networks networks: set it >= 1")
        # The options as the constructor will see them, its defaults filled in.
        options = inspect.signature(cls).bind_partial(None, **check_real_target_params("trained-pool", c.real_target_params))
        options.apply_defaults()
        steps, snapshots = options.arguments["train_steps"], options.arguments["snapshots"]
        if snapshots > steps:
            raise ConfigError(f"trained-pool: snapshots ({snapshots}) cannot exceed train_steps ({steps})")
        if not FEATURE_MAPS.get(c.feature_map).takes_networks:
            raise ConfigError(f"condense.real_target trained-pool needs a feature map that takes given networks "
                              f"(random-embedding); {c.feature_map!r} does not")  # fmt: skip

    def build_pool(self) -> RealStatisticsPool:
        real, c = self.real, self.real.config.condense
        started = time.perf_counter()
        keep_after = snapshot_steps(self.train_steps, self.snapshots, self.include_initial)
        cuda = [real.device] if real.device.type == "cuda" else []
        entries: list[nn.Module] = []
        for n in range(c.pool_networks):
            seed = derive_seed(real.config.seed, "trained-pool-network", n)
            with torch.random.fork_rng(devices=cuda):
                torch.manual_seed(seed)
                net = real.feature_map.context.build_network()
                entries += train_on_real(
                    net, real.images, real.labels, steps=self.train_steps, keep_after=keep_after, lr=self.lr,
                    momentum=self.momentum, batch=self.batch, dsa_strategy=real.dsa_strategy, dsa_mode=c.dsa_mode,
                    generator=torch.Generator().manual_seed(seed),
                )  # fmt: skip
        self.train_seconds = time.perf_counter() - started
        pool = RealStatisticsPool.build(
            real.feature_map, c.discrepancy, real.images, [real.per_class[k] for k in self.classes], self.classes,
            real.num_classes, networks=len(entries), batch_real=c.batch_real, dsa_strategy=real.dsa_strategy,
            dsa_mode=c.dsa_mode, seed=real.config.seed, progress=real.progress, given=entries, perturb=real.perturb,
        )  # fmt: skip
        pool.seconds += self.train_seconds
        return pool

    def draw(self, generator: torch.Generator) -> RealSide:
        side = super().draw(generator)
        if self.ce_weight > 0:
            side.classifier = self.real.feature_map.net.classifier
            side.classifier_weight = self.ce_weight
        return side

    def metadata(self) -> dict[str, Any]:
        return {
            **super().metadata(),
            "trained_networks": self.real.config.condense.pool_networks,
            "train_steps": self.train_steps,
            "snapshots": self.snapshots + int(self.include_initial),
            "train_seconds": round(self.train_seconds, 3),
        }
