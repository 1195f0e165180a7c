"""Mean and covariance matching: the first two moments of the features."""

from __future__ import annotations

from typing import Annotated

import torch

from fedcond.discrepancies.base import check_embeddings, register_discrepancy
from fedcond.discrepancies.params import NonNegative


@register_discrepancy("moments")
def moments(
    real: torch.Tensor,
    synthetic: torch.Tensor,
    *,
    cov_weight: Annotated[float, NonNegative] = 1.0,
) -> torch.Tensor:
    """``||mu_r - mu_s||² + cov_weight * ||Sigma_r - Sigma_s||_F²``.

    Covariances are normalised by ``1/n`` (the maximum-likelihood estimate), so a synthetic set
    of one sample has covariance 0 rather than an undefined one. Memory grows as ``d²``.
    """
    check_embeddings(real, synthetic)
    mean_real, mean_synthetic = real.mean(0), synthetic.mean(0)
    mean_term = (mean_real - mean_synthetic).square().sum()
    cov_term = (_covariance(real, mean_real) - _covariance(synthetic, mean_synthetic)).square().sum()
    return mean_term + cov_weight * cov_term


def _covariance(x: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
    centered = x - mean
    return centered.T @ centered / len(x)
