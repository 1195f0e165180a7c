"""One config object, validated once, passed down.

A config is a YAML file whose top-level sections mirror the dataclasses below. The engine owns the
root keys (``seed``, ``device``, ``progress``) and the ``dataset``, ``condense`` and ``evaluation``
sections; every other section belongs to the layer that uses it (``federated`` to the Flower
side, ``continual`` to the Avalanche side, ``privacy`` to private release), which declares it
with :func:`register_config_section` and lists it under the ``fedcond.config_sections`` entry
point, so the engine finds it without importing that layer's code until a config is built.

Every key is checked: an unknown key, a value of the wrong type or out of range, or an unknown
component name raises :class:`~fedcond.errors.ConfigError` naming the key and the valid choices.
Command-line overrides use dotted keys: ``--set condense.ipc=10``. Validation has no side effects.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Protocol, TypeVar

import yaml

from fedcond.data.config import DatasetConfig
from fedcond.errors import ConfigError
from fedcond.values import InvalidValue, coerce, expected_text

__all__ = [
    "CondenseConfig",
    "Config",
    "ConfigSection",
    "DatasetConfig",
    "EvaluationConfig",
    "TeacherConfig",
    "apply_override",
    "config_sections",
    "register_config_section",
]

#: Entry-point group under which installed layers list their config sections.
SECTION_ENTRY_POINTS = "fedcond.config_sections"


@dataclass
class TeacherConfig:
    """The network whose softmax labels a set when ``condense.labels`` is ``teacher``."""

    #: Architecture (``fedcond.models``) and its options.
    model: str = "convnet"
    model_params: dict[str, Any] = field(default_factory=dict)
    #: A teacher file written by ``fedcond teacher`` (or :func:`fedcond.labels.save_teacher`);
    #: None: fedcond trains the teacher on the data being condensed, and its time counts.
    weights: str | None = None
    #: Training budget on the real data: SGD steps (momentum 0.9, weight decay 5e-4, lr x0.1 at
    #: half-way) on random batches of ``batch_size``, under the run's DSA when ``dsa``.
    steps: int = 500
    lr: float = 0.01
    batch_size: int = 256
    dsa: bool = True
    #: Softmax temperature of the labels the teacher gives.
    temperature: float = 1.0
    #: Average the teacher's softmax over this many DSA draws of each image (0: the image as stored).
    augmentations: int = 0


@dataclass
class RobustnessConfig:
    """A term of the matching objective that asks for adversarial robustness (``fedcond.condense.robustness``):
    off while ``method`` is null."""

    #: ``adversarial-targets`` (the real images PGD-perturbed against the iteration's network before
    #: their features are taken, ROME-style) or ``input-gradient`` (a penalty on the input-gradient
    #: norm of the networks at the synthetic images); null: none.
    method: str | None = None
    #: PGD radius in pixel units (images in [0, 1]), its steps and step (null: 2.5 x epsilon / steps).
    epsilon: float = 0.1
    steps: int = 10
    step_size: float | None = None
    #: Weight of a penalty term (``input-gradient``); a real-side perturbation has none.
    weight: float = 1.0
    #: What the attack and the penalty differentiate: ``features`` (the network's embedding: its
    #: displacement, or its projection on a random direction) or ``logits`` (the cross-entropy of
    #: the network's own classifier, e.g. a trained-pool network's).
    objective: str = "features"


@dataclass
class CondenseConfig:
    """How the synthetic set is made."""

    #: ``matching`` (optimise against a discrepancy) or a coreset: ``random``, ``herding``, ``k-center``.
    method: str = "matching"
    #: Feature map phi (see ``fedcond.features``): ``random-embedding`` (DM, M3D), ``gradients`` (DC/DSA), ...
    feature_map: str = "random-embedding"
    #: Discrepancy D (see ``fedcond.discrepancies``): ``mmd-linear``, ``mmd-gaussian``, ...
    discrepancy: str = "mmd-gaussian"
    #: Network behind the feature map (and behind herding / k-center features).
    model: str = "convnet"
    #: Options of ``model`` (e.g. ``{width: 64}``): the random networks' architecture.
    model_params: dict[str, Any] = field(default_factory=dict)
    #: Synthetic images per class.
    ipc: int = 10
    #: Optimisation steps over the synthetic pixels.
    iterations: int = 1000
    #: Wall-clock budget of a matching run in seconds (setup included): it stops after the iteration
    #: that crosses it, and the set records the iterations it ran (``iterations_run``) and
    #: ``time_budget_hit``. None: always ``iterations``. A device-dependent stop, so two machines
    #: may give different sets; federated clients use it as their per-client time budget.
    max_seconds: float | None = None
    #: ``real`` (random real samples of the class), ``herding`` or ``k-center`` (the samples those
    #: coresets select), or ``noise`` (standard normal pixels).
    init: str = "real"
    #: ``sgd`` or ``adam`` over the pixels.
    optimizer: str = "sgd"
    lr_images: float = 1.0
    momentum: float = 0.5
    #: Real images drawn per class per iteration (with a pool: per class per pool network).
    batch_real: int = 256
    #: Match against cached real statistics of this many random networks, embedded once (0: a fresh
    #: network and real batch every iteration, the reference DM loop). Embedding feature maps only.
    pool_networks: int = 0
    #: What the synthetic set is matched against (``fedcond.condense.targets``): ``auto`` (``pool``
    #: when ``pool_networks`` is set, else ``fresh``), ``fresh``, ``pool`` or ``trained-pool``
    #: (networks trained briefly on the real data, DANCE/IDM-style).
    real_target: str = "auto"
    #: Options of ``real_target`` (e.g. ``{train_steps: 100, snapshots: 4}`` for ``trained-pool``).
    real_target_params: dict[str, Any] = field(default_factory=dict)
    #: Embed real and synthetic images through ``torch.compile`` (embedding feature maps): compiled
    #: once per process and shared by every fresh network; its cost is inside ``condense_seconds``.
    compile: bool = False
    #: Store each image as factor x factor tiles, each up-sampled to a training image (1: off).
    factor: int = 1
    #: Where the labels come from (``fedcond.labels.LABEL_SOURCES``): ``hard`` (the class of each
    #: image), ``learned`` (soft labels optimised next to the pixels; gradient feature maps) or
    #: ``teacher`` (the softmax of ``teacher`` on the final images).
    labels: str = "hard"
    #: The teacher of ``labels: teacher``.
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    #: Older spelling of ``labels: learned``.
    soft_labels: bool = False
    lr_labels: float = 0.01
    #: Differentiable siamese augmentation, same random parameters for the real and synthetic batch.
    dsa: bool = True
    dsa_strategy: str = "color_crop_cutout_flip_scale_rotate"
    #: ``single``: one operation of the strategy per draw, as the reference code does; ``all``: every one, in order.
    dsa_mode: str = "single"
    #: Keyword arguments of the discrepancy (e.g. ``bandwidths`` for ``mmd-gaussian``).
    discrepancy_params: dict[str, Any] = field(default_factory=dict)
    #: Keyword arguments of the feature map (e.g. ``inner_steps`` for ``gradients``).
    feature_params: dict[str, Any] = field(default_factory=dict)
    #: Save a resumable checkpoint every N iterations (0: never).
    checkpoint_every: int = 0
    #: A robustness term of the objective (matching only); see :class:`RobustnessConfig`.
    robustness: RobustnessConfig = field(default_factory=RobustnessConfig)

    @property
    def label_source(self) -> str:
        """``labels``, with the older ``soft_labels: true`` read as ``learned``."""
        return "learned" if self.soft_labels else self.labels


@dataclass
class AdversarialTrainingConfig:
    """PGD adversarial training of the evaluation networks (Madry et al.): off while ``epsilon`` is null."""

    #: L-infinity radius in pixel units (images in [0, 1]); null: standard training.
    epsilon: float | None = None
    #: PGD steps per batch, each of ``step_size`` pixel units (null: 2.5 x epsilon / steps), from a
    #: random start in the ball.
    steps: int = 10
    step_size: float | None = None


@dataclass
class EvaluationConfig:
    """The field's protocol: fresh networks trained on the synthetic set only."""

    model: str = "convnet"
    runs: int = 3
    epochs: int = 300
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    batch_size: int = 256
    dsa: bool = True
    #: More architectures to evaluate the same set on (cross-architecture generalisation).
    cross_models: list[str] = field(default_factory=list)
    #: ``full``: ``runs`` networks x ``epochs`` as given; ``quick``: the tuning protocol of
    #: :data:`fedcond.evaluation.EVALUATION_PROTOCOLS` (fewer networks and epochs; never for headline tables).
    protocol: str = "full"
    #: ``auto`` (bf16 autocast on CUDA, fp32 on the CPU), ``fp32`` or ``bf16`` (fedcond.device.PRECISIONS).
    precision: str = "auto"
    #: Train and test through ``torch.compile`` (compiled once per process and shared by every fresh
    #: network of the same architecture and input shape). Pays when a process trains several networks.
    compile: bool = False
    #: ``ce``: cross-entropy to the stored labels (hard, or soft as distributions); ``kd``: knowledge
    #: distillation, ``T² · KL(labels ‖ softmax(student / T))`` at ``temperature``.
    loss: str = "ce"
    #: KD temperature; None: the labels' own (a teacher's ``temperature``, else 1).
    temperature: float | None = None
    #: Relabel every augmented batch with the teacher's softmax while training (SRe2L/RDED-style):
    #: a different protocol from stored labels, needs the teacher at hand, reported as ``online-teacher``.
    online_relabel: bool = False
    #: PGD adversarial training of the protocol's networks on the set (``fedcond.adversarial``): a
    #: different protocol, reported with its settings in the evaluation's ``adversarial``.
    adversarial: AdversarialTrainingConfig = field(default_factory=AdversarialTrainingConfig)


