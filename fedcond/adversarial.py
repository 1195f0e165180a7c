"""L-infinity PGD in pixel space on normalised images: the inner maximisation of adversarial training.

The engine trains with it (``evaluation.adversarial``: PGD-AT, Madry et al. 2018). It is a
*training* component, like augmentation; robustness is never *measured* with it: the robustness
layer attacks trained networks with the Adversarial Robustness Toolbox
(:mod:`fedcond.robustness.attacks`), so that a defence is not graded by its own attack.

Images live normalised (``(pixel - mean) / std`` per channel); radii are in pixel units. A radius
``epsilon`` is ``epsilon / std`` in normalised units per channel, and the perturbed images are kept
inside the valid pixel range ``[0, 1]``, i.e. ``[-mean / std, (1 - mean) / std]``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class PixelSpace:
    """The normalisation of the images PGD perturbs: per-channel ``mean`` and ``std`` of pixels in [0, 1]."""

    mean: Sequence[float]
    std: Sequence[float]

    def scale(self, value: float, like: torch.Tensor) -> torch.Tensor:
        """``value`` pixel units in normalised units, ``[1, C, 1, 1]`` on ``like``'s device."""
        std = torch.as_tensor(self.std, dtype=like.dtype, device=like.device).view(1, -1, 1, 1)
        return value / std

    def bounds(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The normalised images of pixels 0 and 1, ``[1, C, 1, 1]`` each."""
        mean = torch.as_tensor(self.mean, dtype=like.dtype, device=like.device).view(1, -1, 1, 1)
        std = torch.as_tensor(self.std, dtype=like.dtype, device=like.device).view(1, -1, 1, 1)
        return -mean / std, (1 - mean) / std


def pgd(
    objective: Callable[[torch.Tensor], torch.Tensor],
    images: torch.Tensor,
    *,
    space: PixelSpace,
    epsilon: float,
    steps: int,
    step_size: float | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """``images`` moved, within ``epsilon`` (pixel units, L-infinity), to raise ``objective(x)`` (a scalar).

    Parameters
    ----------
    objective
        What to maximise, as a function of the (normalised) images.
    images
        Normalised images ``[B, C, H, W]``.
    space
        The images' normalisation.
    epsilon, steps, step_size
        Radius, steps, and the step in pixel units (default ``2.5 * epsilon / steps``).
    generator
        Draws the random start, uniform in the ball (CPU generator; the draw is moved to the device).

    Returns
    -------
    torch.Tensor
        The perturbed images, detached, inside the pixel range (or inside the range the images
        already span, if an augmentation took them beyond it).
    """
    radius = space.scale(epsilon, images)
    stride = space.scale(step_size if step_size is not None else 2.5 * epsilon / steps, images)
    original = images.detach()
    low, high = space.bounds(images)
    low, high = torch.minimum(low, original), torch.maximum(high, original)
    start = torch.rand(images.shape, generator=generator).to(images.device, images.dtype)
    adversarial = torch.max(torch.min(original + (2 * start - 1) * radius, high), low)
    with torch.enable_grad():
        for _ in range(steps):
            adversarial.requires_grad_(True)
            (grad,) = torch.autograd.grad(objective(adversarial), adversarial)
            with torch.no_grad():
                adversarial = adversarial + stride * grad.sign()
                adversarial = torch.max(torch.min(adversarial, original + radius), original - radius)
                adversarial = torch.max(torch.min(adversarial, high), low)
    return adversarial.detach()


def pgd_perturb(
    net: nn.Module,
    images: torch.Tensor,
    targets: torch.Tensor,
    loss: Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor],
    *,
    space: PixelSpace,
    epsilon: float,
    steps: int,
    step_size: float | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """:func:`pgd` against ``loss(net, x, targets)``, ``net`` in eval mode meanwhile (then back in its mode).

    ``targets`` are what ``loss`` compares the outputs with (class indices or distributions); the
    other parameters are :func:`pgd`'s.
    """
    was_training = net.training
    net.eval()
    try:
        return pgd(lambda x: loss(net, x, targets), images, space=space, epsilon=epsilon, steps=steps,
                   step_size=step_size, generator=generator)  # fmt: skip
    finally:
        net.train(was_training)


@dataclass(frozen=True)
class AdversarialTraining:
    """PGD-AT as :func:`~fedcond.evaluation.fit` applies it: every batch replaced by its PGD
    perturbation against the network being trained, then trained on.

    Parameters
    ----------
    space
        The normalisation of the training images.
    epsilon, steps, step_size
        As for :func:`pgd_perturb` (``evaluation.adversarial``).
    """

    space: PixelSpace
    epsilon: float
    steps: int
    step_size: float | None = None

    def perturb(
        self,
        net: nn.Module,
        images: torch.Tensor,
        targets: torch.Tensor,
        loss: Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor],
        generator: torch.Generator,
    ) -> torch.Tensor:
        """The batch's adversarial images under the training ``loss``."""
        return pgd_perturb(net, images, targets, loss, space=self.space, epsilon=self.epsilon, steps=self.steps,
                           step_size=self.step_size, generator=generator)  # fmt: skip

    def info(self) -> dict[str, float | int | str]:
        """What results.json records of it."""
        step = self.step_size if self.step_size is not None else 2.5 * self.epsilon / self.steps
        return {"method": "pgd-at", "epsilon": self.epsilon, "steps": self.steps, "step_size": round(step, 6), "norm": "linf"}
