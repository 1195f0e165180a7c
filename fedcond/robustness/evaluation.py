"""The protocol's evaluation with every trained network attacked: ``fedcond evaluate --robust``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from fedcond.evaluation import EvaluationResult, evaluate_synthetic, run_seed
from fedcond.robustness.attacks import AttackSubset, attacked_accuracies, summarise
from fedcond.seeds import derive_seed

if TYPE_CHECKING:
    from fedcond.config import Config
    from fedcond.data.base import ImageDataset
    from fedcond.labels import Teacher
    from fedcond.synthetic import SyntheticSet


def evaluate_robust(
    synthetic: SyntheticSet,
    test: ImageDataset,
    config: Config,
    *,
    device: torch.device,
    model: str | None = None,
    teacher: Teacher | None = None,
) -> tuple[EvaluationResult, dict[str, Any]]:
    """:func:`~fedcond.evaluation.evaluate_synthetic`, each run's network then attacked on a fixed
    subset of ``test`` as ``config.robust_evaluation`` says.

    Parameters
    ----------
    synthetic, test, config, model, teacher
        As for :func:`~fedcond.evaluation.evaluate_synthetic`.
    device
        Where the networks train and are attacked.

    Returns
    -------
    tuple
        The evaluation (clean accuracy on the whole test split) and the ``robust`` section of
        results.json: clean, PGD and AutoAttack accuracy on the subset, per network and summarised.
    """
    cfg = config.robust_evaluation
    subset = AttackSubset.draw(test, cfg.test_images, config.seed)

    def measure(net: nn.Module, run: int) -> dict[str, Any]:
        seed = derive_seed(run_seed(config.seed, run), "attack")
        return attacked_accuracies(net, subset, test.num_classes, cfg, device=device, seed=seed)

    evaluation = evaluate_synthetic(synthetic, test, config, model=model, device=device, teacher=teacher, measure=measure)
    return evaluation, summarise(evaluation.measured, subset, cfg)