class ConfigSection(Protocol):
    """A layer's section of the root config: a dataclass with a ``validate`` method.

    ``validate`` checks the section's values, and any rule that joins it to other sections (the
    privacy section reads ``condense``), raising :class:`ConfigError`; it changes nothing.
    """

    def validate(self, config: Config) -> None: ...


S = TypeVar("S", bound=type)
_SECTIONS: dict[str, type] = {}
_discovered = False


def register_config_section(name: str) -> Callable[[S], S]:
    """Class decorator: the dataclass becomes the root config's section ``name``.

    Parameters
    ----------
    name
        The section's key in YAML and the attribute of :class:`Config` that holds it.
    """

    def decorator(cls: S) -> S:
        if not dataclasses.is_dataclass(cls) or not callable(getattr(cls, "validate", None)):
            raise TypeError(f"config section {name!r} must be a dataclass with a validate(config) method")
        if name in _ENGINE_KEYS or (name in _SECTIONS and _SECTIONS[name] is not cls):
            raise ValueError(f"config section {name!r} is already declared")
        _SECTIONS[name] = cls
        return cls

    return decorator


def config_sections() -> dict[str, type]:
    """The sections layers declared (loading the installed ones named by the entry point), by name."""
    global _discovered
    if not _discovered:
        _discovered = True
        for point in entry_points(group=SECTION_ENTRY_POINTS):
            if point.name in _SECTIONS:
                continue
            try:
                cls = point.load()
            except Exception as exc:  # a broken third-party layer: one line, naming it
                raise ConfigError(f"config section {point.name!r} ({point.value}) cannot be loaded: {exc}") from None
            _SECTIONS.setdefault(point.name, cls)
    return dict(_SECTIONS)


