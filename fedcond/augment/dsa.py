"""Differentiable siamese augmentation (DSA, Zhao & Bilen 2021), vectorised over groups.

Matching a synthetic batch to a real batch under augmentation only makes sense when both see
the *same* transformation, and gradients must flow back to the synthetic pixels. Random
parameters are therefore drawn once per *group* and every sample carries a group index: the
condenser uses the class as group (real and synthetic images of a class share a draw, classes
differ), network training uses one group per sample. No Python loop runs over samples or groups.

Magnitudes are the reference implementation's defaults (``ParamDiffAug`` in
VICO-UoE/DatasetCondensation). So is the default ``mode="single"``: each group applies one
operation drawn uniformly from the strategy, as the reference's ``aug_mode="S"`` does;
``mode="all"`` applies every operation in strategy order (the reference's ``aug_mode="M"``).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

from fedcond.errors import ConfigError

DSA_OPERATIONS: tuple[str, ...] = ("color", "crop", "cutout", "flip", "scale", "rotate")
DSA_MODES: tuple[str, ...] = ("single", "all")

BRIGHTNESS = 1.0  # additive shift in [-0.5, 0.5) * BRIGHTNESS
SATURATION = 2.0  # factor in [0, SATURATION) around the per-pixel channel mean
CONTRAST = 0.5  # factor in [CONTRAST, CONTRAST + 1) around the per-image mean
CROP_RATIO = 0.125  # translation by up to this fraction of the side, zero padded
CUTOUT_RATIO = 0.5  # side of the zeroed square as a fraction of the image side
FLIP_PROBABILITY = 0.5
SCALE_RATIO = 1.2  # sampling-grid scale in [1 / SCALE_RATIO, SCALE_RATIO], per axis
ROTATE_DEGREES = 15.0  # angle in [-ROTATE_DEGREES, ROTATE_DEGREES)


def validate_strategy(strategy: str) -> tuple[str, ...]:
    """The operations of an underscore-joined strategy, in order; ``""``/``"none"`` is no augmentation."""
    if strategy.lower() in ("", "none"):
        return ()
    operations = tuple(strategy.split("_"))
    unknown = [op for op in operations if op not in DSA_OPERATIONS]
    if unknown:
        raise ConfigError(
            f"unknown DSA operation(s) {', '.join(map(repr, unknown))} in strategy {strategy!r}; "
            f"valid operations: {', '.join(DSA_OPERATIONS)} (joined with '_', or 'none')"
        )
    if len(set(operations)) != len(operations):
        raise ConfigError(f"DSA strategy {strategy!r} names an operation more than once")
    return operations


@dataclasses.dataclass(frozen=True)
class DSAParams:
    """One random draw per group for every DSA operation, and which operations each group applies.

    Parameters of all operations are drawn whatever the strategy: it is cheap, and the draws of
    one operation then do not depend on which others the strategy lists.
    """

    operations: tuple[str, ...]
    image_size: tuple[int, int]
    #: ``[G, len(operations)]`` bool: operation ``k`` is applied to the samples of group ``g``.
    active: torch.Tensor
    #: ``[G]`` additive brightness shift.
    brightness: torch.Tensor
    #: ``[G]`` saturation factor.
    saturation: torch.Tensor
    #: ``[G]`` contrast factor.
    contrast: torch.Tensor
    #: ``[G, 2]`` int64 translation (rows, columns) in pixels.
    shift: torch.Tensor
    #: ``[G, 2]`` int64 centre (row, column) of the cutout square.
    cutout_centre: torch.Tensor
    #: ``[G]`` bool: flip horizontally.
    flip: torch.Tensor
    #: ``[G, 2]`` sampling-grid scale (x, y).
    scale: torch.Tensor
    #: ``[G]`` rotation angle in radians.
    angle: torch.Tensor

    @property
    def num_groups(self) -> int:
        return int(self.active.shape[0])


def sample_dsa_params(
    strategy: str,
    num_groups: int,
    *,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
    image_size: tuple[int, int],
    mode: str = "single",
) -> DSAParams:
    """Draw parameters for ``num_groups`` groups of images of ``image_size``, placed on ``device``.

    Numbers come from ``generator`` (torch's default CPU generator when None) so a seeded
    generator reproduces the draw on any device.
    """
    operations = validate_strategy(strategy)
    if mode not in DSA_MODES:
        raise ConfigError(f"DSA mode must be one of {', '.join(DSA_MODES)}; got {mode!r}")
    if num_groups < 0:
        raise ValueError(f"num_groups must be >= 0, got {num_groups}")
    height, width = image_size
    if height < 1 or width < 1:
        raise ValueError(f"image_size must be positive, got {tuple(image_size)}")
    on = generator.device if generator is not None else torch.device("cpu")

    def uniform(*shape: int) -> torch.Tensor:
        return torch.rand(shape, generator=generator, device=on)

    def integers(low: int, high: int) -> torch.Tensor:
        return torch.randint(low, high, (num_groups,), generator=generator, device=on)

    shift_h, shift_w = _crop_limit(height), _crop_limit(width)
    cut_h, cut_w = _cutout_side(height), _cutout_side(width)
    params = DSAParams(
        operations=operations,
        image_size=(height, width),
        active=torch.ones(num_groups, len(operations), dtype=torch.bool, device=on),
        brightness=(uniform(num_groups) - 0.5) * BRIGHTNESS,
        saturation=uniform(num_groups) * SATURATION,
        contrast=uniform(num_groups) + CONTRAST,
        shift=torch.stack([integers(-shift_h, shift_h + 1), integers(-shift_w, shift_w + 1)], dim=1),
        # An even-sided square has no middle pixel: one more centre position keeps it symmetric.
        cutout_centre=torch.stack(
            [integers(0, height + 1 - cut_h % 2), integers(0, width + 1 - cut_w % 2)], dim=1
        ),
        flip=uniform(num_groups) < FLIP_PROBABILITY,
        scale=uniform(num_groups, 2) * (SCALE_RATIO - 1.0 / SCALE_RATIO) + 1.0 / SCALE_RATIO,
        angle=(uniform(num_groups) - 0.5) * (2.0 * math.radians(ROTATE_DEGREES)),
    )
    if mode == "single" and operations:
        # Drawn last, so the operations' own draws are the same in both modes.
        choice = integers(0, len(operations))
        params = dataclasses.replace(params, active=F.one_hot(choice, len(operations)).bool())
    return _to(params, torch.device(device))


def apply_dsa(x: torch.Tensor, params: DSAParams, groups: torch.Tensor) -> torch.Tensor:
    """Augment images ``x`` ``[N, C, H, W]``; sample ``i`` uses the draw of group ``groups[i]``.

    Differentiable with respect to ``x``. Samples of one group get the identical transformation,
    whatever their content: that is what makes the augmentation siamese.
    """
    if x.ndim != 4 or not x.is_floating_point():
        raise ValueError(f"DSA expects float images [N, C, H, W], got {x.dtype} of shape {tuple(x.shape)}")
    if tuple(x.shape[-2:]) != params.image_size:
        raise ValueError(
            f"DSA parameters were drawn for {params.image_size} images, got {tuple(x.shape[-2:])}"
        )
    groups = _check_groups(groups, len(x), params.num_groups).to(x.device)
    params = _to(params, x.device)
    if not len(x):
        return x
    for k, operation in enumerate(params.operations):
        rows = torch.nonzero(params.active[groups, k]).squeeze(1)
        if len(rows) == len(x):
            x = _APPLY[operation](x, params, groups)
        elif len(rows):
            # Only the groups that drew this operation pay for it (mode "single").
            x = x.index_copy(0, rows, _APPLY[operation](x[rows], params, groups[rows]))
    return x


def dsa(
    x: torch.Tensor,
    strategy: str,
    *,
    groups: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    mode: str = "single",
) -> torch.Tensor:
    """Draw parameters and augment in one call; ``groups=None`` augments every sample independently."""
    if groups is None:
        groups = torch.arange(len(x), device=x.device)
    num_groups = int(groups.max()) + 1 if groups.numel() else 0
    params = sample_dsa_params(
        strategy,
        max(num_groups, 0),  # negative indices are reported by apply_dsa
        generator=generator,
        device=x.device,
        image_size=(int(x.shape[-2]), int(x.shape[-1])),
        mode=mode,
    )
    return apply_dsa(x, params, groups)


def _crop_limit(side: int) -> int:
    return int(side * CROP_RATIO + 0.5)


def _cutout_side(side: int) -> int:
    return int(side * CUTOUT_RATIO + 0.5)


def _to(params: DSAParams, device: torch.device) -> DSAParams:
    moved = {
        f.name: getattr(params, f.name).to(device)
        for f in dataclasses.fields(params)
        if isinstance(getattr(params, f.name), torch.Tensor)
    }
    return dataclasses.replace(params, **moved)


def _check_groups(groups: torch.Tensor, n: int, num_groups: int) -> torch.Tensor:
    if groups.ndim != 1 or len(groups) != n or groups.is_floating_point() or groups.is_complex():
        raise ValueError(
            f"groups must be a 1-D integer tensor with one entry per image ({n}), "
            f"got {groups.dtype} of shape {tuple(groups.shape)}"
        )
    groups = groups.long()
    if n and bool(((groups < 0) | (groups >= num_groups)).any()):
        raise ValueError(
            f"group indices must be in [0, {num_groups}) (parameters were drawn for {num_groups} groups), "
            f"got values in [{int(groups.min())}, {int(groups.max())}]"
        )
    return groups


def _per_sample(values: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    return values.to(dtype).view(-1, 1, 1, 1)


def _color(x: torch.Tensor, p: DSAParams, g: torch.Tensor) -> torch.Tensor:
    x = x + _per_sample(p.brightness[g], x.dtype)
    mean = x.mean(dim=1, keepdim=True)
    x = (x - mean) * _per_sample(p.saturation[g], x.dtype) + mean
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * _per_sample(p.contrast[g], x.dtype) + mean


def _crop(x: torch.Tensor, p: DSAParams, g: torch.Tensor) -> torch.Tensor:
    n, _, height, width = x.shape
    # Output pixel (i, j) reads input pixel (i + dy, j + dx); reads outside the image give zero.
    rows = torch.arange(height, device=x.device) + p.shift[g, 0:1]  # [n, H]
    cols = torch.arange(width, device=x.device) + p.shift[g, 1:2]  # [n, W]
    inside = ((rows >= 0) & (rows < height))[:, :, None] & ((cols >= 0) & (cols < width))[:, None, :]
    batch = torch.arange(n, device=x.device)[:, None, None]
    rows, cols = rows.clamp(0, height - 1)[:, :, None], cols.clamp(0, width - 1)[:, None, :]
    moved = x.permute(0, 2, 3, 1)[batch, rows, cols]  # [n, H, W, C]
    return moved.permute(0, 3, 1, 2) * inside[:, None].to(x.dtype)


def _cutout(x: torch.Tensor, p: DSAParams, g: torch.Tensor) -> torch.Tensor:
    height, width = x.shape[-2:]
    side_h, side_w = _cutout_side(height), _cutout_side(width)
    top = p.cutout_centre[g, 0:1] - side_h // 2  # [n, 1]
    left = p.cutout_centre[g, 1:2] - side_w // 2
    rows = torch.arange(height, device=x.device)
    cols = torch.arange(width, device=x.device)
    in_rows = (rows >= top) & (rows < top + side_h)  # [n, H]
    in_cols = (cols >= left) & (cols < left + side_w)  # [n, W]
    keep = ~(in_rows[:, :, None] & in_cols[:, None, :])
    return x * keep[:, None].to(x.dtype)


def _flip(x: torch.Tensor, p: DSAParams, g: torch.Tensor) -> torch.Tensor:
    return torch.where(p.flip[g].view(-1, 1, 1, 1), x.flip(3), x)


def _warp(x: torch.Tensor, linear: torch.Tensor) -> torch.Tensor:
    """Resample ``x`` at ``linear @ (u, v)`` for normalised output coordinates ``(u, v)``; zeros outside."""
    theta = torch.cat([linear, torch.zeros_like(linear[:, :, :1])], dim=2).to(x.dtype)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def _scale(x: torch.Tensor, p: DSAParams, g: torch.Tensor) -> torch.Tensor:
    return _warp(x, torch.diag_embed(p.scale[g]))


def _rotate(x: torch.Tensor, p: DSAParams, g: torch.Tensor) -> torch.Tensor:
    cos, sin = torch.cos(p.angle[g]), torch.sin(p.angle[g])
    linear = torch.stack([torch.stack([cos, -sin], dim=1), torch.stack([sin, cos], dim=1)], dim=1)
    return _warp(x, linear)


_APPLY: dict[str, Callable[[torch.Tensor, DSAParams, torch.Tensor], torch.Tensor]] = {
    "color": _color,
    "crop": _crop,
    "cutout": _cutout,
    "flip": _flip,
    "scale": _scale,
    "rotate": _rotate,
}
