"""The field's evaluation protocol: fresh networks trained on the synthetic set only.

Each run trains a freshly initialised network (ConvNet-3 by default) on the synthetic set with
SGD (lr 0.01, momentum 0.9, weight decay 5e-4, lr x0.1 at half-way, batch 256) and DSA, then
measures test accuracy. The arithmetic is the protocol's; only the execution is tuned: DSA is
vectorised over the batch, a batch-independent network (no batch norm) takes each batch of 256
in cache-sized pieces with accumulated gradients, the test pass runs in inference mode in
cache-sized chunks, and CUDA runs under bf16 autocast. Accuracies are in percent; the std is over runs (population std, as
the reference code reports it). Run ``r`` is seeded from ``(seed, r)`` only, so two sets
evaluated with the same config meet the same initialisations and augmentations.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from fedcond.adversarial import AdversarialTraining, PixelSpace
from fedcond.augment import dsa
from fedcond.data.base import ImageDataset
from fedcond.device import autocast, chunk_size, compiled_function, resolve_device, split_pieces
from fedcond.errors import ConfigError, DataError
from fedcond.models import batch_independent, build_model
from fedcond.seeds import derive_seed
from fedcond.synthetic import SyntheticSet

if TYPE_CHECKING:
    from fedcond.config import Config, EvaluationConfig
    from fedcond.labels import Teacher


@dataclass(frozen=True)
class Protocol:
    """How many fresh networks an evaluation trains, and for how many epochs (None: as configured)."""

    runs: int | None = None
    epochs: int | None = None


#: ``evaluation.protocol``: ``full`` is the field's protocol as configured (default 3 networks x 300
#: epochs); ``quick`` is the tuning protocol, one network x 100 epochs with the same SGD, schedule,
#: DSA and test set. Its rank correlation with ``full`` is measured by
#: ``simulations/benchmark_speed.py`` (docs/benchmarks.md): a quick number ranks sets, it is not a result.
EVALUATION_PROTOCOLS: dict[str, Protocol] = {"full": Protocol(), "quick": Protocol(runs=1, epochs=100)}
#: ``evaluation.loss``: cross-entropy to the stored labels, or knowledge distillation at a temperature.
EVALUATION_LOSSES = ("ce", "kd")


def protocol_settings(cfg: EvaluationConfig) -> EvaluationConfig:
    """``cfg`` with the runs and epochs of its ``protocol``."""
    preset = EVALUATION_PROTOCOLS[cfg.protocol]
    return replace(cfg, runs=preset.runs or cfg.runs, epochs=preset.epochs or cfg.epochs)


@dataclass
class EvaluationResult:
    """Test accuracies (percent) of ``runs`` fresh ``model`` networks under ``protocol``."""

    model: str
    runs: int
    epochs: int
    accuracies: list[float]
    accuracy_mean: float
    accuracy_std: float
    seconds: float
    protocol: str = "full"
    #: ``evaluation.loss`` and, for ``kd``, its temperature.
    loss: str = "ce"
    temperature: float | None = None
    #: ``stored``: the set's own labels; ``online-teacher``: every augmented batch relabelled by the
    #: teacher (a different protocol, SRe2L/RDED-style).
    labels: str = "stored"
    #: ``evaluation.adversarial``'s PGD adversarial training (method, epsilon, steps, step_size,
    #: norm); None: standard training.
    adversarial: dict[str, Any] | None = None
    #: What ``evaluate_synthetic(..., measure=...)`` measured on each run's network, run by run
    #: (empty without a measure): e.g. the robustness adapter's attacked accuracies.
    measured: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict:
        """The result for ``results.json``; ``measured`` is left to whoever measured it (the robust
        section summarises its own)."""
        data = asdict(self)
        data.pop("measured")
        return data


def run_seed(seed: int, run: int) -> int:
    """The seed of evaluation run ``run``: the same for every set evaluated under ``seed``."""
    return derive_seed(seed, "evaluation-run", run)


def train_network(
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    model: str,
    num_classes: int,
    cfg: EvaluationConfig,
    dsa_strategy: str | None,
    device: torch.device,
    seed: int,
    dsa_mode: str = "single",
    loss: str = "ce",
    temperature: float = 1.0,
    relabel: Callable[[torch.Tensor], torch.Tensor] | None = None,
    adversarial: AdversarialTraining | None = None,
) -> nn.Module:
    """Train a fresh ``model`` on ``(images, labels)``; labels are hard ``[M]`` or soft ``[M, K]``
    (``loss``, ``temperature``, ``relabel`` and ``adversarial`` as for :func:`fit`)."""
    net = fresh_network(model, images.shape[1:], num_classes, device=device, seed=seed)
    if loss == "kd" and labels.ndim == 1:
        labels = F.one_hot(labels, num_classes).float()
    return fit(
        net, images, labels, cfg=cfg, dsa_strategy=dsa_strategy, device=device, seed=seed, dsa_mode=dsa_mode,
        loss=loss, temperature=temperature, relabel=relabel, adversarial=adversarial,
    )  # fmt: skip


def fresh_network(
    model: str,
    image_shape: torch.Size | tuple[int, ...],
    num_classes: int,
    *,
    device: torch.device,
    seed: int,
    **options: object,
) -> nn.Module:
    """A freshly initialised ``model`` (with its ``options``) for ``[C, H, W]`` images, initialised under ``seed`` only."""
    channels, height, width = (int(v) for v in image_shape)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        return build_model(model, channels=channels, num_classes=num_classes, image_size=(height, width), **options).to(device)


def fit(
    net: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    cfg: EvaluationConfig,
    dsa_strategy: str | None,
    device: torch.device,
    seed: int,
    dsa_mode: str = "single",
    decay: bool = True,
    proximal_mu: float = 0.0,
    loss: str = "ce",
    temperature: float = 1.0,
    relabel: Callable[[torch.Tensor], torch.Tensor] | None = None,
    steps: int | None = None,
    adversarial: AdversarialTraining | None = None,
) -> nn.Module:
    """Train ``net`` in place with the protocol's SGD on ``(images, labels)``; return it in eval mode.

    ``decay`` applies the protocol's lr x0.1 at half-way (local FedAvg training keeps lr constant).
    ``proximal_mu > 0`` adds FedProx's ``mu/2 * ||w - w_start||^2`` towards the starting weights.
    ``loss="kd"`` trains on ``T² · KL(labels ‖ softmax(net / T))`` at ``temperature`` (labels
    ``[M, K]``); ``relabel`` replaces the labels of every augmented batch by its output.
    ``steps`` trains for exactly that many SGD steps (epochs over the data, the last one cut short)
    instead of ``cfg.epochs`` epochs; the lr decay, if any, comes at half of the epochs this takes.
    ``adversarial`` trains on every batch's PGD perturbation (after augmentation), against the
    training loss (PGD-AT); ``cfg.adversarial`` is not read here, the caller decides.
    """
    if steps is not None and steps < 1:
        raise ValueError("steps must be >= 1")
    generator = torch.Generator().manual_seed(seed)
    images, labels = images.to(device), labels.to(device)
    if loss == "kd" and labels.ndim != 2:
        raise ValueError("loss='kd' trains on distributions [M, K]; make hard labels one-hot first")
    optimizer = torch.optim.SGD(net.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    batches = max(1, -(-len(images) // cfg.batch_size))
    epochs = cfg.epochs if steps is None else -(-steps // batches)
    milestones = [epochs // 2] if decay else []
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=milestones, gamma=0.1)
    anchor = [p.detach().clone() for p in net.parameters()] if proximal_mu > 0 else []
    # Pieces of a batch give the same gradient only when samples don't see each other (no batch norm).
    piece = chunk_size(device) if batch_independent(net) else cfg.batch_size
    if loss == "kd":
        kd = compiled_function("piece-loss-kd", kd_piece_loss) if cfg.compile else kd_piece_loss

        def loss_of(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            return kd(net, x, y, temperature)

        def attack_loss(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            return kd_piece_loss(net, x, y, temperature)
    else:
        loss_of = compiled_function("piece-loss", piece_loss) if cfg.compile else piece_loss
        attack_loss = piece_loss  # uncompiled: the attack's batches are whole, not pieces
    net.train()
    taken = 0
    for _ in range(epochs):
        order = torch.randperm(len(images), generator=generator).to(device)
        for batch in order.split(cfg.batch_size):
            if steps is not None and taken == steps:
                break
            taken += 1
            x, y = images[batch], labels[batch]
            if dsa_strategy is not None:
                x = dsa(x, dsa_strategy, generator=generator, mode=dsa_mode)
            if relabel is not None:
                y = relabel(x)
            if adversarial is not None:
                x = adversarial.perturb(net, x, y, attack_loss, generator)
            optimizer.zero_grad(set_to_none=True)
            for xp, yp in zip(*split_pieces(x, y, piece, equal=cfg.compile)):
                with autocast(device, cfg.precision):
                    piece_value = loss_of(net, xp, yp) / len(x)
                piece_value.backward()
            if anchor:
                proximal = sum(((p - a) ** 2).sum() for p, a in zip(net.parameters(), anchor))
                (0.5 * proximal_mu * proximal).backward()
            optimizer.step()
        scheduler.step()
    return net.eval()


def piece_loss(net: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Summed cross-entropy of ``net`` on a piece of a batch (hard ``[m]`` or soft ``[m, K]`` labels)."""
    return F.cross_entropy(net(images), labels, reduction="sum")


