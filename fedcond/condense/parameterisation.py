"""Factorised synthetic images ("multi-formation", IDC; M3D's factor & up-sampling).

With ``factor`` f every *stored* image of size H x W is a grid of f x f tiles of size
H/f x W/f; *decoding* cuts the tiles out and up-samples each back to H x W, so one stored image
trains as f² images. The pixel budget (what is stored or uploaded per class) stays ``ipc``
images; the training set holds ``ipc * f²``. Gradients flow through the decoding, so the
condenser optimises the stored tiles directly. ``factor=1`` is the identity.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from fedcond.errors import ConfigError


def check_factor(factor: int, image_size: tuple[int, int]) -> None:
    """Raise :class:`ConfigError` unless ``factor`` tiles ``image_size`` exactly."""
    height, width = image_size
    if factor < 1:
        raise ConfigError(f"condense.factor must be at least 1, got {factor}")
    if height % factor or width % factor:
        raise ConfigError(
            f"condense.factor={factor} must divide the image size {height}x{width} "
            f"(tiles of {height / factor:g}x{width / factor:g} pixels)"
        )


def decode(stored: torch.Tensor, factor: int) -> torch.Tensor:
    """``[N, C, H, W]`` stored images to ``[N * f², C, H, W]`` training images, tile by tile.

    The f² images of stored image ``i`` are rows ``i * f² ... (i + 1) * f² - 1``, tiles in
    row-major order, so class-grouped stored images decode to class-grouped images.
    """
    if factor == 1:
        return stored
    n, c, h, w = stored.shape
    th, tw = h // factor, w // factor
    tiles = stored.reshape(n, c, factor, th, factor, tw).permute(0, 2, 4, 1, 3, 5)
    tiles = tiles.reshape(n * factor * factor, c, th, tw)
    return F.interpolate(tiles, size=(h, w), mode="bilinear", align_corners=False)


def encode(images: torch.Tensor, factor: int) -> torch.Tensor:
    """Pack ``[N * f², C, H, W]`` images into ``[N, C, H, W]`` stored images (area down-sampling).

    The initialisation from real images: ``decode(encode(x))`` is a blurred ``x``.
    """
    if factor == 1:
        return images
    m, c, h, w = images.shape
    if m % (factor * factor):
        raise ValueError(f"encode needs a multiple of {factor * factor} images, got {m}")
    th, tw = h // factor, w // factor
    small = F.interpolate(images, size=(th, tw), mode="area")
    n = m // (factor * factor)
    grid = small.reshape(n, factor, factor, c, th, tw).permute(0, 3, 1, 4, 2, 5)
    return grid.reshape(n, c, h, w).contiguous()
