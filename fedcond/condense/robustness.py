"""Robustness terms of the matching objective (``condense.robustness``), registered by name.

A term may act on the real side, the synthetic side, or both, whatever the feature map,
discrepancy and real-side target:

* :meth:`RobustnessTerm.perturb_real` changes the real images of an iteration (or of a pool entry)
  just before their features are taken, under the network that takes them;
* :meth:`RobustnessTerm.penalty` adds a term on the (decoded, augmented) synthetic images to the
  iteration's loss.

fedcond's own terms: ``adversarial-targets`` (ROME, Zhou et al. ICML 2025: match against real
images perturbed by PGD against the target network) and ``input-gradient`` (in the spirit of GUARD,
AAAI 2025: penalise the input-gradient norm of the target networks at the synthetic images, so the
set sits where the networks are flat). Adding one is one class plus its registration::

    from fedcond.condense.robustness import RobustnessTerm, register_robustness

    @register_robustness("my-term")
    class MyTerm(RobustnessTerm):
        def penalty(self, feature_map, images, labels): ...

The attack inside a term is the engine's training-time PGD (:mod:`fedcond.adversarial`);
robustness is measured with the Adversarial Robustness Toolbox (:mod:`fedcond.robustness`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import torch
import torch.nn.functional as F

from fedcond.adversarial import PixelSpace, pgd
from fedcond.errors import ConfigError
from fedcond.features import FeatureMap, embed_in_chunks
from fedcond.registry import Registry

if TYPE_CHECKING:
    from fedcond.config import RobustnessConfig

#: ``condense.robustness.objective``: what the attack and the penalty differentiate.
OBJECTIVES = ("features", "logits")


class RobustnessTerm:
    """Base class: no real-side perturbation, no penalty; subclasses override one or both.

    Parameters
    ----------
    cfg
        ``condense.robustness``.
    space
        The normalisation of the images (radii are in pixel units).
    """

    def __init__(self, cfg: RobustnessConfig, space: PixelSpace) -> None:
        self.cfg, self.space = cfg, space

    def perturb_real(
        self, feature_map: FeatureMap, images: torch.Tensor, labels: torch.Tensor, generator: torch.Generator
    ) -> torch.Tensor:
        """The real images whose features are taken, under ``feature_map``'s active network."""
        return images

    def penalty(self, feature_map: FeatureMap, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor | None:
        """A term added to the iteration's loss, differentiable in ``images``; None: none."""
        return None

    def metadata(self) -> dict[str, Any]:
        """What the synthetic set's metadata records (``robustness``)."""
        return dataclasses.asdict(self.cfg)

    def logits(self, feature_map: FeatureMap, images: torch.Tensor) -> torch.Tensor:
        """The active network's own logits on ``images`` (``objective: logits``): its classifier is
        trained in a trained-pool entry, random in a random network."""
        net = getattr(feature_map, "net", None)
        if net is None:
            raise ConfigError(f"condense.robustness.objective logits needs a feature map with a network; "
                              f"{type(feature_map).__name__} has none")  # fmt: skip
        return net(images)


T = TypeVar("T", bound=type[RobustnessTerm])
ROBUSTNESS_TERMS: Registry[type[RobustnessTerm]] = Registry("robustness term")


def register_robustness(name: str) -> Callable[[T], T]:
    """Class decorator registering a :class:`RobustnessTerm` subclass under ``name``."""

    def decorator(cls: T) -> T:
        if not (isinstance(cls, type) and issubclass(cls, RobustnessTerm)):
            raise TypeError(f"robustness term {name!r} must be a RobustnessTerm subclass")
        return ROBUSTNESS_TERMS.register(name)(cls)

    return decorator


def build_robustness(cfg: RobustnessConfig, space: PixelSpace) -> RobustnessTerm | None:
    """The term ``cfg`` names, or None when ``cfg.method`` is null."""
    return None if cfg.method is None else ROBUSTNESS_TERMS.get(cfg.method)(cfg, space)


@register_robustness("adversarial-targets")
class AdversarialTargets(RobustnessTerm):
    """Real images moved by L-infinity PGD (``epsilon``, ``steps``) against the network that embeds
    them: away from their clean embedding (``features``) or up its classifier's cross-entropy
    (``logits``). The synthetic set is then matched to what the network sees of attacked data."""

    def perturb_real(
        self, feature_map: FeatureMap, images: torch.Tensor, labels: torch.Tensor, generator: torch.Generator
    ) -> torch.Tensor:
        c = self.cfg
        if c.objective == "logits":
            def objective(x: torch.Tensor) -> torch.Tensor:
                return F.cross_entropy(self.logits(feature_map, x), labels, reduction="sum")
        else:
            clean = embed_in_chunks(feature_map, images, labels)

            def objective(x: torch.Tensor) -> torch.Tensor:
                return (embed_in_chunks(feature_map, x, labels, differentiable=True) - clean).pow(2).sum()

        return pgd(objective, images, space=self.space, epsilon=c.epsilon, steps=c.steps, step_size=c.step_size,
                   generator=generator)  # fmt: skip


@register_robustness("input-gradient")
class InputGradientPenalty(RobustnessTerm):
    """``weight`` x the mean squared input-gradient norm, at the synthetic images, of the network's
    embedding projected on a random unit direction per image (``features``: an unbiased estimate of
    the Jacobian's squared Frobenius norm over the embedding size) or of its classifier's
    cross-entropy (``logits``). Double backpropagation: the penalty's gradient reaches the pixels."""

    def penalty(self, feature_map: FeatureMap, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor | None:
        if self.cfg.weight == 0:
            return None
        hard = labels if labels.ndim == 1 else labels.argmax(dim=1)
        if self.cfg.objective == "logits":
            value = F.cross_entropy(self.logits(feature_map, images), labels, reduction="sum")
        else:
            features = embed_in_chunks(feature_map, images, hard, differentiable=True)
            direction = F.normalize(torch.randn_like(features), dim=1)
            value = (features * direction).sum()
        (grad,) = torch.autograd.grad(value, images, create_graph=True)
        return self.cfg.weight * grad.flatten(1).pow(2).sum(dim=1).mean()
