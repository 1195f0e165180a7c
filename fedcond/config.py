"""One config object, validated once, passed down.

A config is a YAML file whose top-level sections mirror the dataclasses below. Every key is
checked: an unknown key, a value of the wrong type or out of range, or an unknown component name
raises :class:`~fedcond.errors.ConfigError` naming the key and the valid choices.
Command-line overrides use dotted keys: ``--set condense.ipc=10``.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

import yaml

from fedcond.errors import ConfigError


@dataclass
class DatasetConfig:
    """Which dataset, and where its files are."""

    name: str = "digits"
    #: Folder holding the dataset's files (IDX files, CIFAR batches, an image folder, an .npz file).
    data_root: str | None = None
    #: Allow torchvision to download when the files are missing (needs internet).
    download: bool = False
    #: Share of samples held out for testing where a dataset has no official split (digits, folders).
    test_fraction: float = 0.25
    #: Seed of that fixed stratified split; kept apart from ``seed`` so runs share one test set.
    split_seed: int = 0


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
    #: ``real`` (random real samples of the class) or ``noise`` (standard normal pixels).
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
    #: Store each image as factor x factor tiles, each up-sampled to a training image (1: off).
    factor: int = 1
    #: Learn soft labels (``[M, K]`` logits) next to the pixels.
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


@dataclass
class FederatedConfig:
    """``fedcond federate``: the clients, their partitions, the strategies compared and their budgets."""

    #: Strategies run one after another on the same partitions: fedcondense, fedcondense-iterative,
    #: hybrid, fedavg, fedprox.
    strategies: list[str] = field(default_factory=lambda: ["fedcondense", "fedavg"])
    #: Simulated clients (Flower SuperNodes); each holds one partition of the training split.
    num_clients: int = 10
    #: iid, dirichlet (``alpha``) or pathological (``classes_per_client``): flwr-datasets partitioners.
    partitioner: str = "dirichlet"
    alpha: float = 0.5
    classes_per_client: int = 2
    #: Dirichlet partitions are redrawn until every client holds at least this many samples.
    min_partition_size: int = 10
    #: Rounds of the iterative strategies (fedavg, fedprox, hybrid, fedcondense-iterative).
    rounds: int = 20
    #: Local training of fedavg/fedprox (and hybrid's rounds after the first): epochs over the
    #: client's partition, SGD with these settings.
    local_epochs: int = 1
    local_batch_size: int = 32
    local_lr: float = 0.01
    local_momentum: float = 0.9
    local_weight_decay: float = 5e-4
    #: FedProx's proximal weight mu.
    proximal_mu: float = 0.01
    #: fedcondense-iterative: share of condensation iterations that use a fresh random network
    #: instead of the current global model, and how the server uses each round's sets.
    random_mix: float = 0.5
    server_update: str = "finetune"
    #: Server-side training of the global model on the union of the synthetic sets: epochs (the
    #: rest of the schedule is ``evaluation``'s); fine-tuning rounds use ``finetune_epochs``.
    server_epochs: int = 300
    finetune_epochs: int = 50
    #: Most images per class a client may upload; null allows ``ipc * factor**2``.
    max_per_class: int | None = None
    #: Drop uploads whose labels disagree with a classifier fitted on the other clients' sets.
    defence: bool = True
    #: A set is dropped when its agreement is below this fraction of the median agreement.
    defence_ratio: float = 0.5
    #: Resources of each simulated client (Flower's ``client_resources``).
    num_cpus: float = 1.0
    num_gpus: float = 0.0
    #: Seconds the server waits for a round's replies; late clients are recorded as failed.
    timeout: float = 86_400.0


@dataclass
class PrivacyConfig:
    """Differentially private condensation: off while ``epsilon`` is null (epsilon = infinity)."""

    #: Target (epsilon, delta) of the release, under add-or-remove-one adjacency; the noise is
    #: calibrated to it with Flower's RDP accountant.
    epsilon: float | None = None
    delta: float = 1e-5
    #: L2 bound of each sample's embeddings (all pool networks together); the class count rides along.
    clip: float = 1.0
    #: ``once``: one release over every sample for a pool of ``condense.pool_networks`` networks;
    #: ``per-iteration``: a fresh network, Poisson sample (``sample_rate``) and release every iteration.
    mode: str = "once"
    sample_rate: float = 0.01
    #: ``fedcond audit``: members and non-members drawn (each, at most), and the epochs of the
    #: reference model trained on the members.
    audit_samples: int = 5000
    audit_reference_epochs: int = 50


@dataclass
class ContinualConfig:
    """``fedcond continual``: the class-incremental benchmark, the methods compared and their budgets."""

    #: Methods run on the same benchmark, each from the same initial model: condensed,
    #: condensed-gdumb, replay, class-balanced, herding, gdumb, naive.
    methods: list[str] = field(
        default_factory=lambda: ["condensed", "condensed-gdumb", "replay", "class-balanced", "herding", "gdumb"]
    )
    #: Experiences: the dataset's classes split evenly (mnist/fashion-mnist use Avalanche's
    #: SplitMNIST/SplitFMNIST, other datasets its class_incremental_benchmark over tensors).
    experiences: int = 5
    #: Fixed class order, or null: each seed draws its own.
    class_order: list[int] | None = None
    #: The model every method trains (a fedcond model name) and its constructor's options, e.g.
    #: ``{norm: batchnorm}``: the instance-norm ConvNet trains unstably on 8x8 digits in small
    #: continual batches.
    model: str = "convnet"
    model_params: dict[str, Any] = field(default_factory=dict)
    #: Replay memory budget in samples, the same for every method that keeps one.
    mem_size: int = 100
    #: Seeds: each gives its own class order (unless fixed), initial model and memory.
    seeds: int = 3
    #: Training on each experience: epochs and SGD settings; the minibatch of new data and, for
    #: replay methods, of memory samples (the same for all of them).
    train_epochs: int = 1
    train_mb_size: int = 32
    batch_size_mem: int = 32
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 0.0
    #: GDumb-style methods (gdumb, condensed-gdumb) retrain from scratch on the memory for this many epochs.
    gdumb_epochs: int = 50
    #: Augment every method's training minibatches with DSA (``condense.dsa_strategy``/``dsa_mode``),
    #: as condensed sets are evaluated; off: Avalanche's plain training.
    dsa: bool = False
    #: Condensed memory: condense through random networks (``random``, the condense section's feature
    #: map) or the current model mixed with random ones (``model``); shrink older classes by
    #: condensing again from what is held (``recondense``) or by herding selection (``select``).
    features: str = "random"
    shrink: str = "recondense"
    random_fraction: float = 0.5


@dataclass
class Config:
    """The whole experiment."""

    seed: int = 0
    #: ``auto`` (CUDA when present), ``cpu``, ``cuda`` or ``cuda:N``.
    device: str = "auto"
    #: Show progress bars.
    progress: bool = True
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    condense: CondenseConfig = field(default_factory=CondenseConfig)
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)
    federated: FederatedConfig = field(default_factory=FederatedConfig)
    continual: ContinualConfig = field(default_factory=ContinualConfig)
    privacy: PrivacyConfig = field(default_factory=PrivacyConfig)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> "Config":
        """Build and validate a config from plain data (a parsed YAML document)."""
        config = _build(cls, data or {}, prefix="")
        config.validate()
        return config

    @classmethod
    def load(cls, path: str | Path | None = None, overrides: list[str] | None = None) -> "Config":
        """Read a YAML file (or the defaults when ``path`` is None) and apply ``key=value`` overrides."""
        data: dict[str, Any] = {}
        if path is not None:
            path = Path(path)
            try:
                text = path.read_text()
            except OSError as exc:
                raise ConfigError(f"cannot read config {path}: {exc.strerror or exc}") from None
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
        return dataclasses.asdict(self)

    # ------------------------------------------------------------------ validation
    def validate(self) -> None:
        """Check values and names against the registries; raise :class:`ConfigError`."""
        # Imported here: the registries import torch and models, the config module stays light.
        from fedcond.augment import DSA_MODES, validate_strategy
        from fedcond.condense import CONDENSE_METHODS
        from fedcond.data import DATASETS
        from fedcond.device import resolve_device
        from fedcond.discrepancies import DISCREPANCIES
        from fedcond.features import FEATURE_MAPS
        from fedcond.models import MODELS, build_model

        resolve_device(self.device)
        DATASETS.get(self.dataset.name)
        c, e = self.condense, self.evaluation
        CONDENSE_METHODS.get(c.method)
        FEATURE_MAPS.get(c.feature_map)
        DISCREPANCIES.get(c.discrepancy)
        for name in [c.model, e.model, *e.cross_models]:
            MODELS.get(name)
        _check(isinstance(c.model_params, dict), "condense.model_params must be a mapping of model options")
        build_model(c.model, channels=1, num_classes=2, image_size=(64, 64), **c.model_params)  # unknown options fail here
        _check(0 < self.dataset.test_fraction < 1, "dataset.test_fraction must be in (0, 1)")
        _check(c.ipc >= 1, "condense.ipc must be at least 1")
        _check(c.iterations >= 0, "condense.iterations must be >= 0")
        _check(c.batch_real >= 1, "condense.batch_real must be at least 1")
        _check(c.lr_images > 0, "condense.lr_images must be > 0")
        _check(c.lr_labels > 0, "condense.lr_labels must be > 0")
        _check(0 <= c.momentum < 1, "condense.momentum must be in [0, 1)")
        _check(c.checkpoint_every >= 0, "condense.checkpoint_every must be >= 0")
        _check(c.pool_networks >= 0, "condense.pool_networks must be >= 0")
        _check(c.factor >= 1, "condense.factor must be at least 1")
        _choice("condense.init", c.init, ("real", "noise"))
        _choice("condense.optimizer", c.optimizer, ("sgd", "adam"))
        _choice("condense.dsa_mode", c.dsa_mode, DSA_MODES)
        from fedcond.discrepancies import build_discrepancy, discrepancy_accepts
        from fedcond.features import check_feature_params, feature_kind

        validate_strategy(c.dsa_strategy)
        build_discrepancy(c.discrepancy, **c.discrepancy_params)  # checks the parameters
        check_feature_params(c.feature_map, c.feature_params)
        kind, accepts = feature_kind(c.feature_map), discrepancy_accepts(c.discrepancy)
        _check(
            kind == accepts,
            f"discrepancy {c.discrepancy!r} compares {accepts} but feature map {c.feature_map!r} "
            f"produces {kind}; pick a matching pair",
        )
        _check(
            not c.pool_networks or kind == "embedding",
            f"condense.pool_networks caches embeddings; feature map {c.feature_map!r} produces {kind}",
        )
        _check(
            not c.soft_labels or kind == "gradients",
            "condense.soft_labels needs a feature map whose features depend on the labels (gradients)",
        )
        _check(e.runs >= 1, "evaluation.runs must be at least 1")
        _check(e.epochs >= 1, "evaluation.epochs must be at least 1")
        _check(e.lr > 0 and e.batch_size >= 1, "evaluation.lr must be > 0 and evaluation.batch_size >= 1")
        _check(e.weight_decay >= 0 and 0 <= e.momentum < 1, "evaluation.weight_decay >= 0, momentum in [0, 1)")
        self._validate_federated()
        self._validate_continual()
        self._validate_privacy()

    def _validate_federated(self) -> None:
        from strategies import STRATEGIES

        f = self.federated
        _check(len(f.strategies) >= 1, "federated.strategies must name at least one strategy")
        for name in f.strategies:
            STRATEGIES.get(name)
        _check(len(set(f.strategies)) == len(f.strategies), "federated.strategies names a strategy twice")
        _check(f.num_clients >= 1, "federated.num_clients must be at least 1")
        _choice("federated.partitioner", f.partitioner, ("iid", "dirichlet", "pathological"))
        _check(f.alpha > 0, "federated.alpha must be > 0")
        _check(f.classes_per_client >= 1, "federated.classes_per_client must be at least 1")
        _check(f.min_partition_size >= 0, "federated.min_partition_size must be >= 0")
        _check(f.rounds >= 1, "federated.rounds must be at least 1")
        _check(f.local_epochs >= 1 and f.local_batch_size >= 1, "federated.local_epochs and local_batch_size must be >= 1")
        _check(f.local_lr > 0 and 0 <= f.local_momentum < 1, "federated.local_lr must be > 0, local_momentum in [0, 1)")
        _check(f.local_weight_decay >= 0 and f.proximal_mu >= 0, "federated.local_weight_decay and proximal_mu must be >= 0")
        _check(0 <= f.random_mix <= 1, "federated.random_mix must be in [0, 1]")
        _choice("federated.server_update", f.server_update, ("finetune", "retrain"))
        _check(f.server_epochs >= 1 and f.finetune_epochs >= 1, "federated.server_epochs and finetune_epochs must be >= 1")
        _check(f.max_per_class is None or f.max_per_class >= 1, "federated.max_per_class must be null or >= 1")
        _check(0 < f.defence_ratio < 1, "federated.defence_ratio must be in (0, 1)")
        _check(f.num_cpus > 0 and f.num_gpus >= 0, "federated.num_cpus must be > 0 and num_gpus >= 0")
        _check(f.timeout > 0, "federated.timeout must be > 0")


    def _validate_continual(self) -> None:
        from fedcond.continual.methods import CONTINUAL_METHODS

        k = self.continual
        _check(len(k.methods) >= 1, "continual.methods must name at least one method")
        for name in k.methods:
            CONTINUAL_METHODS.get(name)
        _check(len(set(k.methods)) == len(k.methods), "continual.methods names a method twice")
        _check(k.experiences >= 1, "continual.experiences must be at least 1")
        from fedcond.models import MODELS

        MODELS.get(k.model)
        _check(
            k.class_order is None or len(set(k.class_order)) == len(k.class_order),
            "continual.class_order names a class twice",
        )
        _check(k.mem_size >= 1, "continual.mem_size must be at least 1")
        _check(k.seeds >= 1, "continual.seeds must be at least 1")
        _check(k.train_epochs >= 1 and k.gdumb_epochs >= 1, "continual.train_epochs and gdumb_epochs must be >= 1")
        _check(k.train_mb_size >= 1 and k.batch_size_mem >= 1, "continual.train_mb_size and batch_size_mem must be >= 1")
        _check(k.lr > 0 and 0 <= k.momentum < 1 and k.weight_decay >= 0, "continual.lr must be > 0, momentum in [0, 1), weight_decay >= 0")
        _choice("continual.features", k.features, ("random", "model"))
        _choice("continual.shrink", k.shrink, ("recondense", "select"))
        _check(0 <= k.random_fraction <= 1, "continual.random_fraction must be in [0, 1]")


    def _validate_privacy(self) -> None:
        p, c = self.privacy, self.condense
        _check(0 < p.delta < 1, "privacy.delta must be in (0, 1)")
        _check(p.clip > 0, "privacy.clip must be > 0")
        _choice("privacy.mode", p.mode, ("once", "per-iteration"))
        _check(0 < p.sample_rate <= 1, "privacy.sample_rate must be in (0, 1]")
        _check(p.audit_samples >= 10 and p.audit_reference_epochs >= 1, "privacy.audit_samples must be >= 10, audit_reference_epochs >= 1")
        if p.epsilon is None:
            return
        _check(0 < p.epsilon < float("inf"), "privacy.epsilon must be a positive finite number (null: no privacy mode)")
        _check(c.method == "matching", "privacy mode condenses by matching; condense.method must be matching")
        _check(
            c.init != "real",
            "privacy mode refuses condense.init: real (the set would start from, and publish, real images); use noise",
        )
        _check(c.discrepancy == "mmd-linear", "privacy mode releases noised class means: condense.discrepancy must be mmd-linear")
        _check(
            c.feature_map in ("random-embedding", "pixels"),
            "privacy mode needs a data-independent feature map: random-embedding or pixels",
        )
        _check(c.checkpoint_every == 0, "privacy mode does not checkpoint (a resumed run would release again); set condense.checkpoint_every 0")
        if p.mode == "once":
            _check(c.pool_networks >= 1, "privacy.mode once releases statistics for a pool: set condense.pool_networks >= 1")
        else:
            _check(c.pool_networks == 0, "privacy.mode per-iteration draws a fresh network each iteration: set condense.pool_networks 0")


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


def _choice(key: str, value: str, choices: tuple[str, ...]) -> None:
    _check(value in choices, f"{key} must be one of {', '.join(choices)}; got {value!r}")


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


def _build(cls: type, data: Any, prefix: str) -> Any:
    """Recursively turn a mapping into dataclass ``cls``, checking keys and types."""
    where = prefix.rstrip(".") or "config"
    if not isinstance(data, dict):
        raise ConfigError(f"{where} must be a mapping, got {_typename(data)}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(
            f"unknown config key {prefix}{unknown[0]!r}; valid keys in {where}: {', '.join(fields)}"
        )
    kwargs = {}
    for name, value in data.items():
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            kwargs[name] = _build(hint, value if value is not None else {}, f"{prefix}{name}.")
        else:
            kwargs[name] = _coerce(value, hint, f"{prefix}{name}")
    return cls(**kwargs)


def _coerce(value: Any, hint: Any, key: str) -> Any:
    origin = typing.get_origin(hint)
    if origin in (Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _coerce(value, option, key)
            except ConfigError as exc:
                errors.append(exc)
        raise errors[0]
    if origin is list:
        if not isinstance(value, list):
            if isinstance(value, str):  # "a,b" from the command line
                value = [v.strip() for v in value.split(",") if v.strip()]
            else:
                raise ConfigError(f"{key} must be a list, got {_typename(value)}")
        (item_type,) = typing.get_args(hint)
        return [_coerce(v, item_type, key) for v in value]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key} must be a mapping, got {_typename(value)}")
        return dict(value)
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key} must be true or false, got {value!r}")
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{key} must be an integer, got {value!r}")
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads "1e-3" as a string
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"{key} must be a number, got {value!r}")
    if hint is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{key} must be a string, got {value!r}")
    return value


def _typename(value: Any) -> str:
    return "nothing" if value is None else type(value).__name__
