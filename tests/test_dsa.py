"""Tests for differentiable siamese augmentation."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from fedcond.augment import DSA_OPERATIONS, DSAParams, apply_dsa, dsa, sample_dsa_params, validate_strategy
from fedcond.errors import ConfigError

FULL = "_".join(DSA_OPERATIONS)
SIZE = (12, 12)


def _images(n: int, channels: int = 3, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, channels, *SIZE, generator=torch.Generator().manual_seed(seed))


def _params(strategy: str, num_groups: int = 1, seed: int = 0, **replace: object) -> DSAParams:
    """Drawn parameters, with some fields overridden to make a transformation known."""
    params = sample_dsa_params(
        strategy, num_groups, generator=torch.Generator().manual_seed(seed), image_size=SIZE, mode="all"
    )
    return dataclasses.replace(params, **replace)


def _zeros(n: int) -> torch.Tensor:
    return torch.zeros(n, dtype=torch.long)


# ---------------------------------------------------------------------------- strategy


def test_validate_strategy_keeps_order() -> None:
    assert validate_strategy(FULL) == DSA_OPERATIONS
    assert validate_strategy("scale_color") == ("scale", "color")
    assert validate_strategy("") == ()
    assert validate_strategy("none") == ()


@pytest.mark.parametrize("strategy", ["color_blur", "crop__flip", "Color", "flip_flip"])
def test_validate_strategy_rejects(strategy: str) -> None:
    with pytest.raises(ConfigError):
        validate_strategy(strategy)


def test_unknown_operation_message_names_it_and_the_choices() -> None:
    with pytest.raises(ConfigError, match="blur") as info:
        validate_strategy("color_blur")
    assert all(op in str(info.value) for op in DSA_OPERATIONS)


def test_unknown_mode_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="mode"):
        sample_dsa_params("color", 2, image_size=SIZE, mode="some")


def test_empty_strategy_is_identity() -> None:
    x = _images(4)
    assert torch.equal(dsa(x, "none"), x)


# ---------------------------------------------------------------------------- randomness


@pytest.mark.parametrize("mode", ["single", "all"])
def test_same_seed_same_output(mode: str) -> None:
    x = _images(16)
    a = dsa(x, FULL, generator=torch.Generator().manual_seed(7), mode=mode)
    b = dsa(x, FULL, generator=torch.Generator().manual_seed(7), mode=mode)
    c = dsa(x, FULL, generator=torch.Generator().manual_seed(8), mode=mode)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_operation_draws_do_not_depend_on_strategy_or_mode() -> None:
    def draw(strategy: str, mode: str) -> DSAParams:
        generator = torch.Generator().manual_seed(0)
        return sample_dsa_params(strategy, 4, generator=generator, image_size=SIZE, mode=mode)

    single, alone = draw(FULL, "single"), draw("crop", "all")
    assert torch.equal(single.shift, alone.shift) and torch.equal(single.angle, alone.angle)


def test_single_mode_applies_one_operation_per_group() -> None:
    params = sample_dsa_params(FULL, 500, generator=torch.Generator().manual_seed(0), image_size=SIZE)
    assert torch.equal(params.active.sum(dim=1), torch.ones(500, dtype=torch.long))
    assert bool(params.active.any(dim=0).all())  # every operation gets drawn by someone


def test_all_mode_applies_every_operation() -> None:
    params = sample_dsa_params(FULL, 5, image_size=SIZE, mode="all")
    assert bool(params.active.all())


def test_parameters_stay_in_range() -> None:
    p = sample_dsa_params(FULL, 2000, generator=torch.Generator().manual_seed(0), image_size=(28, 28))
    assert -0.5 <= float(p.brightness.min()) and float(p.brightness.max()) < 0.5
    assert 0.0 <= float(p.saturation.min()) and float(p.saturation.max()) < 2.0
    assert 0.5 <= float(p.contrast.min()) and float(p.contrast.max()) < 1.5
    assert int(p.shift.abs().max()) == 4  # 12.5% of 28 pixels, both signs reached
    assert 1 / 1.2 <= float(p.scale.min()) and float(p.scale.max()) <= 1.2
    assert float(p.angle.abs().max()) <= math.radians(15)
    assert 0.4 < float(p.flip.float().mean()) < 0.6


# ---------------------------------------------------------------------------- siamese


@pytest.mark.parametrize("mode", ["single", "all"])
def test_copies_in_one_group_get_identical_results(mode: str) -> None:
    x = _images(3)
    batch = torch.cat([x, x])  # sample i and i + 3 are copies
    groups = torch.tensor([0, 1, 2, 0, 1, 2])
    out = dsa(batch, FULL, groups=groups, generator=torch.Generator().manual_seed(1), mode=mode)
    assert torch.equal(out[:3], out[3:])


@pytest.mark.parametrize("op", ["crop", "cutout", "flip", "scale", "rotate"])
def test_one_group_shares_the_geometric_transform(op: str) -> None:
    # The geometric operations are linear in the pixels, so a shared transform T satisfies
    # T(a) + T(b) = T(a + b) for two unrelated images a and b of the same group.
    a, b = _images(1, seed=1), _images(1, seed=2)
    for seed in range(5):
        params = _params(op, seed=seed)
        out = apply_dsa(torch.cat([a, b, a + b]), params, _zeros(3))
        assert torch.allclose(out[0] + out[1], out[2], atol=1e-5)


def test_different_groups_get_different_draws() -> None:
    x = _images(1).expand(8, -1, -1, -1)
    out = dsa(x, "color", groups=torch.arange(8), generator=torch.Generator().manual_seed(0))
    assert len({tuple(o.flatten().tolist()) for o in out}) == 8


def test_groups_index_the_drawn_parameters() -> None:
    # Real and synthetic batches augmented separately with one draw match group by group.
    params = sample_dsa_params(FULL, 4, generator=torch.Generator().manual_seed(3), image_size=SIZE)
    x = _images(4)
    groups = torch.tensor([2, 0, 3, 1])
    together = apply_dsa(x, params, groups)
    for i in range(4):
        assert torch.allclose(apply_dsa(x[i : i + 1], params, groups[i : i + 1]), together[i : i + 1])


# ---------------------------------------------------------------------------- operations


@pytest.mark.parametrize("op", DSA_OPERATIONS)
def test_each_operation_changes_the_input(op: str) -> None:
    x = _images(8)
    out = dsa(x, op, generator=torch.Generator().manual_seed(0))
    assert out.shape == x.shape and out.dtype == x.dtype
    assert not torch.allclose(out, x)


@pytest.mark.parametrize("op", DSA_OPERATIONS)
def test_gradients_reach_the_input(op: str) -> None:
    x = _images(8).requires_grad_()
    (dsa(x, op, generator=torch.Generator().manual_seed(0)) * _images(8, seed=5)).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_full_strategy_preserves_shape_and_dtype() -> None:
    x = _images(5, channels=1)
    out = dsa(x, FULL, mode="all")
    assert out.shape == x.shape and out.dtype == torch.float32


def test_color_semantics() -> None:
    x = _images(1)
    params = _params(
        "color",
        brightness=torch.tensor([0.25]),
        saturation=torch.tensor([0.0]),
        contrast=torch.tensor([1.0]),
    )
    # Zero saturation leaves every pixel at its channel mean, brightness shifts it.
    expected = (x + 0.25).mean(dim=1, keepdim=True).expand_as(x)
    assert torch.allclose(apply_dsa(x, params, _zeros(1)), expected, atol=1e-6)


def test_crop_translates_with_zero_padding() -> None:
    x = _images(1)
    out = apply_dsa(x, _params("crop", shift=torch.tensor([[1, -2]])), _zeros(1))
    assert torch.equal(out[..., :-1, 2:], x[..., 1:, :-2])
    assert out[..., -1, :].abs().sum() == 0 and out[..., :, :2].abs().sum() == 0


def test_cutout_zeroes_a_half_side_square() -> None:
    x = torch.ones(1, 2, *SIZE)
    out = apply_dsa(x, _params("cutout", cutout_centre=torch.tensor([[6, 6]])), _zeros(1))
    assert torch.equal(out[0, :, 3:9, 3:9], torch.zeros(2, 6, 6))
    assert int((out == 0).sum()) == 2 * 6 * 6
    # A centre on the border clips the square to the image.
    out = apply_dsa(x, _params("cutout", cutout_centre=torch.tensor([[0, 12]])), _zeros(1))
    assert int((out[0, 0] == 0).sum()) == 3 * 3


def test_flip_is_horizontal() -> None:
    x = _images(2)
    out = apply_dsa(x, _params("flip", 2, flip=torch.tensor([True, False])), torch.arange(2))
    assert torch.equal(out[0], x[0].flip(-1))
    assert torch.equal(out[1], x[1])


def test_rotate_quarter_turn_and_unit_scale() -> None:
    x = _images(1)
    out = apply_dsa(x, _params("rotate", angle=torch.tensor([math.pi / 2])), _zeros(1))
    assert torch.allclose(out, torch.rot90(x, 1, dims=(2, 3)), atol=1e-5)
    out = apply_dsa(x, _params("scale", scale=torch.ones(1, 2)), _zeros(1))
    assert torch.allclose(out, x, atol=1e-5)


def test_empty_batch() -> None:
    x = torch.zeros(0, 3, *SIZE)
    assert dsa(x, FULL, mode="all").shape == x.shape


def test_large_batch_of_groups() -> None:
    x = torch.randn(3000, 1, 28, 28, requires_grad=True)
    groups = torch.arange(3000) % 10
    params = sample_dsa_params(FULL, 10, generator=torch.Generator().manual_seed(0), image_size=(28, 28))
    apply_dsa(x, params, groups).sum().backward()
    assert x.grad is not None and x.grad.shape == x.shape


# ---------------------------------------------------------------------------- errors


@pytest.mark.parametrize("groups", [torch.tensor([0, 2]), torch.tensor([-1, 0])])
def test_out_of_range_groups_are_rejected(groups: torch.Tensor) -> None:
    params = sample_dsa_params("flip", 2, image_size=SIZE)
    with pytest.raises(ValueError, match=r"\[0, 2\)"):
        apply_dsa(_images(2), params, groups)


def test_malformed_groups_are_rejected() -> None:
    params = sample_dsa_params("flip", 2, image_size=SIZE)
    with pytest.raises(ValueError, match="one entry per image"):
        apply_dsa(_images(3), params, torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="integer"):
        apply_dsa(_images(2), params, torch.tensor([0.0, 1.0]))


def test_image_size_must_match_the_draw() -> None:
    params = sample_dsa_params("crop", 1, image_size=(28, 28))
    with pytest.raises(ValueError, match="28"):
        apply_dsa(_images(1), params, _zeros(1))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu() -> None:
    def draw(device: str) -> DSAParams:
        generator = torch.Generator().manual_seed(0)
        return sample_dsa_params(FULL, 3, generator=generator, image_size=SIZE, device=device, mode="all")

    x, groups = _images(6), torch.tensor([0, 1, 2, 0, 1, 2])
    on_gpu = apply_dsa(x.cuda(), draw("cuda"), groups.cuda())
    assert on_gpu.device.type == "cuda"
    assert torch.allclose(on_gpu.cpu(), apply_dsa(x, draw("cpu"), groups), atol=1e-4)
