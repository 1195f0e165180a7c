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

import time
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from fedcond.augment import dsa
from fedcond.data.base import ImageDataset
from fedcond.device import autocast, chunk_size, resolve_device
from fedcond.errors import DataError
from fedcond.models import batch_independent, build_model
from fedcond.seeds import derive_seed
from fedcond.synthetic import SyntheticSet

if TYPE_CHECKING:
    from fedcond.config import Config, EvaluationConfig


@dataclass
class EvaluationResult:
    """Test accuracies (percent) of ``runs`` fresh ``model`` networks."""

    model: str
    runs: int
    epochs: int
    accuracies: list[float]
    accuracy_mean: float
    accuracy_std: float
    seconds: float

    def to_dict(self) -> dict:
        return asdict(self)


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
) -> nn.Module:
    """Train a fresh ``model`` on ``(images, labels)``; labels are hard ``[M]`` or soft ``[M, K]``."""
    net = fresh_network(model, images.shape[1:], num_classes, device=device, seed=seed)
    return fit(net, images, labels, cfg=cfg, dsa_strategy=dsa_strategy, device=device, seed=seed, dsa_mode=dsa_mode)


def fresh_network(
    model: str, image_shape: torch.Size | tuple[int, ...], num_classes: int, *, device: torch.device, seed: int
) -> nn.Module:
    """A freshly initialised ``model`` for ``[C, H, W]`` images, initialised under ``seed`` only."""
    channels, height, width = (int(v) for v in image_shape)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        return build_model(model, channels=channels, num_classes=num_classes, image_size=(height, width)).to(device)


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
) -> nn.Module:
    """Train ``net`` in place with the protocol's SGD on ``(images, labels)``; return it in eval mode.

    ``decay`` applies the protocol's lr x0.1 at half-way (local FedAvg training keeps lr constant).
    ``proximal_mu > 0`` adds FedProx's ``mu/2 * ||w - w_start||^2`` towards the starting weights.
    """
    generator = torch.Generator().manual_seed(seed)
    images, labels = images.to(device), labels.to(device)
    optimizer = torch.optim.SGD(net.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    milestones = [cfg.epochs // 2] if decay else []
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=milestones, gamma=0.1)
    anchor = [p.detach().clone() for p in net.parameters()] if proximal_mu > 0 else []
    # Pieces of a batch give the same gradient only when samples don't see each other (no batch norm).
    piece = chunk_size(device) if batch_independent(net) else cfg.batch_size
    net.train()
    for _ in range(cfg.epochs):
        order = torch.randperm(len(images), generator=generator).to(device)
        for batch in order.split(cfg.batch_size):
            x, y = images[batch], labels[batch]
            if dsa_strategy is not None:
                x = dsa(x, dsa_strategy, generator=generator, mode=dsa_mode)
            optimizer.zero_grad(set_to_none=True)
            for xp, yp in zip(x.split(piece), y.split(piece)):
                with autocast(device):
                    loss = F.cross_entropy(net(xp), yp, reduction="sum") / len(x)
                loss.backward()
            if anchor:
                proximal = sum(((p - a) ** 2).sum() for p, a in zip(net.parameters(), anchor))
                (0.5 * proximal_mu * proximal).backward()
            optimizer.step()
        scheduler.step()
    return net.eval()


@torch.inference_mode()
def test_accuracy(net: nn.Module, test: ImageDataset, device: torch.device) -> float:
    """Top-1 accuracy of ``net`` on ``test``, in percent."""
    net.eval()
    size = chunk_size(device)
    correct = torch.zeros((), dtype=torch.int64, device=device)
    for x, y in zip(test.images.split(size), test.labels.split(size)):
        with autocast(device):
            correct += (net(x.to(device)).argmax(1) == y.to(device)).sum()
    return 100.0 * int(correct) / len(test)


def evaluate_synthetic(
    synthetic: SyntheticSet,
    test: ImageDataset,
    config: Config,
    *,
    model: str | None = None,
    device: torch.device | None = None,
    progress: bool | None = None,
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
        ``evaluation`` is the protocol (model, runs, epochs, SGD settings, DSA); DSA uses
        ``condense.dsa_strategy`` and ``dsa_mode``. Run ``r`` is seeded from ``(config.seed, r)``
        only, so every set evaluated under one config meets the same networks and augmentations.
    model
        Evaluate with this architecture instead of ``evaluation.model`` (cross-architecture).
    device
        Where to train (default: ``config.device``).
    progress
        Show a progress bar (default: ``config.progress``).

    Returns
    -------
    EvaluationResult
        Test accuracies in percent, their mean and population std, and the seconds taken.

    Raises
    ------
    fedcond.errors.DataError
        A set whose image shape or classes do not match ``test``.
    """
    cfg = config.evaluation
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
    started = time.perf_counter()
    accuracies = []
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
        )
        accuracies.append(test_accuracy(net, test, device))
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
    )
