"""Discrepancies D(P_real, P_synthetic) between the features of one class, registered by name.

Each is a plain function ``fn(real, synthetic, *, <keyword-only params with defaults>)``
returning a scalar tensor differentiable with respect to ``synthetic``. It compares either
embeddings (``[n, d]`` tensors whose ``n`` may differ) or gradients (lists of per-layer
gradients of equal shapes). A config names one and passes its parameters::

    condense:
      discrepancy: mmd-gaussian
      discrepancy_params: {bandwidths: [0.5, 1, 2, 4]}

Add one with :func:`register_discrepancy`; annotate its parameters (``Annotated[float,
Positive]`` for a limit) and :func:`build_discrepancy` checks config values against them.
"""

from fedcond.discrepancies.base import (
    DISCREPANCIES,
    Discrepancy,
    Features,
    build_discrepancy,
    discrepancy_accepts,
    register_discrepancy,
    summarise_real,
)
from fedcond.discrepancies.characteristic import characteristic_function
from fedcond.discrepancies.gradient_matching import gradient_matching
from fedcond.discrepancies.mmd import mmd_gaussian, mmd_gaussian_linear, mmd_linear
from fedcond.discrepancies.moments import moments
from fedcond.discrepancies.params import Bound, NonNegative, Positive
from fedcond.discrepancies.sliced_wasserstein import sliced_wasserstein

__all__ = [
    "DISCREPANCIES",
    "Bound",
    "Discrepancy",
    "Features",
    "NonNegative",
    "Positive",
    "build_discrepancy",
    "discrepancy_accepts",
    "gradient_matching",
    "characteristic_function",
    "mmd_gaussian",
    "mmd_gaussian_linear",
    "mmd_linear",
    "moments",
    "register_discrepancy",
    "sliced_wasserstein",
    "summarise_real",
]
