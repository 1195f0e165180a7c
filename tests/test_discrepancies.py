"""Discrepancies: their defining properties, their gradients, and the registry around them."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Annotated

import pytest
import torch
from torch import nn

from fedcond.discrepancies import (
    DISCREPANCIES,
    Positive,
    base,
    build_discrepancy,
    characteristic_function,
    discrepancy_accepts,
    gradient_matching,
    mmd_gaussian,
    mmd_linear,
    moments,
    register_discrepancy,
    sliced_wasserstein,
)
from fedcond.errors import ConfigError

EMBEDDING = [
    "mmd-linear", "mmd-gaussian", "mmd-gaussian-linear", "sliced-wasserstein", "moments", "characteristic-function",
]  # fmt: skip


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def centred(x: torch.Tensor) -> torch.Tensor:
    """``x`` shifted to sample mean exactly 0, so mean-only discrepancies see no difference."""
    return x - x.mean(0)


def standardised(x: torch.Tensor) -> torch.Tensor:
    """``x`` with per-feature sample mean 0 and variance 1 (1/n normalisation)."""
    x = centred(x)
    return x / x.square().mean(0).sqrt()


# ---------------------------------------------------------------------------- embeddings
@pytest.mark.parametrize("name", EMBEDDING)
def test_identical_sets_give_zero_and_a_finite_gradient(name: str) -> None:
    real = torch.randn(64, 8)
    synthetic = real.clone().requires_grad_()
    value = build_discrepancy(name)(real, synthetic)
    (grad,) = torch.autograd.grad(value, synthetic)
    assert abs(value.item()) <= 1e-6
    assert torch.isfinite(grad).all()


@pytest.mark.parametrize("name", EMBEDDING)
def test_duplicated_rows_keep_the_gradient_finite(name: str) -> None:
    real = torch.randn(32, 8)
    synthetic = real[:4].repeat(2, 1).clone().requires_grad_()  # every row twice, all from real
    value = build_discrepancy(name)(real, synthetic)
    (grad,) = torch.autograd.grad(value, synthetic)
    assert torch.isfinite(value) and torch.isfinite(grad).all()


@pytest.mark.parametrize("name", EMBEDDING)
def test_different_sets_give_positive_value_and_nonzero_gradient(name: str) -> None:
    real = torch.randn(64, 8)
    synthetic = (torch.randn(10, 8) * 2 + 1).requires_grad_()
    value = build_discrepancy(name)(real, synthetic)
    (grad,) = torch.autograd.grad(value, synthetic)
    assert value.item() > 0.1
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0


@pytest.mark.parametrize("name", EMBEDDING)
def test_symmetric_in_its_arguments(name: str) -> None:
    a, b = torch.randn(40, 6), torch.randn(15, 6) * 1.5 + 0.5
    torch.manual_seed(1)  # sliced-wasserstein: the same projections both ways
    forward = build_discrepancy(name)(a, b)
    torch.manual_seed(1)
    backward = build_discrepancy(name)(b, a)
    assert forward.item() == pytest.approx(backward.item(), rel=1e-5)


@pytest.mark.parametrize("name", EMBEDDING)
def test_gradient_descent_moves_synthetic_towards_real(name: str) -> None:
    real = torch.randn(200, 4) * 0.5 + 2.0
    synthetic = torch.randn(20, 4).requires_grad_()
    discrepancy = build_discrepancy(name)
    optimizer = torch.optim.Adam([synthetic], lr=0.1)
    torch.manual_seed(1)
    before = discrepancy(real, synthetic).item()
    gap_before = (synthetic.mean(0) - real.mean(0)).norm().item()
    for _ in range(50):
        optimizer.zero_grad()
        discrepancy(real, synthetic).backward()
        optimizer.step()
    torch.manual_seed(1)
    after = discrepancy(real, synthetic).item()
    assert after < 0.2 * before
    assert (synthetic.mean(0) - real.mean(0)).norm().item() < 0.5 * gap_before


def test_mmd_linear_is_squared_distance_of_means() -> None:
    real, synthetic = torch.randn(30, 5), torch.randn(7, 5)
    expected = ((real.mean(0) - synthetic.mean(0)) ** 2).sum()
    assert mmd_linear(real, synthetic).item() == pytest.approx(expected.item())


def test_mmd_gaussian_detects_a_variance_change_that_linear_misses() -> None:
    real = centred(torch.randn(300, 4))
    same = centred(torch.randn(300, 4))
    wider = centred(torch.randn(300, 4) * 2)
    assert mmd_linear(real, wider).item() < 1e-10
    assert mmd_gaussian(real, wider).item() > 10 * mmd_gaussian(real, same).item()


def test_mmd_gaussian_fixed_scale_matches_a_hand_computed_kernel() -> None:
    real, synthetic = torch.randn(6, 3, dtype=torch.float64), torch.randn(4, 3, dtype=torch.float64)

    def kernel_mean(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        squared = torch.cdist(x, y) ** 2
        return sum(torch.exp(-squared / (2 * b * 0.7)) for b in (1.0, 3.0)).mean()

    expected = kernel_mean(real, real) + kernel_mean(synthetic, synthetic) - 2 * kernel_mean(real, synthetic)
    value = mmd_gaussian(real, synthetic, bandwidths=(1.0, 3.0), scale=0.7, normalize=False)
    assert value.item() == pytest.approx(expected.item(), rel=1e-9)


def test_normalized_mmd_gaussian_tends_to_linear_mmd_for_wide_kernels() -> None:
    real, synthetic = torch.randn(40, 6, dtype=torch.float64), torch.randn(9, 6, dtype=torch.float64) + 0.3
    wide = mmd_gaussian(real, synthetic, bandwidths=(1e6,), scale=1.0)
    assert wide.item() == pytest.approx(mmd_linear(real, synthetic).item(), rel=1e-4)
    raw = mmd_gaussian(real, synthetic, bandwidths=(2.0, 5.0), scale=0.7, normalize=False)
    normalized = mmd_gaussian(real, synthetic, bandwidths=(2.0, 5.0), scale=0.7)
    assert 2.0 * 0.7 * raw.item() < normalized.item() < 5.0 * 0.7 * raw.item()


def test_mmd_gaussian_linear_weight_adds_that_many_linear_mmds() -> None:
    real, synthetic = torch.randn(20, 4, dtype=torch.float64), torch.randn(6, 4, dtype=torch.float64) + 0.5
    plain = mmd_gaussian(real, synthetic)
    mixed = mmd_gaussian(real, synthetic, linear_weight=2.5)
    assert mixed.item() == pytest.approx(plain.item() + 2.5 * mmd_linear(real, synthetic).item(), rel=1e-9)
    registered = build_discrepancy("mmd-gaussian-linear")  # linear_weight 1 by default
    assert registered(real, synthetic).item() == pytest.approx(plain.item() + mmd_linear(real, synthetic).item())
    assert mmd_gaussian(real, real.clone(), linear_weight=2.5).item() == 0.0


def test_mmd_gaussian_linear_weight_pulls_a_lone_point_to_the_mean_not_a_mode() -> None:
    """One synthetic point against two far clusters (90 % / 10 %): the narrow kernels hold it in the
    big cluster's mode, the linear term moves it towards the class mean between them."""
    real = torch.cat([torch.randn(90, 2) * 0.1, torch.randn(10, 2) * 0.1 + torch.tensor([10.0, 0.0])])
    mean_x = real.mean(0)[0].item()

    def descend(linear_weight: float) -> float:
        point = torch.zeros(1, 2, requires_grad=True)
        optimiser = torch.optim.SGD([point], lr=0.05)
        for _ in range(400):
            optimiser.zero_grad()
            mmd_gaussian(real, point, bandwidths=(0.01,), scale=1.0, linear_weight=linear_weight).backward()
            optimiser.step()
        return point[0, 0].item()

    assert abs(descend(0.0)) < 0.2  # stays in the mode
    assert abs(descend(1.0) - mean_x) < 0.2  # reaches the mean