@dataclass(init=False)
class Config:
    """The whole experiment: the engine's keys and sections, and every layer's section.

    Parameters
    ----------
    seed
        The run seed; every random draw of the run derives from it (:mod:`fedcond.seeds`).
    device
        ``auto`` (CUDA when present), ``cpu``, ``cuda`` or ``cuda:N``.
    progress
        Show progress bars.
    dataset, condense, evaluation
        The engine's sections (defaults when omitted).
    sections
        The layers' sections by name (defaults for those omitted); a section may also be passed
        by its name, ``Config(privacy=PrivacyConfig(epsilon=1.0))``, which is also what
        :func:`dataclasses.replace` does.
    """

    seed: int = 0
    device: str = "auto"
    progress: bool = True
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    condense: CondenseConfig = field(default_factory=CondenseConfig)
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)
    #: The layers' sections by name; each is also an attribute (``config.federated``).
    sections: dict[str, Any] = field(default_factory=dict)

    def __init__(
        self,
        seed: int = 0,
        device: str = "auto",
        progress: bool = True,
        dataset: DatasetConfig | None = None,
        condense: CondenseConfig | None = None,
        evaluation: EvaluationConfig | None = None,
        sections: dict[str, Any] | None = None,
        **named_sections: Any,
    ) -> None:
        self.seed, self.device, self.progress = seed, device, progress
        self.dataset = dataset if dataset is not None else DatasetConfig()
        self.condense = condense if condense is not None else CondenseConfig()
        self.evaluation = evaluation if evaluation is not None else EvaluationConfig()
        known = config_sections()
        given = {**(sections or {}), **named_sections}
        unknown = sorted(set(given) - set(known))
        if unknown:
            raise TypeError(f"Config has no section {unknown[0]!r}; sections: {', '.join(known) or 'none'}")
        self.sections = {name: given[name] if name in given else cls() for name, cls in known.items()}

    def __getattr__(self, name: str) -> Any:
        # Only reached when ordinary lookup fails: a layer's section by name (config.privacy).
        sections = self.__dict__.get("sections")
        if name.startswith("_") or sections is None or name not in sections:
            raise AttributeError(f"{type(self).__name__!r} object has no attribute or config section {name!r}")
        return sections[name]

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> Config:
        """Build and validate a config from plain data (a parsed YAML document)."""
        config = _build_root(data or {})
        config.validate()
        return config

    @classmethod
    def load(cls, path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
        """Read a YAML file (or the defaults when ``path`` is None) and apply ``key=value`` overrides."""
        data: dict[str, Any] = {}
        if path is not None:
            path = Path(path)
            try:
                text = path.read_bytes().decode("utf-8")
            except OSError as exc:
                raise ConfigError(f"cannot read config {path}: {exc.strerror or exc}") from None
            except UnicodeDecodeError as exc:
                raise ConfigError(f"config {path} is not UTF-8 text (byte {exc.start} is 0x{exc.object[exc.start]:02x})") from None
            try:
                loaded = yaml.safe_load(text)
            except yaml.YAMLError as exc:
                raise ConfigError(f"config {path} is not valid YAML: {str(exc).splitlines()[0]}") from None
            if loaded is not None and not isinstance(loaded, dict):
                raise ConfigError(f"config {path} must be a mapping of sections, got {type(loaded).__name__}")
            data = loaded or {}
        for item in overrides or []:
            apply_override(data, item)
        return cls.from_dict(data)

    def to_dict(self) -> dict[str, Any]:
        """Plain data: the root keys, the engine's sections, then every layer's section."""
        data: dict[str, Any] = {}
        for name in _ENGINE_KEYS:
            value = getattr(self, name)
            data[name] = dataclasses.asdict(value) if dataclasses.is_dataclass(value) else value
        for name, section in self.sections.items():
            data[name] = dataclasses.asdict(section)
        return data

    def replace(self, **changes: Any) -> Config:
        """A copy with root keys or whole sections (engine or layer) replaced; not validated."""
        return dataclasses.replace(self, **changes)

    # ------------------------------------------------------------------ validation
    def validate(self) -> None:
        """Check values and names against the registries; raise :class:`ConfigError`.

        The engine checks its own keys and sections; each layer's section checks itself. A layer's
        section left at its defaults is not checked (its layer's tests check its defaults): checking
        ``federated`` loads Flower, which a config that only condenses has no reason to do.
        """
        from fedcond.config_checks import validate_engine

        validate_engine(self)
        for name, section in self.sections.items():
            if section != type(section)():
                section.validate(self)
        if self.condense.method == "matching":
            from fedcond.condense.targets import select_real_target

            # A layer's section may claim the real-side target (privacy mode does): a claim that
            # contradicts condense.real_target is found here, before any data is loaded.
            select_real_target(self)


_ENGINE_KEYS = ("seed", "device", "progress", "dataset", "condense", "evaluation")


def apply_override(data: dict[str, Any], item: str) -> None:
    """Apply one ``dotted.key=value`` override; the value is parsed as YAML (``10``, ``true``, ``[a, b]``)."""
    key, sep, raw = item.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"override {item!r} must look like key=value, e.g. condense.ipc=10")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    node = data
    parts = key.split(".")
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"override {key!r}: {part!r} is not a section")
        node = child
    node[parts[-1]] = value


