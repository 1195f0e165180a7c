"""Attacked accuracy of trained networks, with the Adversarial Robustness Toolbox (ART).

Every attack is L-infinity in *pixel* space: the test images are un-normalised to ``[0, 1]`` and
the attacked model is the network behind ART's own standardisation (``preprocessing=(mean, std)``),
with ``clip_values=(0, 1)``, so a radius of 0.1 means a tenth of the pixel range whatever the
dataset's normalisation. PGD is ART's ``ProjectedGradientDescentPyTorch``; AutoAttack is ART's
``AutoAttack`` (:data:`~fedcond.robustness.config.AUTOATTACK_VERSIONS`). fedcond attacks nothing
with code of its own: an evaluation with a hand-written attack is too easy to get wrong in the
defender's favour.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from importlib.metadata import version
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from fedcond.data.base import ImageDataset
from fedcond.seeds import derive_seed

if TYPE_CHECKING:
    from fedcond.robustness.config import RobustEvaluationConfig

#: The library that runs every attack, as results.json names it.
LIBRARY = "adversarial-robustness-toolbox"


@dataclass(frozen=True)
class AttackSubset:
    """The test images attacked: pixel-space images ``[n, C, H, W]`` in ``[0, 1]`` and their labels."""

    pixels: np.ndarray
    labels: np.ndarray
    mean: np.ndarray  # [C, 1, 1]: the normalisation the attacked model applies
    std: np.ndarray

    @classmethod
    def draw(cls, test: ImageDataset, size: int | None, seed: int) -> AttackSubset:
        """``size`` test images (all when None or larger than the split), drawn under ``seed``."""
        count = len(test) if size is None else min(size, len(test))
        generator = torch.Generator().manual_seed(derive_seed(seed, "robust-subset"))
        picked = torch.randperm(len(test), generator=generator)[:count].sort().values
        mean = torch.tensor(test.mean, dtype=torch.float32).view(-1, 1, 1)
        std = torch.tensor(test.std, dtype=torch.float32).view(-1, 1, 1)
        pixels = (test.images[picked] * std + mean).clamp(0.0, 1.0)
        return cls(pixels.numpy(), test.labels[picked].numpy(), mean.numpy(), std.numpy())

    def __len__(self) -> int:
        return len(self.labels)


def art_classifier(net: nn.Module, subset: AttackSubset, num_classes: int, device: torch.device) -> Any:
    """``net`` as ART sees it: pixels in ``[0, 1]``, standardised inside, logits out."""
    from art.estimators.classification import PyTorchClassifier

    return PyTorchClassifier(
        model=net.eval(),
        loss=nn.CrossEntropyLoss(),
        input_shape=tuple(subset.pixels.shape[1:]),
        nb_classes=num_classes,
        clip_values=(0.0, 1.0),
        preprocessing=(subset.mean, subset.std),
        device_type="gpu" if device.type == "cuda" else "cpu",
    )


def accuracy(classifier: Any, pixels: np.ndarray, labels: np.ndarray, batch_size: int) -> float:
    """Top-1 accuracy (percent) of ``classifier`` on ``pixels``."""
    predicted = classifier.predict(pixels, batch_size=batch_size).argmax(axis=1)
    return 100.0 * float((predicted == labels).mean())


def pgd_accuracy(
    classifier: Any, subset: AttackSubset, epsilon: float, cfg: RobustEvaluationConfig
) -> float:
    """Accuracy under L-infinity PGD of radius ``epsilon`` (``cfg.steps`` steps, random start)."""
    from art.attacks.evasion import ProjectedGradientDescentPyTorch

    attack = ProjectedGradientDescentPyTorch(
        classifier,
        norm=np.inf,
        eps=epsilon,
        eps_step=cfg.step_size if cfg.step_size is not None else 2.5 * epsilon / cfg.steps,
        max_iter=cfg.steps,
        num_random_init=1 if cfg.random_start else 0,
        batch_size=cfg.batch_size,
        verbose=False,
    )
    adversarial = attack.generate(x=subset.pixels, y=subset.labels)
    return accuracy(classifier, adversarial, subset.labels, cfg.batch_size)


def autoattack_accuracy(
    classifier: Any, subset: AttackSubset, epsilon: float, cfg: RobustEvaluationConfig
) -> float:
    """Accuracy under ART's AutoAttack of radius ``epsilon`` (``cfg.autoattack``'s version; ``fast``:
    APGD-CE and APGD-DLR, one start of ``cfg.autoattack_steps`` steps each)."""
    from art.attacks.evasion import AutoAttack, AutoProjectedGradientDescent

    attacks = None  # ART's standard list
    if cfg.autoattack == "fast":
        attacks = [
            AutoProjectedGradientDescent(classifier, norm=np.inf, eps=epsilon, eps_step=2 * epsilon, max_iter=cfg.autoattack_steps,
                                         nb_random_init=1, batch_size=cfg.batch_size, loss_type=loss, verbose=False)
            for loss in ("cross_entropy", "difference_logits_ratio")
        ]  # fmt: skip
    attack = AutoAttack(classifier, norm=np.inf, eps=epsilon, eps_step=2 * epsilon, attacks=attacks, batch_size=cfg.batch_size)
    adversarial = attack.generate(x=subset.pixels, y=subset.labels)
    return accuracy(classifier, adversarial, subset.labels, cfg.batch_size)


def attacked_accuracies(
    net: nn.Module, subset: AttackSubset, num_classes: int, cfg: RobustEvaluationConfig, *, device: torch.device, seed: int
) -> dict[str, Any]:
    """Clean, PGD (every radius) and AutoAttack accuracy of ``net`` on ``subset``, in percent.

    The attacks' random starts are drawn under ``seed`` (torch's and NumPy's generators, restored
    afterwards), so a network is attacked the same way every time.
    """
    classifier = art_classifier(net, subset, num_classes, device)
    started = time.perf_counter()
    radii = cfg.radii(int(subset.pixels.shape[1]))
    numpy_state = np.random.get_state()
    try:
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(seed)
            np.random.seed(seed % 2**32)
            out: dict[str, Any] = {
                "clean": accuracy(classifier, subset.pixels, subset.labels, cfg.batch_size),
                "pgd": {_key(eps): pgd_accuracy(classifier, subset, eps, cfg) for eps in radii},
            }
            if cfg.autoattack is not None:
                eps = cfg.autoattack_epsilon if cfg.autoattack_epsilon is not None else max(radii)
                out["autoattack"] = {_key(eps): autoattack_accuracy(classifier, subset, eps, cfg)}
    finally:
        np.random.set_state(numpy_state)
    out["seconds"] = round(time.perf_counter() - started, 3)
    return out


def summarise(measured: list[dict[str, Any]], subset: AttackSubset, cfg: RobustEvaluationConfig) -> dict[str, Any]:
    """The ``robust`` section of results.json from the per-network measurements: mean, population
    std and every run's value, per attack and radius."""

    def stats(values: list[float]) -> dict[str, Any]:
        return {"mean": round(float(np.mean(values)), 4), "std": round(float(np.std(values)), 4),
                "accuracies": [round(v, 4) for v in values]}  # fmt: skip

    section: dict[str, Any] = {
        "library": f"{LIBRARY} {version(LIBRARY)}",
        "norm": "linf",
        "space": "pixels in [0, 1], normalisation inside the attacked model",
        "test_images": len(subset),
        "runs": len(measured),
        "clean": stats([m["clean"] for m in measured]),
        "pgd": {
            "steps": cfg.steps,
            "step_size": cfg.step_size if cfg.step_size is not None else "2.5 * epsilon / steps",
            "random_start": cfg.random_start,
            "accuracy": {eps: stats([m["pgd"][eps] for m in measured]) for eps in measured[0]["pgd"]},
        },
        "autoattack": None,
        "seconds": round(sum(m["seconds"] for m in measured), 3),
    }
    if "autoattack" in measured[0]:
        section["autoattack"] = {
            "version": cfg.autoattack,
            "accuracy": {eps: stats([m["autoattack"][eps] for m in measured]) for eps in measured[0]["autoattack"]},
        }
    return section


def _key(epsilon: float) -> str:
    """A radius as a results.json key: ``0.1``, ``0.0314`` (8/255)."""
    return f"{epsilon:.4g}"