def test_mmd_gaussian_median_scale_is_the_median_pair_distance() -> None:
    real, synthetic = torch.randn(5, 3, dtype=torch.float64), torch.randn(3, 3, dtype=torch.float64)
    pooled = torch.cat([real, synthetic])
    rows, cols = torch.triu_indices(8, 8, offset=1)
    median = (torch.cdist(pooled, pooled) ** 2)[rows, cols].median().item()
    assert mmd_gaussian(real, synthetic).item() == pytest.approx(
        mmd_gaussian(real, synthetic, scale=median).item(), rel=1e-9
    )


def test_characteristic_function_at_half_weight_estimates_half_the_gaussian_mmd() -> None:
    """Bochner: over frequencies N(0, I/s), E|φ_r - φ_s|² is the MMD² of exp(-||x-y||²/(2s)); α = 0.5 halves it."""
    real, synthetic = torch.randn(30, 3, dtype=torch.float64), torch.randn(8, 3, dtype=torch.float64) * 1.3 + 0.4
    estimate = characteristic_function(
        real, synthetic, num_frequencies=200_000, bandwidths=(1.0,), scale=2.0, normalize=False
    )
    # mmd_gaussian's kernel is exp(-d / (2 b s)): b = 1, s = 2 is the kernel of frequencies N(0, I / 2).
    reference = mmd_gaussian(real, synthetic, bandwidths=(1.0,), scale=2.0, normalize=False)
    assert estimate.item() == pytest.approx(0.5 * reference.item(), rel=0.03)


