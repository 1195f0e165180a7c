"""Condensation by discrepancy matching: the one loop behind DM, M3D, DC/DSA and their relatives.

Each iteration draws a real batch per class, applies the same DSA parameters to a class's real
and synthetic images, maps both through the feature map and adds the per-class discrepancies;
one backward pass and one optimiser step then move the synthetic pixels (and soft labels).
Every iteration's randomness comes from ``(seed, iteration)``, so runs are reproducible and a
resumed run continues exactly where the checkpoint left it.

Two switches change the algorithm (both off by default, so earlier results reproduce):
``condense.pool_networks`` matches against cached real statistics of a fixed pool of networks
(:mod:`fedcond.condense.pool`), ``condense.factor`` stores each image as f x f tiles
(:mod:`fedcond.condense.parameterisation`).
"""

from __future__ import annotations

import io
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from fedcond.augment import apply_dsa, dsa, sample_dsa_params
from fedcond.condense import register_condense_method
from fedcond.condense.common import build_synthetic_set, class_quotas, iteration_seed
from fedcond.condense.parameterisation import check_factor, decode, encode
from fedcond.condense.pool import RealStatisticsPool
from fedcond.config import Config
from fedcond.data.base import ImageDataset
from fedcond.discrepancies import build_discrepancy
from fedcond.errors import ConfigError
from fedcond.features import FeatureContext, FeatureMap, Features, build_feature_map, embed_in_chunks
from fedcond.io import atomic_write_bytes
from fedcond.synthetic import SyntheticSet

CHECKPOINT_FORMAT = "fedcond.checkpoint/1"
#: Soft labels start as logits ``scale * one_hot``: a confident but not saturated softmax.
SOFT_LABEL_INIT_SCALE = 5.0
#: How many loss values the synthetic set's metadata keeps (evenly spaced over the run).
LOSS_TRACE_POINTS = 50


def _initial_images(
    data: ImageDataset,
    per_class: list[torch.Tensor],
    quotas: list[int],
    init: str,
    factor: int,
    generator: torch.Generator,
) -> torch.Tensor:
    """Stored images ``[sum(quotas), C, H, W]``: random real samples (packed f x f) or noise."""
    if init == "real":
        tiles = factor * factor
        # quota * f² distinct samples where the class has them; a small class repeats its own.
        picks = []
        for idx, q in zip(per_class, quotas):
            if q == 0:
                continue
            order = idx[torch.randperm(len(idx), generator=generator)]
            picks.append(order.repeat(math.ceil(q * tiles / len(idx)))[: q * tiles])
        return encode(data.images[torch.cat(picks)].clone(), factor)
    shape = (sum(quotas), *data.images.shape[1:])
    return torch.randn(shape, generator=generator)


def _fingerprint(config: Config) -> str:
    """What must not change between a checkpoint and its resumption (iterations may grow)."""
    condense = {k: v for k, v in config.to_dict()["condense"].items() if k not in ("iterations", "checkpoint_every")}
    return json.dumps({"seed": config.seed, "dataset": config.to_dict()["dataset"], "condense": condense}, sort_keys=True)


class _Checkpoint:
    """Resumable state of a matching run, saved atomically and loaded without unpickling objects."""

    def __init__(self, path: Path, config: Config) -> None:
        self.path, self.fingerprint = path, _fingerprint(config)

    def save(self, state: dict[str, Any]) -> None:
        buffer = io.BytesIO()
        torch.save({"format": CHECKPOINT_FORMAT, "fingerprint": self.fingerprint, **state}, buffer)
        atomic_write_bytes(self.path, buffer.getvalue())

    def load(self) -> dict[str, Any] | None:
        if not self.path.exists():
            return None
        try:
            state = torch.load(self.path, map_location="cpu", weights_only=True)
            ok = isinstance(state, dict) and state.get("format") == CHECKPOINT_FORMAT
        except Exception as exc:
            raise ConfigError(f"cannot resume from checkpoint {self.path}: {str(exc).splitlines()[0]}") from None
        if not ok:
            raise ConfigError(f"cannot resume from checkpoint {self.path}: not a fedcond checkpoint")
        if state["fingerprint"] != self.fingerprint:
            raise ConfigError(
                f"checkpoint {self.path} was made with a different config; delete it or restore that config"
            )
        return state


