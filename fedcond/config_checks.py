"""The engine's checks of a config: the root keys and the ``dataset``, ``condense`` and ``evaluation`` sections.

Names are looked up in the registries (datasets, condensation methods, feature maps,
discrepancies, models, DSA operations) and options are checked against the components'
signatures; nothing is built, allocated or switched on.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fedcond.augment import DSA_MODES, validate_strategy
from fedcond.condense import CONDENSE_METHODS
from fedcond.condense.matching import INITIALISATIONS
from fedcond.condense.robustness import OBJECTIVES as ROBUSTNESS_OBJECTIVES
from fedcond.condense.robustness import ROBUSTNESS_TERMS
from fedcond.condense.targets import REAL_TARGETS, check_real_target_params
from fedcond.data import DATASETS
from fedcond.device import PRECISIONS, check_device
from fedcond.discrepancies import DISCREPANCIES, build_discrepancy, discrepancy_accepts
from fedcond.errors import check, check_choice
from fedcond.evaluation import EVALUATION_LOSSES, EVALUATION_PROTOCOLS
from fedcond.features import FEATURE_MAPS, check_feature_params, feature_kind
from fedcond.labels import LABEL_SOURCES
from fedcond.models import MODELS, check_model_options

if TYPE_CHECKING:
    from fedcond.config import Config, TeacherConfig


def validate_engine(config: Config) -> None:
    """Raise :class:`~fedcond.errors.ConfigError` for the first problem in the engine's part of ``config``."""
    check_device(config.device)
    DATASETS.get(config.dataset.name)
    check(0 < config.dataset.test_fraction < 1, "dataset.test_fraction must be in (0, 1)")
    _validate_condense(config)
    _validate_evaluation(config)


def _validate_condense(config: Config) -> None:
    c = config.condense
    CONDENSE_METHODS.get(c.method)
    FEATURE_MAPS.get(c.feature_map)
    DISCREPANCIES.get(c.discrepancy)
    MODELS.get(c.model)
    check(isinstance(c.model_params, dict), "condense.model_params must be a mapping of model options")
    check_model_options(c.model, c.model_params)
    check(c.ipc >= 1, "condense.ipc must be at least 1")
    check(c.iterations >= 0, "condense.iterations must be >= 0")
    check(c.max_seconds is None or c.max_seconds > 0, "condense.max_seconds must be null or > 0")
    check(c.batch_real >= 1, "condense.batch_real must be at least 1")
    check(c.lr_images > 0, "condense.lr_images must be > 0")
    check(c.lr_labels > 0, "condense.lr_labels must be > 0")
    check(0 <= c.momentum < 1, "condense.momentum must be in [0, 1)")
    check(c.checkpoint_every >= 0, "condense.checkpoint_every must be >= 0")
    check(c.pool_networks >= 0, "condense.pool_networks must be >= 0")
    check(c.factor >= 1, "condense.factor must be at least 1")
    check_choice("condense.init", c.init, INITIALISATIONS)
    check_choice("condense.optimizer", c.optimizer, ("sgd", "adam"))
    check_choice("condense.dsa_mode", c.dsa_mode, DSA_MODES)
    validate_strategy(c.dsa_strategy)
    build_discrepancy(c.discrepancy, **c.discrepancy_params)  # checks the parameters; builds nothing heavy
    check_feature_params(c.feature_map, c.feature_params)
    kind, accepts = feature_kind(c.feature_map), discrepancy_accepts(c.discrepancy)
    check(
        kind == accepts,
        f"discrepancy {c.discrepancy!r} compares {accepts} but feature map {c.feature_map!r} "
        f"produces {kind}; pick a matching pair",
    )
    check(
        not c.pool_networks or kind == "embedding",
        f"condense.pool_networks caches embeddings; feature map {c.feature_map!r} produces {kind}",
    )
    check(isinstance(c.real_target_params, dict), "condense.real_target_params must be a mapping of target options")
    if c.real_target != "auto":
        REAL_TARGETS.get(c.real_target)
        check_real_target_params(c.real_target, c.real_target_params)
        REAL_TARGETS.get(c.real_target).check_config(config)
    else:
        check(not c.real_target_params, "condense.real_target_params needs condense.real_target set to a target's name")
    check_choice("condense.labels", c.labels, LABEL_SOURCES)
    check(
        not c.soft_labels or c.labels in ("hard", "learned"),
        f"condense.soft_labels: true means labels: learned, but condense.labels is {c.labels!r}; drop soft_labels",
    )
    check(
        c.label_source != "learned" or (c.method == "matching" and kind == "gradients"),
        "condense.labels: learned (soft_labels: true) needs matching with a feature map whose features depend on the labels (gradients)",
    )
    _validate_teacher(c.teacher)
    _validate_robustness(config, kind)