def test_characteristic_function_amplitude_term_sees_spread_and_phase_term_sees_position() -> None:
    real = centred(torch.randn(400, 2, dtype=torch.float64))
    wider = centred(torch.randn(400, 2, dtype=torch.float64) * 2.0)
    shifted = real + 1.0

    def value(other: torch.Tensor, weight: float) -> float:
        torch.manual_seed(3)
        return characteristic_function(real, other, bandwidths=(1.0,), scale=1.0, amplitude_weight=weight).item()

    # A shift multiplies φ by a phase: amplitudes stay, so the amplitude-only distance barely moves.
    assert value(shifted, 1.0) < 0.05 * value(shifted, 0.0)
    assert value(wider, 1.0) > 10 * value(shifted, 1.0)


def test_moments_detects_a_covariance_change_that_linear_misses() -> None:
    independent = standardised(torch.randn(500, 2))
    latent = torch.randn(500, 2)
    correlated = standardised(torch.stack([latent[:, 0], 0.9 * latent[:, 0] + 0.3 * latent[:, 1]], dim=1))
    assert mmd_linear(independent, correlated).item() < 1e-10
    assert moments(independent, correlated).item() > 1.0
    assert moments(independent, correlated, cov_weight=0.0).item() < 1e-10


def test_moments_accepts_a_single_synthetic_sample() -> None:
    real = torch.randn(20, 3)
    synthetic = torch.zeros(1, 3, requires_grad=True)
    value = moments(real, synthetic)
    (grad,) = torch.autograd.grad(value, synthetic)
    assert torch.isfinite(value) and torch.isfinite(grad).all()


def test_sliced_wasserstein_detects_a_shape_change_with_n_different_from_m() -> None:
    # Two clusters at ±(1, 1, 1) against one Gaussian; both standardised per feature.
    signs = torch.randint(0, 2, (300, 1)) * 2.0 - 1.0
    bimodal = standardised(signs + 0.1 * torch.randn(300, 3))
    unimodal = standardised(torch.randn(120, 3))
    same_shape = standardised(torch.randn(120, 3))
    reference = standardised(torch.randn(300, 3))
    assert mmd_linear(bimodal, unimodal).item() < 1e-10
    assert sliced_wasserstein(bimodal, unimodal).item() > 5 * sliced_wasserstein(reference, same_shape).item()