@register_condense_method("matching")
def condense_by_matching(
    data: ImageDataset, config: Config, *, device: torch.device, progress: bool, checkpoint: Path | None
) -> SyntheticSet:
    """Optimise per-class synthetic images against ``condense.discrepancy`` seen through ``condense.feature_map``."""
    started = time.perf_counter()
    c = config.condense
    num_classes = data.num_classes
    context = FeatureContext(c.model, data.channels, num_classes, data.image_size, device, c.model_params)
    feature_map = build_feature_map(c.feature_map, context, **c.feature_params)
    discrepancy = build_discrepancy(c.discrepancy, **c.discrepancy_params)

    check_factor(c.factor, data.image_size)
    tiles = c.factor * c.factor
    from fedcond.privacy.release import PrivateIterationStatistics, build_private_pool, plan_release

    per_class = data.indices_per_class()
    release = plan_release(config, len(data)) if config.privacy.epsilon is not None else None
    # In privacy mode which classes a client holds, and how many samples, are private: every class
    # of the label space gets ipc images.
    quotas = class_quotas(per_class, c.ipc) if release is None else [c.ipc] * num_classes
    classes = [k for k in range(num_classes) if quotas[k] > 0]
    # Class of every *training* image (stored image i decodes to f² images, all of its class).
    syn_class = torch.repeat_interleave(torch.arange(num_classes), torch.tensor(quotas) * tiles).to(device)
    images = _initial_images(data, per_class, quotas, c.init, c.factor, torch.Generator().manual_seed(config.seed))
    images = images.to(device).requires_grad_(True)
    parameters = [{"params": [images], "lr": c.lr_images}]
    label_logits = None
    if c.soft_labels:
        label_logits = (SOFT_LABEL_INIT_SCALE * F.one_hot(syn_class, num_classes).float()).requires_grad_(True)
        parameters.append({"params": [label_logits], "lr": c.lr_labels})
    if c.optimizer == "sgd":
        optimizer = torch.optim.SGD(parameters, lr=c.lr_images, momentum=c.momentum)
    else:
        optimizer = torch.optim.Adam(parameters, lr=c.lr_images)

    store = _Checkpoint(checkpoint, config) if checkpoint is not None else None
    start, elapsed_before, loss_trace = 0, 0.0, []
    saved = store.load() if store is not None else None
    if saved is not None:
        with torch.no_grad():
            images.copy_(saved["images"].to(device))
            if label_logits is not None:
                label_logits.copy_(saved["label_logits"].to(device))
        optimizer.load_state_dict(saved["optimizer"])
        feature_map.load_state_dict(saved["feature_map"])
        start, elapsed_before, loss_trace = int(saved["iteration"]), float(saved["elapsed"]), list(saved["loss_trace"])
        started = time.perf_counter()

    real_images = data.images.to(device)
    real_per_class = [per_class[k].to(device) for k in classes]
    pool, private = None, None
    if release is not None and release.mode == "once":
        pool = build_private_pool(
            feature_map, real_images, data.labels.to(device), classes, num_classes, release,
            networks=c.pool_networks, dsa_strategy=c.dsa_strategy if c.dsa else None, dsa_mode=c.dsa_mode, seed=config.seed,
        )  # fmt: skip
    elif release is not None:
        private = PrivateIterationStatistics(real_images, data.labels.to(device), classes, release)
    elif c.pool_networks:
        pool = RealStatisticsPool.build(
            feature_map,
            c.discrepancy,
            real_images,
            real_per_class,
            classes,
            num_classes,
            networks=c.pool_networks,
            batch_real=c.batch_real,
            dsa_strategy=c.dsa_strategy if c.dsa else None,
            dsa_mode=c.dsa_mode,
            seed=config.seed,
            progress=progress,
        )
    problem = _MatchingProblem(
        feature_map=feature_map,
        discrepancy=discrepancy,
        real_images=real_images,
        real_per_class=real_per_class,
        classes=classes,
        syn_class=syn_class,
        num_classes=num_classes,
        batch_real=c.batch_real,
        dsa_strategy=c.dsa_strategy if c.dsa else None,
        dsa_mode=c.dsa_mode,
        factor=c.factor,
        pool=pool,
        private=private,
        feature_bound=release.embedding_bound(c.pool_networks) if release is not None else None,
    )
    trace_every = max(1, c.iterations // LOSS_TRACE_POINTS)
    cuda_devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda_devices):
        # disable=None: a bar on a terminal only, not in CI logs or files.
        bar = tqdm(
            range(start, c.iterations),
            desc="condense",
            disable=None if progress else True,
            initial=start,
            total=c.iterations,
        )
        for iteration in bar:
            seed = iteration_seed(config.seed, iteration)
            torch.manual_seed(seed)  # fresh networks, sliced-Wasserstein directions, DC's batches
            generator = torch.Generator().manual_seed(seed)
            problem.prepare(generator)
            targets = syn_class if label_logits is None else label_logits.softmax(dim=1)
            loss = problem.loss(images, targets, generator)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            augment = (lambda x: dsa(x, c.dsa_strategy, generator=generator, mode=c.dsa_mode)) if c.dsa else None
            decoded = decode(images.detach(), c.factor)
            feature_map.update(decoded, targets.detach() if label_logits is not None else syn_class, augment)
            if iteration % trace_every == 0 or iteration == c.iterations - 1:
                loss_value = float(loss.detach())
                loss_trace.append([iteration, loss_value])
                bar.set_postfix(loss=f"{loss_value:.4g}")
                if not math.isfinite(loss_value):  # checked where the value is read anyway: no extra sync
                    raise ConfigError(
                        f"condensation diverged at iteration {iteration} (loss {loss_value}); lower condense.lr_images"
                    )
            done = iteration + 1
            if store is not None and c.checkpoint_every and (done % c.checkpoint_every == 0 or done == c.iterations):
                store.save(
                    {
                        "iteration": done,
                        "elapsed": elapsed_before + time.perf_counter() - started,
                        "loss_trace": loss_trace,
                        "images": images.detach().cpu(),
                        "label_logits": label_logits.detach().cpu() if label_logits is not None else None,
                        "optimizer": optimizer.state_dict(),
                        "feature_map": feature_map.state_dict(),
                    }
                )
        bar.close()

    labels = syn_class if label_logits is None else label_logits.detach().softmax(dim=1)
    extra: dict[str, Any] = {}
    if c.factor > 1:
        extra["factor"] = c.factor
        extra["images_per_class"] = c.ipc * tiles
    if pool is not None:
        extra["pool_networks"] = c.pool_networks
    if c.model_params:
        extra["model_params"] = dict(c.model_params)
    if release is not None:
        extra["privacy"] = release.metadata()
    return build_synthetic_set(
        decode(images.detach(), c.factor),
        labels,
        data,
        config,
        seconds=elapsed_before + time.perf_counter() - started,
        extra_timings={"pool_seconds": round(pool.seconds, 3) if pool is not None else 0.0},
        iterations=c.iterations,
        loss_trace=loss_trace,
        **extra,
    )


