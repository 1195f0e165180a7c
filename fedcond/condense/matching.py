"""Condensation by discrepancy matching: the one loop behind DM, M3D, DC/DSA and their relatives.

Each iteration asks the run's real-side target (:mod:`fedcond.condense.targets`) for this
iteration's network and the real features of each class, applies the DSA draw the real images saw
to the synthetic images (siamese augmentation), maps them through the same feature map and adds
the per-class discrepancies; one backward pass and one optimiser step then move the synthetic
pixels (and soft labels). Every iteration's randomness comes from ``(seed, iteration)``, so runs
are reproducible and a resumed run continues exactly where the checkpoint left it.

The run is four steps: :func:`setup` (feature map, discrepancy, target, initial images,
optimiser), :func:`resume` (from a checkpoint, if one exists), :func:`run_loop` and
:func:`finish` (the :class:`~fedcond.synthetic.SyntheticSet` and its metadata). ``condense.factor``
stores each image as f x f tiles (:mod:`fedcond.condense.parameterisation`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from fedcond.adversarial import PixelSpace
from fedcond.augment import apply_dsa, dsa
from fedcond.condense.checkpoint import MatchingCheckpoint
from fedcond.condense.common import build_synthetic_set
from fedcond.condense.coreset import EMBEDDING_SELECTIONS, select_in_embedding
from fedcond.condense.parameterisation import check_factor, decode, encode
from fedcond.condense.registry import register_condense_method
from fedcond.condense.robustness import RobustnessTerm, build_robustness
from fedcond.condense.targets import RealData, RealSide, RealTarget, build_real_target, select_real_target
from fedcond.discrepancies import build_discrepancy
from fedcond.errors import ConfigError
from fedcond.features import FeatureContext, FeatureMap, Features, build_feature_map, embed_in_chunks
from fedcond.seeds import derive_seed
from fedcond.synthetic import StoredImages

if TYPE_CHECKING:
    from fedcond.config import Config
    from fedcond.data.base import ImageDataset
    from fedcond.synthetic import SyntheticSet

#: Soft labels start as logits ``scale * one_hot``: a confident but not saturated softmax.
SOFT_LABEL_INIT_SCALE = 5.0
#: How many loss values the synthetic set's metadata keeps (evenly spaced over the run).
LOSS_TRACE_POINTS = 50
#: What ``condense.init`` may name: random real samples, a coreset selection, or noise.
INITIALISATIONS = ("real", "herding", "k-center", "noise")


@register_condense_method("matching")
def condense_by_matching(
    data: ImageDataset, config: Config, *, device: torch.device, progress: bool, checkpoint: Path | None
) -> SyntheticSet:
    """Optimise per-class synthetic images against ``condense.discrepancy`` seen through ``condense.feature_map``."""
    run = setup(data, config, device=device, progress=progress)
    store = MatchingCheckpoint(checkpoint, config) if checkpoint is not None else None
    if store is not None and not run.target.resumable:
        if config.condense.checkpoint_every or store.path.exists():
            raise ConfigError(f"real-side target {run.target_name!r} cannot be checkpointed or resumed; set condense.checkpoint_every 0")
        store = None
    resume(run, store)
    run_loop(run, store, progress=progress)
    return finish(run)


@dataclass
class MatchingRun:
    """The state of one matching run, from setup to finish."""

    data: ImageDataset
    config: Config
    feature_map: FeatureMap
    target: RealTarget
    target_name: str
    problem: MatchingProblem
    images: torch.Tensor  # stored images, being optimised
    label_logits: torch.Tensor | None  # learned soft labels (logits), or None
    optimizer: torch.optim.Optimizer
    started: float = field(default_factory=time.perf_counter)  # when setup began (the target's preparation counts)
    start: int = 0  # first iteration still to run
    elapsed_before: float = 0.0  # seconds spent before a resumption
    loss_trace: list[list[float]] = field(default_factory=list)
    done: int = 0  # iterations run so far (resumed ones included)
    time_budget_hit: bool = False  # stopped by ``condense.max_seconds`` before ``condense.iterations``

    @property
    def elapsed(self) -> float:
        """Seconds of this run so far, a resumed run's earlier seconds included."""
        return self.elapsed_before + time.perf_counter() - self.started

    @property
    def targets(self) -> torch.Tensor:
        """What the synthetic images are labelled with: classes, or the soft labels' current distribution."""
        return self.problem.syn_class if self.label_logits is None else self.label_logits.softmax(dim=1)

    def state(self, iteration: int) -> dict[str, Any]:
        """What a checkpoint keeps after ``iteration`` iterations."""
        return {
            "iteration": iteration,
            "elapsed": self.elapsed,
            "loss_trace": self.loss_trace,
            "images": self.images.detach().cpu(),
            "label_logits": self.label_logits.detach().cpu() if self.label_logits is not None else None,
            "optimizer": self.optimizer.state_dict(),
            "feature_map": self.feature_map.state_dict(),
        }