@pytest.mark.parametrize(("n", "m"), [(5, 3), (4, 4), (1, 6), (13, 17)])
def test_sliced_wasserstein_in_one_dimension_is_the_exact_wasserstein_distance(n: int, m: int) -> None:
    real, synthetic = torch.randn(n, 1, dtype=torch.float64), torch.randn(m, 1, dtype=torch.float64) * 2
    # W_p^p of empirical measures, integrated numerically on a fine grid of quantile levels.
    levels = (torch.arange(60_000, dtype=torch.float64) + 0.5) / 60_000
    real_q = real[:, 0].sort().values[(levels * n).long()]
    synthetic_q = synthetic[:, 0].sort().values[(levels * m).long()]
    for p in (1.0, 2.0):
        expected = (real_q - synthetic_q).abs().pow(p).mean().item()
        assert sliced_wasserstein(real, synthetic, num_projections=3, p=p).item() == pytest.approx(expected, rel=1e-3)


def test_sliced_wasserstein_projections_follow_the_global_seed() -> None:
    real, synthetic = torch.randn(20, 5), torch.randn(9, 5)
    torch.manual_seed(3)
    first = sliced_wasserstein(real, synthetic, num_projections=4)
    torch.manual_seed(3)
    second = sliced_wasserstein(real, synthetic, num_projections=4)
    assert first.item() == second.item()


@pytest.mark.parametrize("name", EMBEDDING)
def test_embedding_discrepancies_reject_bad_inputs(name: str) -> None:
    discrepancy = build_discrepancy(name)
    with pytest.raises(ValueError, match="width"):
        discrepancy(torch.randn(4, 3), torch.randn(4, 5))
    with pytest.raises(ValueError, match=r"\[n, d\]"):
        discrepancy(torch.randn(4, 3, 2), torch.randn(4, 3, 2))
    with pytest.raises(ValueError, match="gradients"):
        discrepancy([torch.randn(3, 3)], [torch.randn(3, 3)])


# ---------------------------------------------------------------------------- gradients
def gradient_list(dtype: torch.dtype = torch.float32) -> list[torch.Tensor]:
    """Gradients shaped like a small conv net's: conv weight, conv bias, linear weight, bias."""
    shapes = [(4, 3, 3, 3), (4,), (10, 16), (10,)]
    return [torch.randn(shape, dtype=dtype) for shape in shapes]


