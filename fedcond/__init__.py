"""fedcond: train on condensed data.

A condenser turns a dataset into a tiny synthetic set by minimising a discrepancy between the
real and the synthetic distribution seen through a feature map. Feature maps, discrepancies,
models, datasets and condensation methods are registries: a config names any of them.
"""

__version__ = "0.1.0"

from fedcond.condense import condense, register_condense_method  # noqa: E402
from fedcond.config import Config  # noqa: E402
from fedcond.data import load_dataset  # noqa: E402
from fedcond.discrepancies import register_discrepancy  # noqa: E402
from fedcond.evaluation import evaluate_synthetic  # noqa: E402
from fedcond.features import register_feature_map  # noqa: E402
from fedcond.labels import Teacher, build_teacher, load_teacher, measure_teacher, save_teacher, train_teacher  # noqa: E402
from fedcond.models import register_model  # noqa: E402
from fedcond.synthetic import SyntheticSet  # noqa: E402

__all__ = [
    "Config",
    "SyntheticSet",
    "Teacher",
    "build_teacher",
    "condense",
    "evaluate_synthetic",
    "load_dataset",
    "load_teacher",
    "measure_teacher",
    "register_condense_method",
    "register_discrepancy",
    "register_feature_map",
    "register_model",
    "save_teacher",
    "train_teacher",
]