def kd_piece_loss(net: nn.Module, images: torch.Tensor, targets: torch.Tensor, temperature: float) -> torch.Tensor:
    """Summed ``T² · KL(targets ‖ softmax(net(images) / T))`` of a piece of a batch (soft ``[m, K]`` targets).

    The targets are distributions already made at the labels' temperature (a teacher's softmax at
    ``T``); the student's logits are divided by the same ``T``, and ``T²`` keeps the gradient's
    scale independent of it (Hinton et al., 2015). With one-hot targets and ``T = 1`` this is
    cross-entropy.
    """
    log_probs = F.log_softmax(net(images).float() / temperature, dim=1)
    return temperature * temperature * F.kl_div(log_probs, targets.float(), reduction="sum")


def predict(net: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """Predicted classes of ``net`` for ``images``."""
    return net(images).argmax(1)


@torch.inference_mode()
def test_accuracy(
    net: nn.Module, test: ImageDataset, device: torch.device, *, precision: str = "auto", compiled: bool = False
) -> float:
    """Top-1 accuracy of ``net`` on ``test``, in percent.

    Parameters
    ----------
    net
        The trained network (put in eval mode).
    test
        The test split.
    device
        Where ``net`` lives.
    precision
        ``evaluation.precision`` (:data:`fedcond.device.PRECISIONS`).
    compiled
        Run the forward pass through ``torch.compile``; the last chunk is padded to the chunk size
        so one graph serves the whole test set.
    """
    net.eval()
    size = chunk_size(device)
    forward = compiled_function("predict", predict) if compiled else predict
    correct = torch.zeros((), dtype=torch.int64, device=device)
    for x, y in zip(test.images.split(size), test.labels.split(size)):
        x, y = x.to(device), y.to(device)
        if compiled and len(x) < size:
            x = torch.cat([x, x.new_zeros((size - len(x), *x.shape[1:]))])
        with autocast(device, precision):
            correct += (forward(net, x)[: len(y)] == y).sum()
    return 100.0 * int(correct) / len(test)


def evaluate_synthetic(
    synthetic: SyntheticSet,
    test: ImageDataset,
    config: Config,
    *,
    model: str | None = None,
    device: torch.device | None = None,
    progress: bool | None = None,
    teacher: Teacher | None = None,
    measure: Callable[[nn.Module, int], dict[str, Any]] | None = None,
) -> EvaluationResult:
    """Train ``config.evaluation.runs`` fresh networks on ``synthetic`` and test each on ``test``.

    Parameters
    ----------
    synthetic
        The set to evaluate: hard labels train with cross-entropy, soft labels against their
        distributions.
    test
        The real test split; its images must have the set's shape and its label space.
    config
        ``evaluation`` is the protocol (model, runs, epochs, SGD settings, DSA; ``protocol: quick``
        replaces runs and epochs by the tuning protocol's); DSA uses
        ``condense.dsa_strategy`` and ``dsa_mode``. Run ``r`` is seeded from ``(config.seed, r)``
        only, so every set evaluated under one config meets the same networks and augmentations.
    model
        Evaluate with this architecture instead of ``evaluation.model`` (cross-architecture).
    device
        Where to train (default: ``config.device``).
    progress
        Show a progress bar (default: ``config.progress``).
    teacher
        The teacher that relabels every augmented batch when ``evaluation.online_relabel`` is set.
    measure
        Called with each run's trained network (in eval mode) and the run's index; what it returns
        is kept in ``EvaluationResult.measured``, run by run (the robustness adapter attacks the
        networks this way). Its time counts in ``seconds``.

    Returns
    -------
    EvaluationResult
        Test accuracies in percent, their mean and population std, and the seconds taken.

    Raises
    ------
    fedcond.errors.DataError
        A set whose image shape or classes do not match ``test``.
    fedcond.errors.ConfigError
        ``online_relabel`` without a teacher, or a set whose labels' temperature is not a positive number.
    """
    cfg = protocol_settings(config.evaluation)
    model = model or cfg.model
    device = device or resolve_device(config.device)
    progress = config.progress if progress is None else progress
    if tuple(synthetic.images.shape[1:]) != tuple(test.images.shape[1:]):
        raise DataError(
            f"synthetic images are {tuple(synthetic.images.shape[1:])} but {test.name} test images are "
            f"{tuple(test.images.shape[1:])}"
        )
    if synthetic.num_classes != test.num_classes:
        raise DataError(f"synthetic set has {synthetic.num_classes} classes, {test.name} has {test.num_classes}")
    strategy = config.condense.dsa_strategy if cfg.dsa else None
    temperature = (cfg.temperature or labels_temperature(synthetic)) if cfg.loss == "kd" else None
    relabel = None
    if cfg.online_relabel:
        if teacher is None:
            raise ConfigError("evaluation.online_relabel needs the teacher at hand (evaluate_synthetic(..., teacher=...))")
        relabel = _online_labels(teacher, config.condense.teacher.temperature, device)
    adversarial = None
    if cfg.adversarial.epsilon is not None:
        a = cfg.adversarial
        adversarial = AdversarialTraining(PixelSpace(test.mean, test.std), a.epsilon, a.steps, a.step_size)
    started = time.perf_counter()
    accuracies: list[float] = []
    measured: list[dict[str, Any]] = []
    for run in tqdm(range(cfg.runs), desc=f"evaluate {model}", disable=None if progress else True, leave=False):
        net = train_network(
            synthetic.images,
            synthetic.labels,
            model=model,
            num_classes=synthetic.num_classes,
            cfg=cfg,
            dsa_strategy=strategy,
            dsa_mode=config.condense.dsa_mode,
            device=device,
            seed=run_seed(config.seed, run),
            loss=cfg.loss,
            temperature=temperature or 1.0,
            relabel=relabel,
            adversarial=adversarial,
        )
        accuracies.append(test_accuracy(net, test, device, precision=cfg.precision, compiled=cfg.compile))
        if measure is not None:
            measured.append(measure(net.eval(), run))
    mean = float(np.mean(accuracies))
    std = float(np.std(accuracies))
    return EvaluationResult(
        model=model,
        runs=cfg.runs,
        epochs=cfg.epochs,
        accuracies=[round(a, 4) for a in accuracies],
        accuracy_mean=round(mean, 4),
        accuracy_std=round(std, 4),
        seconds=round(time.perf_counter() - started, 3),
        protocol=cfg.protocol,
        loss=cfg.loss,
        temperature=temperature,
        labels="online-teacher" if relabel is not None else "stored",
        adversarial=None if adversarial is None else adversarial.info(),
        measured=measured,
    )


def labels_temperature(synthetic: SyntheticSet) -> float:
    """The temperature the set's labels were made at (a teacher's), else 1; untrusted metadata is checked."""
    labels = synthetic.metadata.get("labels")
    value = labels.get("temperature", 1.0) if isinstance(labels, dict) else 1.0
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ConfigError(f"the set's metadata gives labels temperature {value!r}; set evaluation.temperature")
    return float(value)


def _online_labels(teacher: Teacher, temperature: float, device: torch.device) -> Callable[[torch.Tensor], torch.Tensor]:
    """The teacher's softmax at ``temperature`` of an augmented batch, on the student's device."""
    net = teacher.net.to(device).eval()

    @torch.no_grad()
    def relabel(images: torch.Tensor) -> torch.Tensor:
        return (net(images).float() / temperature).softmax(dim=1)

    return relabel