@pytest.mark.parametrize("metric", ["layerwise-cosine", "mse", "cosine"])
def test_gradient_matching_is_zero_for_identical_gradients(metric: str) -> None:
    # Rows of norm ~10: DC's 1e-6 in the cosine's denominator leaves 1e-6 / ||row||² per row.
    real = [10 * g for g in gradient_list(torch.float64)]
    synthetic = [g.clone().requires_grad_() for g in real]
    value = gradient_matching(real, synthetic, metric=metric)
    grads = torch.autograd.grad(value, synthetic, allow_unused=True)
    assert abs(value.item()) <= 1e-6
    assert all(g is None or torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize("metric", ["layerwise-cosine", "mse", "cosine"])
def test_gradient_matching_is_positive_and_differentiable_for_different_gradients(metric: str) -> None:
    real = gradient_list()
    synthetic = [g.requires_grad_() for g in gradient_list()]
    value = gradient_matching(real, synthetic, metric=metric)
    value.backward()
    assert value.item() > 0.1
    assert torch.isfinite(synthetic[0].grad).all() and synthetic[0].grad.abs().sum() > 0


def test_layerwise_cosine_is_dc_distance_per_output_row() -> None:
    real, synthetic = gradient_list(torch.float64), gradient_list(torch.float64)
    expected = 0.0
    for r, s in zip(real, synthetic):
        if r.ndim == 1:
            continue
        r, s = r.reshape(r.shape[0], -1), s.reshape(s.shape[0], -1)
        expected += (1 - (r * s).sum(-1) / (r.norm(dim=-1) * s.norm(dim=-1) + 1e-6)).sum().item()
    assert gradient_matching(real, synthetic).item() == pytest.approx(expected, rel=1e-12)


def test_layerwise_cosine_is_invariant_to_positive_scaling_and_ignores_1d_tensors() -> None:
    real, synthetic = gradient_list(), gradient_list()
    value = gradient_matching(real, synthetic).item()
    scaled = [3.0 * g for g in synthetic]
    assert gradient_matching(real, scaled).item() == pytest.approx(value, rel=1e-5)
    biases_changed = [g if g.ndim > 1 else torch.randn_like(g) for g in synthetic]
    assert gradient_matching(real, biases_changed).item() == value


def test_gradient_matching_metrics_follow_their_definitions() -> None:
    real, synthetic = gradient_list(torch.float64), gradient_list(torch.float64)
    real_flat = torch.cat([g.flatten() for g in real])
    synthetic_flat = torch.cat([g.flatten() for g in synthetic])
    mse = ((real_flat - synthetic_flat) ** 2).sum().item()
    cosine = 1 - (real_flat @ synthetic_flat / (real_flat.norm() * synthetic_flat.norm() + 1e-6)).item()
    assert gradient_matching(real, synthetic, metric="mse").item() == pytest.approx(mse, rel=1e-12)
    assert gradient_matching(real, synthetic, metric="cosine").item() == pytest.approx(cosine, rel=1e-12)


def test_gradient_matching_stays_finite_on_zero_gradient_rows() -> None:
    real = [torch.zeros(4, 3), torch.randn(2, 3)]  # a dead unit's rows are all zero
    synthetic = [torch.zeros(4, 3, requires_grad=True), torch.randn(2, 3, requires_grad=True)]
    gradient_matching(real, synthetic).backward()
    assert all(torch.isfinite(g.grad).all() for g in synthetic)


def test_gradient_matching_rejects_mismatched_lists() -> None:
    real = gradient_list()
    with pytest.raises(ValueError, match="length"):
        gradient_matching(real, real[:-1])
    with pytest.raises(ValueError, match="shape"):
        gradient_matching(real, [real[0], real[1], torch.randn(10, 15), real[3]])
    with pytest.raises(ValueError, match="embeddings"):
        gradient_matching(torch.randn(4, 3), torch.randn(4, 3))


def test_gradient_matching_through_a_network_pulls_synthetic_images_toward_real_gradients() -> None:
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 3))
    params = list(net.parameters())
    real_images, labels = torch.randn(32, 1, 8, 8) + 1.0, torch.zeros(32, dtype=torch.long)
    real = [g.detach() for g in torch.autograd.grad(nn.functional.cross_entropy(net(real_images), labels), params)]
    synthetic_images = torch.randn(2, 1, 8, 8).requires_grad_()
    optimizer = torch.optim.Adam([synthetic_images], lr=0.05)

    def distance() -> torch.Tensor:
        loss = nn.functional.cross_entropy(net(synthetic_images), labels[:2])
        return gradient_matching(real, list(torch.autograd.grad(loss, params, create_graph=True)))

    before = distance().item()
    for _ in range(30):
        optimizer.zero_grad()
        distance().backward()
        optimizer.step()
    assert distance().item() < 0.7 * before


# ---------------------------------------------------------------------------- registry
def test_builtins_are_registered_with_their_feature_kind() -> None:
    assert set(EMBEDDING + ["gradient-matching"]) <= set(DISCREPANCIES.names())
    for name in EMBEDDING:
        assert discrepancy_accepts(name) == "embedding"
    assert discrepancy_accepts("gradient-matching") == "gradients"


def test_unknown_names_raise_config_error_listing_the_choices() -> None:
    with pytest.raises(ConfigError, match="mmd-gaussian"):
        build_discrepancy("no-such-distance")
    with pytest.raises(ConfigError, match="moments"):
        discrepancy_accepts("no-such-distance")


