"""The ``robust_evaluation`` section of a config, owned by the robustness layer: how trained networks are attacked."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from fedcond.config import register_config_section
from fedcond.errors import check, check_choice

if TYPE_CHECKING:
    from fedcond.config import Config

#: ``robust_evaluation.autoattack``: ``standard`` is ART's AutoAttack as shipped (APGD-CE and
#: APGD-DLR with 5 restarts of 100 steps, DeepFool, Square with 5000 queries); ``fast`` keeps the two
#: APGD attacks with one start each (the cheap version papers call "APGD-CE + APGD-DLR"); null: none.
AUTOATTACK_VERSIONS = ("standard", "fast")
#: L-infinity radii in pixel units ([0, 1]) when ``epsilons`` is null: grey images (Fashion-MNIST,
#: MNIST, digits) are attacked at 0.05 and 0.1, colour images (CIFAR-10-like) at 2/255 and 8/255.
GREY_EPSILONS = (0.05, 0.1)
COLOUR_EPSILONS = (2 / 255, 8 / 255)


@register_config_section("robust_evaluation")
@dataclass
class RobustEvaluationConfig:
    """PGD and AutoAttack on the evaluation networks (``fedcond evaluate --robust``), with the
    Adversarial Robustness Toolbox, L-infinity in pixel space, normalisation inside the attacked model."""

    #: Radii of the PGD attacks, in pixel units; null: :data:`GREY_EPSILONS` or :data:`COLOUR_EPSILONS`
    #: by the images' channels.
    epsilons: list[float] | None = None
    #: PGD steps, each of ``step_size`` (null: 2.5 x epsilon / steps, Madry et al.), from a random
    #: start in the epsilon ball when ``random_start``.
    steps: int = 20
    step_size: float | None = None
    random_start: bool = True
    #: AutoAttack's version (:data:`AUTOATTACK_VERSIONS`; null: no AutoAttack) and radius (null: the
    #: largest epsilon).
    autoattack: str | None = "fast"
    autoattack_epsilon: float | None = None
    #: Steps of each APGD attack of the ``fast`` version (``standard`` runs ART's own 100).
    autoattack_steps: int = 100
    #: Test images attacked: a fixed random subset of the test split drawn from the run seed (the
    #: same for every set evaluated under it); null: the whole split.
    test_images: int | None = 1000
    batch_size: int = 256

    def validate(self, config: Config) -> None:
        """Check radii, steps, the AutoAttack version and the subset's size."""
        if self.epsilons is not None:
            check(len(self.epsilons) >= 1, "robust_evaluation.epsilons must name at least one radius (null: the dataset's)")
            for eps in self.epsilons:
                check(0 < eps <= 1, f"robust_evaluation.epsilons must lie in (0, 1] (pixel units); got {eps}")
        check(self.steps >= 1, f"robust_evaluation.steps must be >= 1; got {self.steps}")
        check(self.step_size is None or self.step_size > 0, "robust_evaluation.step_size must be > 0 (null: 2.5 x epsilon / steps)")
        if self.autoattack is not None:
            check_choice("robust_evaluation.autoattack", self.autoattack, AUTOATTACK_VERSIONS)
        check(
            self.autoattack_epsilon is None or 0 < self.autoattack_epsilon <= 1,
            f"robust_evaluation.autoattack_epsilon must lie in (0, 1] (pixel units); got {self.autoattack_epsilon}",
        )
        check(self.autoattack_steps >= 1, f"robust_evaluation.autoattack_steps must be >= 1; got {self.autoattack_steps}")
        check(self.test_images is None or self.test_images >= 1, "robust_evaluation.test_images must be >= 1 (null: all)")
        check(self.batch_size >= 1, "robust_evaluation.batch_size must be >= 1")

    def radii(self, channels: int) -> list[float]:
        """The PGD radii for images of ``channels`` channels."""
        if self.epsilons is not None:
            return [float(eps) for eps in self.epsilons]
        return list(GREY_EPSILONS if channels == 1 else COLOUR_EPSILONS)
