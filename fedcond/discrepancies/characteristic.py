"""Characteristic-function discrepancy (NCFM): compare the sets' Fourier transforms at random frequencies."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Literal

import torch

from fedcond.discrepancies.base import check_embeddings, register_discrepancy
from fedcond.discrepancies.params import Bound, Positive

# Keeps the amplitude's square root differentiable where a characteristic function vanishes.
_AMPLITUDE_EPS = 1e-12


@register_discrepancy("characteristic-function")
def characteristic_function(
    real: torch.Tensor,
    synthetic: torch.Tensor,
    *,
    num_frequencies: Annotated[int, Positive] = 256,
    bandwidths: Sequence[Annotated[float, Positive]] = (0.5, 1.0, 2.0, 4.0, 8.0, 16.0),
    scale: Literal["median"] | Annotated[float, Positive] = "median",
    normalize: bool = True,
    amplitude_weight: Annotated[float, Bound(0.0, inclusive=True, high=1.0)] = 0.5,
) -> torch.Tensor:
    """The characteristic-function distance of NCFM (Wang et al., CVPR 2025), at sampled frequencies.

    With ``φ(t) = mean_x exp(i t·x)`` the empirical characteristic function of a set, each
    frequency ``t`` contributes ``α (|φ_r| - |φ_s|)² + (1 - α) · 2 |φ_r| |φ_s| (1 - cos(Δ phase))``
    (``α`` = ``amplitude_weight``): the amplitude term compares how spread each set is along
    ``t``, the phase term where it sits. The value is their mean over ``num_frequencies``
    frequencies drawn afresh on every call with torch's default generator of the features'
    device (seeding it fixes them), the ``k``-th from ``N(0, I / (b s))`` for ``b`` the
    ``k``-th of ``bandwidths`` in turn; ``s`` is the median squared distance over the pairs of
    ``real ∪ synthetic`` (``scale="median"``, detached) or a given number. With ``normalize``
    a frequency's term is multiplied by its ``b s``, as :func:`~fedcond.discrepancies.mmd.mmd_gaussian`
    scales its kernels: the low frequencies, whose pull reaches a synthetic set far from the
    real one, then weigh as much as the high ones, which resolve detail.

    Since the two terms add up to ``|φ_r(t) - φ_s(t)|²``, ``α = 0.5`` gives half of it, and by
    Bochner's theorem its mean over ``N(0, I / σ²)`` frequencies is half the MMD² of the Gaussian
    kernel ``exp(-||x - y||² / (2σ²))``: a random-feature estimate of ``mmd-gaussian``, with the
    amplitude/phase weight as the lever NCFM adds. NCFM also learns the frequency distribution
    adversarially; here it is fixed. One bandwidth alone (a single frequency scale) stalls a set
    that starts far from the real one: its phases wrap around and the pull averages out.
    """
    check_embeddings(real, synthetic)
    center = real.detach().mean(0)  # a shift changes only the phases, identically for both sets
    real, synthetic = real - center, synthetic - center
    s = _median_pair_distance(real, synthetic) if scale == "median" else torch.tensor(float(scale))
    multipliers = torch.tensor(bandwidths, dtype=synthetic.dtype, device=synthetic.device)
    variances = multipliers.repeat((num_frequencies + len(bandwidths) - 1) // len(bandwidths))[:num_frequencies]
    variances = variances * s.to(synthetic)  # s is detached (median) or a constant: no gradient
    frequencies = torch.randn(real.shape[1], num_frequencies, device=synthetic.device, dtype=synthetic.dtype)
    frequencies = frequencies / variances.sqrt()
    real_cos, real_sin = _empirical_cf(real @ frequencies)
    syn_cos, syn_sin = _empirical_cf(synthetic @ frequencies)
    real_amplitude = (real_cos.square() + real_sin.square() + _AMPLITUDE_EPS).sqrt()
    syn_amplitude = (syn_cos.square() + syn_sin.square() + _AMPLITUDE_EPS).sqrt()
    amplitude = (real_amplitude - syn_amplitude).square()
    # 2|φ_r||φ_s|(1 - cos Δ) = 2(|φ_r||φ_s| - Re(φ_r conj(φ_s))): no angle is computed.
    phase = 2.0 * (real_amplitude * syn_amplitude - (real_cos * syn_cos + real_sin * syn_sin))
    per_frequency = amplitude_weight * amplitude + (1.0 - amplitude_weight) * phase
    return (per_frequency * variances if normalize else per_frequency).mean()


def _empirical_cf(projections: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Real and imaginary parts of ``mean_x exp(i t·x)``, one value per frequency (column)."""
    return projections.cos().mean(0), projections.sin().mean(0)


@torch.no_grad()
def _median_pair_distance(real: torch.Tensor, synthetic: torch.Tensor) -> torch.Tensor:
    """Median squared distance over the distinct pairs of ``real ∪ synthetic``, at least machine epsilon."""
    pooled = torch.cat([real, synthetic])
    distances = torch.cdist(pooled, pooled).square()
    rows, cols = torch.triu_indices(len(pooled), len(pooled), offset=1, device=pooled.device)
    return distances[rows, cols].median().clamp_min(torch.finfo(pooled.dtype).eps)
