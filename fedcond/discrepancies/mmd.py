"""Maximum mean discrepancy with a linear kernel (DM), with Gaussian kernels (M3D), and with both."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Literal

import torch

from fedcond.discrepancies.base import check_embeddings, register_discrepancy
from fedcond.discrepancies.params import NonNegative, Positive


def _mean_row(real: torch.Tensor) -> torch.Tensor:
    return real.mean(0, keepdim=True)


@register_discrepancy("mmd-linear", real_summary=_mean_row)
def mmd_linear(real: torch.Tensor, synthetic: torch.Tensor) -> torch.Tensor:
    """``||mean(real) - mean(synthetic)||²``: MMD² with the linear kernel, DM's loss for one class."""
    check_embeddings(real, synthetic)
    return (real.mean(0) - synthetic.mean(0)).square().sum()


@register_discrepancy("mmd-gaussian")
def mmd_gaussian(
    real: torch.Tensor,
    synthetic: torch.Tensor,
    *,
    bandwidths: Sequence[Annotated[float, Positive]] = (0.5, 1.0, 2.0, 4.0, 8.0, 16.0),
    scale: Literal["median"] | Annotated[float, Positive] = "median",
    normalize: bool = True,
    linear_weight: Annotated[float, NonNegative] = 0.0,
) -> torch.Tensor:
    """MMD² with a sum of Gaussian kernels, the biased (V-statistic) estimate.

    ``k(x, y) = sum_b exp(-||x - y||² / (2 * b * s))`` for each multiplier ``b`` in
    ``bandwidths``; ``b * s`` is the kernel's sigma². With ``scale="median"``, ``s`` is the
    median squared distance over all distinct pairs of the pooled set ``real ∪ synthetic``
    (real-real and synthetic-synthetic pairs ``i < j``, every real-synthetic pair), computed
    without gradient and clamped to at least the dtype's machine epsilon; a number fixes ``s``.
    The estimate ``mean K_rr + mean K_ss - 2 mean K_rs`` is 0 for identical sets and >= 0 up
    to rounding. The wide default range keeps a pull on synthetic points far from the real
    ones, where the narrow kernels' gradients vanish.

    With ``normalize`` (the default) each bandwidth's term is multiplied by its (detached)
    sigma² ``b * s``. A Gaussian kernel's MMD² shrinks like ``||mean_r - mean_s||² / sigma²``
    as sigma grows, so unscaled its gradients depend on the embedding's scale (tiny for the
    wide kernels of a high-dimensional embedding); scaled, every term tends to the linear MMD
    for wide kernels and one pixel learning rate suits both ``mmd-linear`` and ``mmd-gaussian``.

    ``linear_weight`` adds that many times the linear MMD² ``||mean_r - mean_s||²`` (a linear
    kernel beside the Gaussian ones, so the sum is still an MMD²). Why: with one synthetic point
    per class the narrow kernels pull it to a mode of the real density, and which mode it reaches
    turns on rounding; the linear term has one optimum, the class mean.
    """
    check_embeddings(real, synthetic)
    # Distances do not change under a shift; centring shrinks the norms in
    # ||x||² + ||y||² - 2 x·y and with them its cancellation error.
    center = real.detach().mean(0)
    real, synthetic = real - center, synthetic - center
    # Three separate blocks rather than one pooled matrix: for identical sets they are then
    # bitwise equal and the estimate is exactly 0.
    d_rr = _squared_distances(real, real)
    d_ss = _squared_distances(synthetic, synthetic)
    d_rs = _squared_distances(real, synthetic)
    s = _median_pair_distance(d_rr, d_ss, d_rs) if scale == "median" else scale
    total = real.new_zeros(())
    for multiplier in bandwidths:
        denominator = 2.0 * multiplier * s
        k_rr = torch.exp(-d_rr / denominator).mean()
        k_ss = torch.exp(-d_ss / denominator).mean()
        k_rs = torch.exp(-d_rs / denominator).mean()
        # s is already detached (median) or a constant, so the weight carries no gradient.
        total = total + (k_rr + k_ss - 2.0 * k_rs) * (multiplier * s if normalize else 1.0)
    if linear_weight:
        total = total + linear_weight * (real.mean(0) - synthetic.mean(0)).square().sum()
    return total


@register_discrepancy("mmd-gaussian-linear")
def mmd_gaussian_linear(
    real: torch.Tensor,
    synthetic: torch.Tensor,
    *,
    bandwidths: Sequence[Annotated[float, Positive]] = (0.5, 1.0, 2.0, 4.0, 8.0, 16.0),
    scale: Literal["median"] | Annotated[float, Positive] = "median",
    normalize: bool = True,
    linear_weight: Annotated[float, NonNegative] = 1.0,
) -> torch.Tensor:
    """:func:`mmd_gaussian` plus ``linear_weight`` times :func:`mmd_linear`: Gaussian kernels and a
    linear one, whose sum is still an MMD².

    Its own name, rather than an option the user must remember to drop, so that switching a config
    to ``mmd-linear`` or ``mmd-gaussian`` needs no other change.
    """
    return mmd_gaussian(
        real, synthetic, bandwidths=bandwidths, scale=scale, normalize=normalize, linear_weight=linear_weight
    )


def _squared_distances(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``[n, m]`` squared Euclidean distances; no square root, so gradients stay finite at 0."""
    gram = x @ y.T
    return (x.square().sum(1)[:, None] + y.square().sum(1)[None, :] - 2.0 * gram).clamp_min(0.0)


@torch.no_grad()
def _median_pair_distance(d_rr: torch.Tensor, d_ss: torch.Tensor, d_rs: torch.Tensor) -> torch.Tensor:
    """Median squared distance over the distinct pairs of the pooled set, at least machine epsilon."""
    pairs = [d_rs.flatten()]
    for block in (d_rr, d_ss):
        rows, cols = torch.triu_indices(len(block), len(block), offset=1, device=block.device)
        pairs.append(block[rows, cols])
    return torch.cat(pairs).median().clamp_min(torch.finfo(d_rs.dtype).eps)
