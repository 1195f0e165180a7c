"""Augmentations applied inside condensation and evaluation training."""

from fedcond.augment.dsa import (
    DSA_MODES,
    DSA_OPERATIONS,
    DSAParams,
    apply_dsa,
    dsa,
    sample_dsa_params,
    validate_strategy,
)

__all__ = [
    "DSA_MODES",
    "DSA_OPERATIONS",
    "DSAParams",
    "apply_dsa",
    "dsa",
    "sample_dsa_params",
    "validate_strategy",
]