def setup(data: ImageDataset, config: Config, *, device: torch.device, progress: bool) -> MatchingRun:
    """Build the feature map, discrepancy and real-side target, the initial images and their optimiser."""
    started = time.perf_counter()
    c = config.condense
    num_classes = data.num_classes
    context = FeatureContext(c.model, data.channels, num_classes, data.image_size, device, c.model_params, c.compile)
    feature_map = build_feature_map(c.feature_map, context, **c.feature_params)
    discrepancy = build_discrepancy(c.discrepancy, **c.discrepancy_params)
    check_factor(c.factor, data.image_size)
    tiles = c.factor * c.factor

    per_class = data.indices_per_class()
    robustness = build_robustness(c.robustness, PixelSpace(data.mean, data.std))
    real = RealData(
        config=config, feature_map=feature_map, images=data.images.to(device), labels=data.labels.to(device),
        per_class=[idx.to(device) for idx in per_class], num_classes=num_classes, progress=progress,
        robustness=robustness,
    )  # fmt: skip
    target_name = select_real_target(config)
    target = build_real_target(target_name, real)
    quotas = target.quotas(c.ipc)
    classes = [k for k in range(num_classes) if quotas[k] > 0]
    # Class of every *training* image (stored image i decodes to f² images, all of its class).
    syn_class = torch.repeat_interleave(torch.arange(num_classes), torch.tensor(quotas) * tiles).to(device)
    # The same draw as the random coreset's: a real initialisation starts from that coreset.
    selection = torch.Generator().manual_seed(derive_seed(config.seed, "real-selection"))
    images = _initial_images(data, per_class, quotas, c.init, c.factor, selection, config=config, device=device)
    images = images.to(device).requires_grad_(True)
    parameters = [{"params": [images], "lr": c.lr_images}]
    label_logits = None
    if c.label_source == "learned":
        label_logits = (SOFT_LABEL_INIT_SCALE * F.one_hot(syn_class, num_classes).float()).requires_grad_(True)
        parameters.append({"params": [label_logits], "lr": c.lr_labels})
    if c.optimizer == "sgd":
        optimizer: torch.optim.Optimizer = torch.optim.SGD(parameters, lr=c.lr_images, momentum=c.momentum)
    else:
        optimizer = torch.optim.Adam(parameters, lr=c.lr_images)
    target.prepare(classes)
    problem = MatchingProblem(feature_map, discrepancy, classes, syn_class, num_classes, c.factor, robustness)
    return MatchingRun(data, config, feature_map, target, target_name, problem, images, label_logits, optimizer, started)


def resume(run: MatchingRun, store: MatchingCheckpoint | None) -> None:
    """Continue from ``store``'s checkpoint when it exists; a fresh run otherwise."""
    saved = store.load() if store is not None else None
    if saved is None:
        return
    device = run.images.device
    with torch.no_grad():
        run.images.copy_(saved["images"].to(device))
        if run.label_logits is not None:
            run.label_logits.copy_(saved["label_logits"].to(device))
    run.optimizer.load_state_dict(saved["optimizer"])
    run.feature_map.load_state_dict(saved["feature_map"])
    run.start, run.elapsed_before, run.loss_trace = int(saved["iteration"]), float(saved["elapsed"]), list(saved["loss_trace"])


