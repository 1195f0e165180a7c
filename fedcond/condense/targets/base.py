"""The real-side seam of the matching loop: what a synthetic set is matched against, iteration by iteration.

A :class:`RealTarget` is prepared once, then asked at every iteration for this iteration's
network (made active inside the run's feature map) and the real features of each class under it,
together with the augmentation draw those real images saw, which the loop applies to the
synthetic images too (siamese augmentation). The loop never asks which kind of target it has.

Kinds are registered by name; adding one is one class in one file plus its registration::

    from fedcond.condense.targets import RealSide, RealTarget, register_real_target

    @register_real_target("my-statistics")
    class MyStatistics(RealTarget):
        def draw(self, generator: torch.Generator) -> RealSide: ...

The engine's own kinds are ``fresh`` (a fresh network and real batch every iteration, DM's loop)
and ``pool`` (cached statistics of a fixed pool of networks); private release registers
``private-once`` and ``private-per-iteration``. Which one a run uses follows the config: a
layer's section may claim the target (privacy mode does), otherwise ``pool`` when
``condense.pool_networks`` is set and ``fresh`` when not.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import torch

from fedcond.augment import DSAParams, sample_dsa_params
from fedcond.condense.common import class_quotas
from fedcond.discrepancies.base import Features
from fedcond.errors import ConfigError
from fedcond.features import FeatureMap
from fedcond.registry import Registry
from fedcond.values import bind_component_options

if TYPE_CHECKING:
    from fedcond.condense.robustness import RobustnessTerm
    from fedcond.config import Config


@dataclass
class RealData:
    """The real side of one matching run, as every target sees it.

    Parameters
    ----------
    config
        The run's validated config.
    feature_map
        The run's feature map; a target makes its iteration's network active inside it.
    images, labels
        Every real image ``[N, C, H, W]`` and label ``[N]``, on the run's device.
    per_class
        Sample indices of each class of the label space (empty for absent classes), on the device.
    num_classes
        Classes of the label space.
    progress
        Show progress bars while preparing.
    robustness
        The run's robustness term (``condense.robustness``), or None: targets hand every real batch
        to :meth:`perturb` just before its features are taken.
    """

    config: Config
    feature_map: FeatureMap
    images: torch.Tensor
    labels: torch.Tensor
    per_class: list[torch.Tensor]
    num_classes: int
    progress: bool = False
    robustness: RobustnessTerm | None = None

    @property
    def device(self) -> torch.device:
        return self.images.device

    @property
    def image_size(self) -> tuple[int, int]:
        return int(self.images.shape[2]), int(self.images.shape[3])

    @property
    def dsa_strategy(self) -> str | None:
        """The DSA strategy both sides are augmented with, or None without DSA."""
        c = self.config.condense
        return c.dsa_strategy if c.dsa else None

    def perturb(self, images: torch.Tensor, labels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """``images`` as the robustness term wants them seen by the feature map's active network
        (unchanged without one)."""
        if self.robustness is None:
            return images
        return self.robustness.perturb_real(self.feature_map, images, labels, generator)

    def sample_augmentation(self, generator: torch.Generator) -> DSAParams | None:
        """One DSA draw per class (the class's real and synthetic images share it), or None without DSA."""
        if self.dsa_strategy is None:
            return None
        return sample_dsa_params(
            self.dsa_strategy, self.num_classes, generator=generator, device=self.device,
            image_size=self.image_size, mode=self.config.condense.dsa_mode,
        )  # fmt: skip


@dataclass
class RealSide:
    """What one iteration matches against.

    Parameters
    ----------
    features
        Real features of each matched class, in class order: embeddings ``[n, d]`` (``n`` may be 1,
        a summary such as a mean) or per-layer gradients.
    augmentation
        The DSA draw the real images saw; the synthetic images get the same one. None: no DSA.
    synthetic_bound
        Clip each synthetic embedding to this L2 norm, as the real ones were (privacy), or None.
    classifier, classifier_weight
        A classifier on the embeddings (a trained network's last layer) and the weight of its
        cross-entropy on the synthetic images, added to the discrepancy (IDM's class-aware term);
        None: no such term.
    """

    features: list[Features]
    augmentation: DSAParams | None = None
    synthetic_bound: float | None = None
    classifier: Callable[[torch.Tensor], torch.Tensor] | None = None
    classifier_weight: float = 0.0


class RealTarget(abc.ABC):
    """A kind of real-side statistics; subclasses implement :meth:`draw`, and :meth:`prepare` if they cache.

    Parameters
    ----------
    real
        The run's real data, feature map and config.
    """

    #: Whether a checkpointed run may resume with this target (it must rebuild the same state).
    resumable: bool = True

    def __init__(self, real: RealData) -> None:
        self.real = real
        self.classes: list[int] = []
        #: Seconds :meth:`prepare` took (a pool's embedding, a private release); in the set's timings.
        self.seconds = 0.0

    @classmethod
    def check_config(cls, config: Config) -> None:
        """Raise :class:`ConfigError` if ``config`` cannot run with this target (validation; builds nothing)."""

    def quotas(self, ipc: int) -> list[int]:
        """Synthetic images per class of the label space (:func:`~fedcond.condense.common.class_quotas`)."""
        return class_quotas(self.real.per_class, ipc)

    def prepare(self, classes: list[int]) -> None:
        """Once, before the first iteration: the classes that get synthetic images (ascending)."""
        self.classes = list(classes)

    @abc.abstractmethod
    def draw(self, generator: torch.Generator) -> RealSide:
        """This iteration's real side; its network is active in the feature map when this returns.

        ``generator`` and torch's global RNG are seeded for the iteration: every draw comes from them.
        """

    def metadata(self) -> dict[str, Any]:
        """What the synthetic set's metadata records of this target (e.g. ``pool_networks``)."""
        return {}


T = TypeVar("T", bound=type[RealTarget])
REAL_TARGETS: Registry[type[RealTarget]] = Registry("real-side target")


def register_real_target(name: str) -> Callable[[T], T]:
    """Class decorator registering a :class:`RealTarget` subclass under ``name``."""

    def decorator(cls: T) -> T:
        if not (isinstance(cls, type) and issubclass(cls, RealTarget)):
            raise TypeError(f"real-side target {name!r} must be a RealTarget subclass")
        return REAL_TARGETS.register(name)(cls)

    return decorator


def select_real_target(config: Config) -> str:
    """The name of the real-side target ``config`` asks for.

    A layer's section claims one by a ``real_target(config)`` method returning its name (privacy
    mode does); at most one section may, and ``condense.real_target``, when not ``auto``, must agree
    with it. Otherwise ``condense.real_target`` when set, else ``pool`` when
    ``condense.pool_networks`` is set and ``fresh`` when not.
    """
    claims = {}
    chosen = config.condense.real_target
    if chosen != "auto":
        claims["condense"] = chosen
    for name, section in config.sections.items():
        claim = getattr(section, "real_target", None)
        target = claim(config) if callable(claim) else None
        if target is not None:
            claims[name] = target
    if len(set(claims.values())) > 1:
        named = ", ".join(f"{section} wants {target!r}" for section, target in claims.items())
        raise ConfigError(f"config sections disagree on what condensation matches against: {named}")
    if claims:
        return next(iter(claims.values()))
    return "pool" if config.condense.pool_networks else "fresh"


def check_real_target_params(name: str, params: dict[str, Any]) -> dict[str, Any]:
    """``params`` (``condense.real_target_params``) checked against target ``name``'s options, coerced."""
    return bind_component_options("real-side target", name, REAL_TARGETS.get(name), params, keyword_only=True)


def build_real_target(name: str, real: RealData) -> RealTarget:
    """The target ``name`` over ``real``, with the options of ``condense.real_target_params`` where the
    config chose it by name (a target a layer's section claims takes its settings from that section)."""
    c = real.config.condense
    params = c.real_target_params if c.real_target == name else {}
    return REAL_TARGETS.get(name)(real, **check_real_target_params(name, params))
