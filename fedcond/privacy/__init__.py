"""Private release of condensed sets: the ``privacy`` config section, (epsilon, delta) accounting with
Flower's accountant, the private real-side targets of the matching loop, and the membership audit."""

from fedcond.privacy import targets  # noqa: F401  (registers private-once and private-per-iteration)
from fedcond.privacy.accounting import calibrate_noise, epsilon_spent
from fedcond.privacy.config import PrivacyConfig

__all__ = ["PrivacyConfig", "calibrate_noise", "epsilon_spent"]
