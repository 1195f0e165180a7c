"""Real-side targets of the matching loop, registered by name (see :mod:`fedcond.condense.targets.base`)."""

from fedcond.condense.targets.base import (
    REAL_TARGETS,
    RealData,
    RealSide,
    RealTarget,
    register_real_target,
    select_real_target,
)
from fedcond.condense.targets.fresh import FreshNetworks
from fedcond.condense.targets.pool import PoolTarget, RealStatisticsPool

__all__ = [
    "REAL_TARGETS",
    "FreshNetworks",
    "PoolTarget",
    "RealData",
    "RealSide",
    "RealStatisticsPool",
    "RealTarget",
    "register_real_target",
    "select_real_target",
]
