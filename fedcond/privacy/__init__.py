"""Private releases of condensed sets: (epsilon, delta) accounting and noised real statistics."""

from fedcond.privacy.accounting import calibrate_noise, epsilon_spent

__all__ = ["calibrate_noise", "epsilon_spent"]
