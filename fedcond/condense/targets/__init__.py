"""Real-side targets of the matching loop, registered by name (see :mod:`fedcond.condense.targets.base`)."""

from fedcond.condense.targets.base import (
    REAL_TARGETS,
    RealData,
    RealSide,
    RealTarget,
    build_real_target,
    check_real_target_params,
    register_real_target,
    select_real_target,
)
from fedcond.condense.targets.fresh import FreshNetworks
from fedcond.condense.targets.pool import PoolTarget, RealStatisticsPool
from fedcond.condense.targets.trained import TrainedPoolTarget

__all__ = [
    "REAL_TARGETS",
    "FreshNetworks",
    "PoolTarget",
    "RealData",
    "RealSide",
    "RealStatisticsPool",
    "RealTarget",
    "TrainedPoolTarget",
    "build_real_target",
    "check_real_target_params",
    "register_real_target",
    "select_real_target",
]