def run_loop(run: MatchingRun, store: MatchingCheckpoint | None, *, progress: bool) -> None:
    """The iterations from ``run.start`` to ``condense.iterations`` (or until ``condense.max_seconds``
    have passed), checkpointing as configured."""
    c = run.config.condense
    run.done = run.start
    trace_every = max(1, c.iterations // LOSS_TRACE_POINTS)
    device = run.images.device
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        # disable=None: a bar on a terminal only, not in CI logs or files.
        bar = tqdm(range(run.start, c.iterations), desc="condense", disable=None if progress else True,
                   initial=run.start, total=c.iterations)  # fmt: skip
        for iteration in bar:
            seed = derive_seed(run.config.seed, "iteration", iteration)
            torch.manual_seed(seed)  # fresh networks, sliced-Wasserstein directions, DC's batches
            generator = torch.Generator().manual_seed(seed)
            real = run.target.draw(generator)
            targets = run.targets
            loss = run.problem.loss(run.images, targets, real)
            run.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            run.optimizer.step()
            augment = (lambda x: dsa(x, c.dsa_strategy, generator=generator, mode=c.dsa_mode)) if c.dsa else None
            decoded = decode(run.images.detach(), c.factor)
            labels = targets.detach() if run.label_logits is not None else run.problem.syn_class
            run.feature_map.update(decoded, labels, augment)
            if iteration % trace_every == 0 or iteration == c.iterations - 1:
                loss_value = float(loss.detach())
                run.loss_trace.append([iteration, loss_value])
                bar.set_postfix(loss=f"{loss_value:.4g}")
                if not math.isfinite(loss_value):  # checked where the value is read anyway: no extra sync
                    raise ConfigError(
                        f"condensation diverged at iteration {iteration} (loss {loss_value}); lower condense.lr_images"
                    )
            done = run.done = iteration + 1
            if store is not None and c.checkpoint_every and (done % c.checkpoint_every == 0 or done == c.iterations):
                store.save(run.state(done))
            if c.max_seconds is not None and done < c.iterations and run.elapsed >= c.max_seconds:
                run.time_budget_hit = True
                break
        bar.close()


def finish(run: MatchingRun) -> SyntheticSet:
    """The synthetic set: decoded images, their labels, and metadata of how they were made."""
    c = run.config.condense
    labels = run.problem.syn_class if run.label_logits is None else run.label_logits.detach().softmax(dim=1)
    extra: dict[str, Any] = {}
    if c.factor > 1:
        extra["factor"] = c.factor
        extra["images_per_class"] = c.ipc * c.factor * c.factor
    extra.update(run.target.metadata())
    if run.problem.robustness is not None:
        extra["robustness"] = run.problem.robustness.metadata()
    if c.model_params:
        extra["model_params"] = dict(c.model_params)
    return build_synthetic_set(
        decode(run.images.detach(), c.factor),
        labels,
        run.data,
        run.config,
        seconds=run.elapsed,
        extra_timings={"pool_seconds": round(run.target.seconds, 3)},
        stored=StoredImages(run.images.detach(), c.factor) if c.factor > 1 else None,
        iterations=c.iterations,
        iterations_run=run.done,
        time_budget_hit=run.time_budget_hit,
        loss_trace=run.loss_trace,
        **extra,
    )


@dataclass
class MatchingProblem:
    """The matching loss: the synthetic side of every iteration, against a :class:`RealSide`."""

    feature_map: FeatureMap
    discrepancy: Callable[[Features, Features], torch.Tensor]
    classes: list[int]
    syn_class: torch.Tensor  # class of every decoded synthetic image, grouped by class
    num_classes: int
    factor: int = 1
    robustness: RobustnessTerm | None = None  # its penalty, if any, joins the loss

    def __post_init__(self) -> None:
        counts = torch.bincount(self.syn_class, minlength=self.num_classes).tolist()
        self.syn_slices = [slice(sum(counts[:k]), sum(counts[: k + 1])) for k in self.classes]

    def loss(self, images: torch.Tensor, targets: torch.Tensor, real: RealSide) -> torch.Tensor:
        """Sum over classes of D(phi(real_c), phi(syn_c)), the synthetic images under the real side's DSA draw."""
        syn = decode(images, self.factor)
        if real.augmentation is not None:
            syn = apply_dsa(syn, real.augmentation, self.syn_class)
        loss = images.new_zeros(())
        if self.robustness is not None:
            penalty = self.robustness.penalty(self.feature_map, syn, targets)
            if penalty is not None:
                loss = loss + penalty
        if self.feature_map.kind == "embedding":
            # Instance-normalised networks embed each sample on its own: one forward serves all classes.
            syn_features = embed_in_chunks(self.feature_map, syn, self.syn_class, differentiable=True)
            if real.synthetic_bound is not None:
                syn_features = _clip_rows(syn_features, real.synthetic_bound)
            for real_features, part in zip(real.features, self.syn_slices):
                loss = loss + self.discrepancy(real_features, syn_features[part])
            if real.classifier is not None and real.classifier_weight > 0:
                logits = real.classifier(syn_features)
                loss = loss + real.classifier_weight * F.cross_entropy(logits, targets)
            return loss
        # Gradient features depend on the whole batch: one class at a time, as in DC.
        for real_grads, part in zip(real.features, self.syn_slices):
            syn_grads = self.feature_map(syn[part], targets[part], differentiable=True)
            loss = loss + self.discrepancy(real_grads, syn_grads)
        return loss


def _clip_rows(features: torch.Tensor, bound: float) -> torch.Tensor:
    """Each row scaled down to L2 norm ``bound`` if longer (the clipping the released real side saw)."""
    return features * (bound / features.norm(dim=1, keepdim=True).clamp_min(1e-12)).clamp(max=1.0)


def _initial_images(
    data: ImageDataset,
    per_class: list[torch.Tensor],
    quotas: list[int],
    init: str,
    factor: int,
    generator: torch.Generator,
    *,
    config: Config,
    device: torch.device,
) -> torch.Tensor:
    """Stored images ``[sum(quotas), C, H, W]``: real samples (packed f x f) or noise.

    ``real`` takes random samples of each class (the random coreset's draw), ``herding`` and
    ``k-center`` the samples those coresets select (``quota x f²`` per class), ``noise`` standard
    normal pixels.
    """
    if init == "noise":
        shape = (sum(quotas), *data.images.shape[1:])
        return torch.randn(shape, generator=generator)
    tiles = factor * factor
    if init in EMBEDDING_SELECTIONS:
        chosen = select_in_embedding(data, config, device, init, [q * tiles for q in quotas])
    else:
        # Classes without a quota draw nothing, so the generator's stream is the random coreset's.
        chosen = [idx[torch.randperm(len(idx), generator=generator)] if q else idx for idx, q in zip(per_class, quotas)]
    # quota * f² distinct samples where the class has them; a small class repeats its own.
    picks = []
    for order, q in zip(chosen, quotas):
        if q == 0:
            continue
        picks.append(order.repeat(math.ceil(q * tiles / len(order)))[: q * tiles])
    return encode(data.images[torch.cat(picks)].clone(), factor)
