"""Gradient matching (DC/DSA): compare the network's parameter gradients on real and synthetic data."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch

from fedcond.discrepancies.base import register_discrepancy

# DC's guard against a zero norm in the cosine's denominator.
_EPS = 1e-6


@register_discrepancy("gradient-matching", accepts="gradients")
def gradient_matching(
    real: Sequence[torch.Tensor],
    synthetic: Sequence[torch.Tensor],
    *,
    metric: Literal["layerwise-cosine", "mse", "cosine"] = "layerwise-cosine",
) -> torch.Tensor:
    """Distance between two lists of per-layer gradients of equal shapes.

    - ``layerwise-cosine`` (DC's ``ours``): each gradient with two or more dimensions is viewed
      as ``[out, -1]`` (one row per output unit) and contributes ``sum over rows of
      (1 - cos(real_row, synthetic_row))``, with ``1e-6`` added to the product of norms; 1-D
      gradients (biases, normalisation affines) contribute nothing.
    - ``mse``: the sum of squared differences over all gradients.
    - ``cosine``: ``1 - cos`` of all gradients flattened and concatenated, 1-D ones included.
    """
    _check_gradients(real, synthetic)
    if metric == "layerwise-cosine":
        terms = [_rowwise_cosine_distance(r, s) for r, s in zip(real, synthetic) if r.ndim >= 2]
        return torch.stack(terms).sum() if terms else synthetic[0].new_zeros(())
    if metric == "mse":
        return torch.stack([(s - r).square().sum() for r, s in zip(real, synthetic)]).sum()
    if metric == "cosine":
        real_flat = torch.cat([r.flatten() for r in real])
        synthetic_flat = torch.cat([s.flatten() for s in synthetic])
        return 1.0 - (real_flat * synthetic_flat).sum() / (real_flat.norm() * synthetic_flat.norm() + _EPS)
    raise ValueError(f"unknown gradient-matching metric {metric!r}; choose from: layerwise-cosine, mse, cosine")


def _rowwise_cosine_distance(real: torch.Tensor, synthetic: torch.Tensor) -> torch.Tensor:
    real, synthetic = real.reshape(real.shape[0], -1), synthetic.reshape(synthetic.shape[0], -1)
    dot = (real * synthetic).sum(-1)
    return (1.0 - dot / (real.norm(dim=-1) * synthetic.norm(dim=-1) + _EPS)).sum()


def _check_gradients(real: Sequence[torch.Tensor], synthetic: Sequence[torch.Tensor]) -> None:
    for which, grads in (("real", real), ("synthetic", synthetic)):
        if isinstance(grads, torch.Tensor) or not all(isinstance(g, torch.Tensor) for g in grads):
            raise ValueError(
                f"{which} features must be a list of gradient tensors, got {type(grads).__name__} "
                "(an embedding feature map needs a discrepancy that accepts embeddings)"
            )
    if len(real) != len(synthetic):
        raise ValueError(f"real and synthetic gradient lists differ in length: {len(real)} vs {len(synthetic)}")
    if not real:
        raise ValueError("gradient lists are empty: the feature map produced no gradients")
    for layer, (r, s) in enumerate(zip(real, synthetic)):
        if r.shape != s.shape:
            raise ValueError(f"gradient {layer} differs in shape: real {tuple(r.shape)} vs synthetic {tuple(s.shape)}")