def _build_root(data: Any) -> Config:
    if not isinstance(data, dict):
        raise ConfigError(f"config must be a mapping, got {_typename(data)}")
    hints = typing.get_type_hints(Config)
    sections = config_sections()
    valid = [*_ENGINE_KEYS, *sections]
    unknown = [key for key in data if key not in valid]
    if unknown:
        raise ConfigError(f"unknown config key {unknown[0]!r}; valid keys in config: {', '.join(valid)}")
    kwargs: dict[str, Any] = {}
    layers: dict[str, Any] = {}
    for name, value in data.items():
        if name in sections:
            layers[name] = _build(sections[name], value if value is not None else {}, f"{name}.")
        elif dataclasses.is_dataclass(hints[name]):
            kwargs[name] = _build(hints[name], value if value is not None else {}, f"{name}.")
        else:
            kwargs[name] = _coerce(value, hints[name], name)
    return Config(**kwargs, sections=layers)


def _build(cls: type, data: Any, prefix: str) -> Any:
    """Turn a mapping into dataclass ``cls``, checking keys and coercing values to their hints."""
    where = prefix.rstrip(".") or "config"
    if not isinstance(data, dict):
        raise ConfigError(f"{where} must be a mapping, got {_typename(data)}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"unknown config key {prefix}{unknown[0]!r}; valid keys in {where}: {', '.join(fields)}")
    kwargs = {}
    for name, value in data.items():
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            kwargs[name] = _build(hint, value if value is not None else {}, f"{prefix}{name}.")
        else:
            kwargs[name] = _coerce(value, hint, f"{prefix}{name}")
    return cls(**kwargs)


def _coerce(value: Any, hint: Any, key: str) -> Any:
    try:
        return coerce(value, hint)
    except InvalidValue as exc:
        raise ConfigError(f"{key} must be {expected_text(exc, hint)}, got {exc.shown or repr(value)}") from None


def _typename(value: Any) -> str:
    return "nothing" if value is None else type(value).__name__
