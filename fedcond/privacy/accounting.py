"""(epsilon, delta) accounting of Gaussian releases, with Flower's RDP accountant.

fedcond does not derive privacy bounds itself: every epsilon comes from
``flwr.serverapp.RdpAccountant`` (Google's dp-accounting underneath, installed by ``flwr[dp]``),
and the noise for a target epsilon is found by bisection on that accountant.
"""

from __future__ import annotations

import math

from fedcond.errors import ConfigError

#: Noise multipliers searched when calibrating: from almost none to far more than any useful release.
MIN_NOISE, MAX_NOISE = 1e-3, 1e4


def _accountant(releases: int, sample_size: int, population: int) -> tuple[object, object]:
    import logging

    # dp-accounting logs (through absl) every fractional RDP order it drops for not converging;
    # the epsilon it returns already accounts for that.
    logging.getLogger("absl").setLevel(logging.ERROR)
    from flwr.serverapp import GaussianPrivacyEvent, PrivacyConfig
    from flwr.serverapp import RdpAccountant as _RdpAccountant  # noqa: N814
    from flwr.supercore.privacy_accounting import NeighboringRelation, SamplingMethod

    # Add-or-remove-one adjacency; one release over the whole data set gets no sampling amplification.
    sampling = SamplingMethod.NO_AMPLIFICATION if sample_size >= population else SamplingMethod.POISSON
    config = PrivacyConfig(
        target_delta=1e-5, population_size=population,
        neighboring_relation=NeighboringRelation.ADD_OR_REMOVE_ONE, sampling_method=sampling,
    )  # fmt: skip
    return _RdpAccountant(config), GaussianPrivacyEvent


def epsilon_spent(noise_multiplier: float, delta: float, *, releases: int = 1, sample_size: int, population: int) -> float:
    """Epsilon at ``delta`` after ``releases`` Gaussian releases of sensitivity-scaled noise
    ``noise_multiplier``, each over a Poisson sample of expected size ``sample_size`` out of
    ``population`` (the whole population: no subsampling)."""
    _check(delta, releases, sample_size, population)
    if noise_multiplier <= 0:
        return math.inf
    accountant, event = _accountant(releases, sample_size, population)
    accountant.compose(event(noise_multiplier, min(sample_size, population), population), releases)
    return accountant.get_epsilon(delta)


def calibrate_noise(
    epsilon: float, delta: float, *, releases: int = 1, sample_size: int, population: int, tolerance: float = 1e-3
) -> float:
    """The smallest noise multiplier (within ``tolerance``, relative) whose releases spend at most ``epsilon``."""
    if not (epsilon > 0 and math.isfinite(epsilon)):
        raise ConfigError(f"privacy.epsilon must be a positive finite number, got {epsilon}")
    _check(delta, releases, sample_size, population)
    spent = lambda noise: epsilon_spent(noise, delta, releases=releases, sample_size=sample_size, population=population)  # noqa: E731
    if spent(MAX_NOISE) > epsilon:
        raise ConfigError(f"epsilon {epsilon} at delta {delta} is out of reach even with noise multiplier {MAX_NOISE:g}")
    low, high = MIN_NOISE, MAX_NOISE
    while high / low > 1 + tolerance:
        middle = math.sqrt(low * high)
        low, high = (middle, high) if spent(middle) > epsilon else (low, middle)
    return high


def _check(delta: float, releases: int, sample_size: int, population: int) -> None:
    if not 0 < delta < 1:
        raise ConfigError(f"privacy.delta must be in (0, 1), got {delta}")
    if releases < 1 or sample_size < 1 or population < 1:
        raise ConfigError("releases, sample size and population must be positive")