@pytest.mark.parametrize(
    ("name", "params", "message"),
    [
        ("mmd-gaussian", {"bandwidth": [1.0]}, "'bandwidth'.*valid: bandwidths, linear_weight, normalize, scale"),
        ("mmd-linear", {"scale": 1.0}, "'scale'.*valid: none"),
        ("mmd-gaussian", {"bandwidths": [1.0, -2.0]}, "'bandwidths' must be .*> 0"),
        ("mmd-gaussian", {"bandwidths": []}, "'bandwidths' must be a non-empty list"),
        ("mmd-gaussian", {"bandwidths": 2.0}, "'bandwidths' must be a non-empty list"),
        ("mmd-gaussian", {"scale": "mean"}, "'scale' must be 'median' or a number > 0"),
        ("mmd-gaussian", {"scale": 0}, "'scale' must be"),
        ("mmd-gaussian", {"linear_weight": -0.5}, "'linear_weight' must be a number >= 0"),
        ("characteristic-function", {"amplitude_weight": 1.5}, "'amplitude_weight' must be a number >= 0 and <= 1"),
        ("characteristic-function", {"num_frequencies": 0}, "'num_frequencies' must be an integer > 0"),
        ("sliced-wasserstein", {"num_projections": 2.5}, "'num_projections' must be an integer > 0"),
        ("sliced-wasserstein", {"num_projections": True}, "'num_projections' must be an integer"),
        ("sliced-wasserstein", {"p": 0.5}, "'p' must be a number >= 1"),
        ("moments", {"cov_weight": -1.0}, "'cov_weight' must be a number >= 0"),
        ("moments", {"cov_weight": math.nan}, "'cov_weight'"),
        ("gradient-matching", {"metric": "l2"}, "'metric' must be one of 'layerwise-cosine', 'mse', 'cosine'"),
    ],
)
def test_build_rejects_unknown_ill_typed_and_out_of_range_params(name: str, params: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        build_discrepancy(name, **params)


def test_build_binds_and_normalises_yaml_values() -> None:
    discrepancy = build_discrepancy("mmd-gaussian", bandwidths=[1, 2], scale="1e-3")  # YAML 1.1 reads 1e-3 as text
    assert discrepancy.keywords == {"bandwidths": (1.0, 2.0), "scale": 0.001}
    real, synthetic = torch.randn(5, 2), torch.randn(4, 2)
    assert discrepancy(real, synthetic).item() == mmd_gaussian(real, synthetic, bandwidths=(1, 2), scale=1e-3).item()
    assert build_discrepancy("mmd-gaussian", bandwidths="0.5, 2").keywords == {"bandwidths": (0.5, 2.0)}


@pytest.fixture
def custom_name() -> Iterator[str]:
    """A name no other test uses, unregistered afterwards so the registry stays as shipped."""
    name = "test-only-scaled-mean-gap"
    yield name
    DISCREPANCIES._items.pop(name, None)
    base._ACCEPTS.pop(name, None)


def test_register_discrepancy_makes_a_function_available_by_name(custom_name: str) -> None:
    @register_discrepancy(custom_name)
    def scaled_mean_gap(
        real: torch.Tensor, synthetic: torch.Tensor, *, weight: Annotated[float, Positive] = 1.0
    ) -> torch.Tensor:
        return weight * (real.mean(0) - synthetic.mean(0)).abs().sum()

    assert custom_name in DISCREPANCIES and discrepancy_accepts(custom_name) == "embedding"
    value = build_discrepancy(custom_name, weight=2)(torch.ones(3, 2), torch.zeros(1, 2))
    assert value.item() == 4.0
    with pytest.raises(ConfigError, match="'weight' must be a number > 0"):
        build_discrepancy(custom_name, weight=-1)
    with pytest.raises(ValueError, match="already registered"):
        register_discrepancy(custom_name)(scaled_mean_gap)


def test_register_discrepancy_rejects_bad_declarations(custom_name: str) -> None:
    with pytest.raises(ValueError, match="accepts"):
        register_discrepancy(custom_name, accepts="images")
    with pytest.raises(ValueError, match="need defaults: weight"):

        @register_discrepancy(custom_name)
        def needs_weight(real: torch.Tensor, synthetic: torch.Tensor, *, weight: float) -> torch.Tensor:
            return weight * (real - synthetic).sum()

    assert custom_name not in DISCREPANCIES
