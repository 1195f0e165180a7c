"""Robustness of networks trained on condensed sets: the ``robust_evaluation`` config section and
attacked accuracy (PGD, AutoAttack) measured with the Adversarial Robustness Toolbox.

The evaluation networks of the protocol are attacked one by one (``fedcond evaluate --robust``,
:func:`evaluate_robust`): L-infinity in pixel space, normalisation inside the attacked model, on a
fixed subset of the test split.
"""

from fedcond.robustness.config import RobustEvaluationConfig
from fedcond.robustness.evaluation import evaluate_robust

__all__ = ["RobustEvaluationConfig", "evaluate_robust"]