@dataclass
class _MatchingProblem:
    """Everything about one run's matching loss that stays fixed across iterations."""

    feature_map: FeatureMap
    discrepancy: Callable[[Features, Features], torch.Tensor]
    real_images: torch.Tensor
    real_per_class: list[torch.Tensor]  # sample indices of each class that has any
    classes: list[int]
    syn_class: torch.Tensor  # class of every decoded synthetic image, grouped by class
    num_classes: int
    batch_real: int
    dsa_strategy: str | None  # None: no augmentation
    dsa_mode: str
    factor: int = 1
    pool: RealStatisticsPool | None = None
    private: Any = None  # PrivateIterationStatistics in privacy mode (per-iteration releases)
    #: Privacy mode: the per-sample norm bound the released real embeddings were clipped to; the
    #: synthetic embeddings go through the same clipping so both sides are the same function.
    feature_bound: float | None = None  # privacy mode, per-iteration releases
    entry: int = field(default=0, init=False)  # the pool entry of the current iteration

    def __post_init__(self) -> None:
        counts = torch.bincount(self.syn_class, minlength=self.num_classes).tolist()
        self.syn_slices = [slice(sum(counts[:k]), sum(counts[: k + 1])) for k in self.classes]

    def prepare(self, generator: torch.Generator) -> None:
        """Set the feature map up for this iteration: a fresh network, or one of the pool's."""
        if self.pool is None:
            self.feature_map.refresh()
        else:
            self.entry = self.pool.draw(generator)
            self.pool.activate(self.entry, self.feature_map)

    def loss(self, images: torch.Tensor, targets: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Sum over classes of D(phi(real_c), phi(syn_c)), all classes augmented together."""
        syn = decode(images, self.factor)
        if self.pool is not None:
            return self._pool_loss(syn)
        if self.private is not None:
            return self._private_loss(syn, generator)
        picks = [
            idx[torch.randperm(len(idx), generator=generator)[: self.batch_real].to(idx.device)]
            for idx in self.real_per_class
        ]
        real_counts = [len(p) for p in picks]
        real = self.real_images[torch.cat(picks)]
        real_class = torch.repeat_interleave(
            torch.tensor(self.classes, device=real.device), torch.tensor(real_counts, device=real.device)
        )
        if self.dsa_strategy is not None:
            # One draw per class: a class's real and synthetic batch share it (siamese augmentation).
            params = sample_dsa_params(
                self.dsa_strategy,
                self.num_classes,
                generator=generator,
                device=images.device,
                image_size=(images.shape[2], images.shape[3]),
                mode=self.dsa_mode,
            )
            real = apply_dsa(real, params, real_class)
            syn = apply_dsa(syn, params, self.syn_class)
        loss = images.new_zeros(())
        if self.feature_map.kind == "embedding":
            # Instance-normalised networks embed each sample on its own: one forward serves all classes.
            real_features = embed_in_chunks(self.feature_map, real, real_class)
            syn_features = embed_in_chunks(self.feature_map, syn, self.syn_class, differentiable=True)
            for r, part in zip(real_features.split(real_counts), self.syn_slices):
                loss = loss + self.discrepancy(r, syn_features[part])
            return loss
        # Gradient features depend on the whole batch: one class at a time, as in DC.
        for r, rc, part in zip(real.split(real_counts), real_class.split(real_counts), self.syn_slices):
            real_grads = self.feature_map(r, rc, differentiable=False)
            syn_grads = self.feature_map(syn[part], targets[part], differentiable=True)
            loss = loss + self.discrepancy(real_grads, syn_grads)
        return loss

    def _private_loss(self, syn: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Synthetic features against this iteration's noised release of the real class means."""
        augment = None
        if self.dsa_strategy is not None:
            params = sample_dsa_params(
                self.dsa_strategy, self.num_classes, generator=generator, device=syn.device,
                image_size=(syn.shape[2], syn.shape[3]), mode=self.dsa_mode,
            )  # fmt: skip
            syn = apply_dsa(syn, params, self.syn_class)
            augment = lambda x, labels: apply_dsa(x, params, labels)  # noqa: E731  (siamese: the same draw)
        real_means = self.private.class_means(self.feature_map, generator, augment)
        syn_features = self._bounded(embed_in_chunks(self.feature_map, syn, self.syn_class, differentiable=True))
        loss = syn.new_zeros(())
        for real, part in zip(real_means, self.syn_slices):
            loss = loss + self.discrepancy(real, syn_features[part])
        return loss

    def _bounded(self, features: torch.Tensor) -> torch.Tensor:
        if self.feature_bound is None:
            return features
        return features * (self.feature_bound / features.norm(dim=1, keepdim=True).clamp_min(1e-12)).clamp(max=1.0)

    def _pool_loss(self, syn: torch.Tensor) -> torch.Tensor:
        """Synthetic features against the active pool entry's cached real features."""
        syn = self.pool.augment(self.entry, syn, self.syn_class)
        syn_features = self._bounded(embed_in_chunks(self.feature_map, syn, self.syn_class, differentiable=True))
        loss = syn.new_zeros(())
        for real, part in zip(self.pool.features[self.entry], self.syn_slices):
            loss = loss + self.discrepancy(real, syn_features[part])
        return loss
