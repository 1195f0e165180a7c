"""Sliced Wasserstein distance: optimal transport along random one-dimensional projections."""

from __future__ import annotations

from typing import Annotated

import torch

from fedcond.discrepancies.base import check_embeddings, register_discrepancy
from fedcond.discrepancies.params import Bound, Positive


@register_discrepancy("sliced-wasserstein")
def sliced_wasserstein(
    real: torch.Tensor,
    synthetic: torch.Tensor,
    *,
    num_projections: Annotated[int, Positive] = 128,
    p: Annotated[float, Bound(1.0, inclusive=True)] = 2.0,
) -> torch.Tensor:
    """``SW_p^p``: the mean over random unit directions of the 1-D ``W_p^p`` of the projections.

    Directions are drawn afresh on every call from torch's default generator of the features'
    device, so seeding that generator fixes them. The 1-D distance is exact for empirical
    measures of any sizes ``n`` and ``m``: ``∫_0^1 |F_r^-1(t) - F_s^-1(t)|^p dt`` over the
    pieces on which both quantile functions are constant. No p-th root is taken, since its
    gradient is infinite at 0.
    """
    check_embeddings(real, synthetic)
    directions = torch.randn(real.shape[1], num_projections, device=synthetic.device, dtype=synthetic.dtype)
    directions = directions / directions.norm(dim=0, keepdim=True)
    real_sorted = (real @ directions).sort(dim=0).values
    synthetic_sorted = (synthetic @ directions).sort(dim=0).values
    widths, real_index, synthetic_index = _quantile_pieces(len(real), len(synthetic), real_sorted)
    gaps = (real_sorted[real_index] - synthetic_sorted[synthetic_index]).abs().pow(p)
    return (widths[:, None] * gaps).sum(0).mean()


def _quantile_pieces(n: int, m: int, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Widths of the intervals of [0, 1] on which both empirical quantile functions are constant,
    and the order statistic each function takes there.

    Breakpoints are ``i/n`` and ``j/m``; in units of ``1/(n m)`` they are the integers ``i m`` and
    ``j n``, so the index arithmetic is exact. Widths come in ``like``'s dtype and device.
    """
    real_breaks = torch.arange(1, n + 1, device=like.device) * m
    synthetic_breaks = torch.arange(1, m + 1, device=like.device) * n
    breaks = torch.cat([real_breaks, synthetic_breaks])
    breaks = breaks.unique()  # sorted; a level shared by both grids would give an empty piece
    starts = torch.cat([breaks.new_zeros(1), breaks[:-1]])
    # A piece's midpoint, doubled to stay an integer, names the order statistic on each side.
    doubled_mid = starts + breaks
    widths = (breaks - starts).to(like.dtype) / (n * m)
    return widths, doubled_mid // (2 * m), doubled_mid // (2 * n)