def _validate_robustness(config: Config, kind: str) -> None:
    c, r = config.condense, config.condense.robustness
    if r.method is not None:
        check(
            r.method in ROBUSTNESS_TERMS,
            f"condense.robustness.method must be one of {', '.join(ROBUSTNESS_TERMS.names())} (or null); got {r.method!r}",
        )
        check(c.method == "matching", "condense.robustness is a term of the matching objective: condense.method must be matching")
        check(kind == "embedding", f"condense.robustness needs an embedding feature map; {c.feature_map!r} produces {kind}")
    check(0 < r.epsilon <= 1, f"condense.robustness.epsilon must lie in (0, 1] (pixel units); got {r.epsilon}")
    check(r.steps >= 1, f"condense.robustness.steps must be >= 1; got {r.steps}")
    check(r.step_size is None or r.step_size > 0, "condense.robustness.step_size must be > 0 (null: 2.5 x epsilon / steps)")
    check(r.weight >= 0, f"condense.robustness.weight must be >= 0; got {r.weight}")
    check_choice("condense.robustness.objective", r.objective, ROBUSTNESS_OBJECTIVES)


def _validate_teacher(t: TeacherConfig) -> None:
    MODELS.get(t.model)
    check(isinstance(t.model_params, dict), "condense.teacher.model_params must be a mapping of model options")
    check_model_options(t.model, t.model_params)
    check(t.weights is None or bool(t.weights.strip()), "condense.teacher.weights must be a file path or null")
    check(t.steps >= 1, "condense.teacher.steps must be at least 1")
    check(t.lr > 0 and t.batch_size >= 1, "condense.teacher.lr must be > 0 and condense.teacher.batch_size >= 1")
    check(t.temperature > 0, "condense.teacher.temperature must be > 0")
    check(t.augmentations >= 0, "condense.teacher.augmentations must be >= 0")


def _validate_evaluation(config: Config) -> None:
    e = config.evaluation
    for name in [e.model, *e.cross_models]:
        MODELS.get(name)
    check_choice("evaluation.protocol", e.protocol, tuple(EVALUATION_PROTOCOLS))
    check_choice("evaluation.precision", e.precision, PRECISIONS)
    check(e.runs >= 1, "evaluation.runs must be at least 1")
    check(e.epochs >= 1, "evaluation.epochs must be at least 1")
    check(e.lr > 0 and e.batch_size >= 1, "evaluation.lr must be > 0 and evaluation.batch_size >= 1")
    check(e.weight_decay >= 0 and 0 <= e.momentum < 1, "evaluation.weight_decay >= 0, momentum in [0, 1)")
    check_choice("evaluation.loss", e.loss, EVALUATION_LOSSES)
    check(e.temperature is None or e.temperature > 0, "evaluation.temperature must be > 0 (or null: the labels' own)")
    a = e.adversarial
    check(
        a.epsilon is None or 0 < a.epsilon <= 1,
        f"evaluation.adversarial.epsilon must lie in (0, 1] (pixel units; null: standard training); got {a.epsilon}",
    )
    check(a.steps >= 1, f"evaluation.adversarial.steps must be >= 1; got {a.steps}")
    check(a.step_size is None or a.step_size > 0, "evaluation.adversarial.step_size must be > 0 (null: 2.5 x epsilon / steps)")
    check(
        not e.online_relabel or config.condense.label_source == "teacher",
        "evaluation.online_relabel needs a teacher: set condense.labels: teacher",
    )
