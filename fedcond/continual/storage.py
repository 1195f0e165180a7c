"""What the condensed replay memory keeps: an Avalanche storage policy holding synthetic sets.

Mirrors Avalanche's split between storage policies (what is kept) and plugins (when it is used):
:class:`CondensedBuffer` only decides the memory's content; :mod:`fedcond.continual.plugins`
wires it into training. The condenser itself knows nothing about Avalanche: this module turns an
experience into an :class:`~fedcond.data.base.ImageDataset`, calls :func:`fedcond.condense`, and
turns the synthetic images back into an Avalanche dataset with the benchmark's item layout.
"""

from __future__ import annotations

import copy
import dataclasses
import time

import torch
from avalanche.benchmarks import DatasetExperience
from avalanche.benchmarks.utils import AvalancheDataset, _make_taskaware_tensor_classification_dataset
from avalanche.benchmarks.utils.classification_dataset import ClassificationDataset
from avalanche.benchmarks.utils.data_attribute import DataAttribute
from avalanche.training.storage_policy import ExemplarsBuffer, HerdingSelectionStrategy
from avalanche.training.templates import SupervisedTemplate
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from fedcond.config import Config
from fedcond.data.base import ImageDataset
from fedcond.device import resolve_device
from fedcond.errors import ConfigError, DataError
from fedcond.seeds import derive_seed

FEATURE_SOURCES = ("random", "model")
SHRINK_MODES = ("recondense", "select")
BUDGETS = ("images", "pixels")
#: fedcond's coreset condensers: they select real samples and ignore ``condense.factor``.
SELECTION_METHODS = ("random", "herding", "k-center")


@dataclasses.dataclass
class ExperienceData:
    """An experience's samples as tensors, in the space the model sees them (eval transforms)."""

    images: torch.Tensor
    labels: torch.Tensor
    task_labels: torch.Tensor | None  # None when the benchmark's items are (x, y)


def experience_tensors(dataset: AvalancheDataset, batch_size: int = 512) -> ExperienceData:
    """Read an Avalanche experience dataset into tensors, checking it is an image classification set.

    The eval transform group is used: the memory must hold what the model is fed, not one random
    augmentation of it (training-time augmentation still applies to the memory's batches).
    """
    if getattr(dataset, "targets", None) is None:
        raise DataError("condensed memory needs a classification benchmark: the experience's dataset has no targets")
    if len(dataset) == 0:
        return ExperienceData(torch.empty(0), torch.empty(0, dtype=torch.int64), None)
    view = dataset.eval() if hasattr(dataset, "eval") else dataset
    loader = DataLoader(view, batch_size=batch_size, shuffle=False, collate_fn=getattr(view, "collate_fn", None))
    images, labels, tasks = [], [], []
    width = None
    for batch in loader:
        if not isinstance(batch, (list, tuple)) or len(batch) < 2:
            raise DataError("condensed memory needs (x, y[, task]) items; the experience's dataset yields something else")
        width = len(batch)
        images.append(torch.as_tensor(batch[0]))
        labels.append(torch.as_tensor(batch[1]))
        if width > 2:
            tasks.append(torch.as_tensor(batch[2]))
    x, y = torch.cat(images), torch.cat(labels)
    if x.ndim != 4 or not x.is_floating_point():
        raise DataError(f"condensed memory condenses images [N, C, H, W] (float); the benchmark yields {x.dtype} {tuple(x.shape)}")
    if y.ndim != 1 or y.is_floating_point():
        raise DataError("condensed memory needs integer class labels; the benchmark yields " + f"{y.dtype} {tuple(y.shape)}")
    if int(y.min()) < 0:
        raise DataError(f"class labels must be >= 0, found {int(y.min())}")
    return ExperienceData(x.float().contiguous(), y.long(), torch.cat(tasks).long() if tasks else None)


def class_quota(max_size: int, num_classes: int) -> int:
    """Samples per class of a class-balanced memory of ``max_size`` (the remainder stays unused)."""
    if num_classes > max_size:
        raise ConfigError(
            f"mem_size {max_size} is smaller than the {num_classes} classes seen so far: a class-balanced "
            "memory needs at least one sample per class"
        )
    return max_size // num_classes


class CondensedBuffer(ExemplarsBuffer):
    """A class-balanced replay memory of at most ``max_size`` condensed samples.

    After each experience (``post_adapt``) the experience's classes are condensed with
    ``config.condense`` at the per-class quota ``max_size // classes seen``; the classes already held
    are first shrunk to the new quota, by condensing again from the images held (``recondense``)
    or by herding selection among them (``select``). ``features="model"`` condenses through the
    strategy's current model (its ``embed``), mixed with random networks as FedDM/FedAF clients do;
    ``"random"`` uses the configured feature map (random networks, DM/M3D).

    :attr:`buffer` is an Avalanche dataset whose items have the experience's layout: ``(x, y, t)``
    when the benchmark yields task labels, ``(x, y)`` otherwise. It is rebuilt from the per-class
    tensors, so setting it from outside is refused (Avalanche's ``BalancedExemplarsBuffer`` setter
    silently does nothing; this one says so).

    Parameters
    ----------
    max_size
        The memory budget, shared equally by the classes seen so far: stored images of the
        benchmark's size (with ``budget="images"``, also the samples replayed).
    config
        The experiment config; its ``condense`` section says how each class is condensed (labels
        hard; ``factor`` 1 unless ``budget="pixels"``). Default: :class:`~fedcond.config.Config` ().
    features
        ``random``: condense through the configured feature map (random networks); ``model``:
        through the strategy's current model (its ``embed``) mixed with random networks.
    shrink
        How held classes shrink to a smaller quota: ``recondense`` (condense again from what is
        held) or ``select`` (herding among the held images).
    random_fraction
        With ``features="model"``, the share of iterations that use a fresh random network.
    device
        Where to condense (default: ``config.device``).
    logits
        Also keep, for every stored image, the strategy model's outputs on it when it was stored
        (DER's "dark knowledge": :class:`~fedcond.continual.plugins.CondensedDERPlugin` replays them).
        Images kept unchanged keep their logits; re-condensed ones get the current model's.
    budget
        Default: the config's ``continual.budget``. ``images``: ``max_size`` counts the samples replayed (``condense.factor`` must be 1).
        ``pixels``: ``max_size`` counts stored images, i.e. ``max_size`` x H x W pixels, as IDC's and
        LoDM's continual experiments count memory: with ``condense.factor`` f each stored image holds
        f x f tiles, each decoded into one replayed sample (f² samples per stored image, at 1/f
        resolution). A class held with no more real samples than its quota is kept as it is
        (one stored image each). :meth:`stored_sizes` counts stored images, :meth:`class_sizes`
        replayed samples.
    """

    def __init__(
        self,
        max_size: int,
        config: Config | None = None,
        *,
        features: str = "random",
        shrink: str = "recondense",
        random_fraction: float = 0.5,
        device: torch.device | str | None = None,
        logits: bool = False,
        budget: str | None = None,
    ) -> None:
        if not isinstance(max_size, int) or max_size < 1:
            raise ConfigError(f"mem_size must be a positive integer, got {max_size!r}")
        if features not in FEATURE_SOURCES:
            raise ConfigError(f"features must be one of {', '.join(FEATURE_SOURCES)}; got {features!r}")
        if shrink not in SHRINK_MODES:
            raise ConfigError(f"shrink must be one of {', '.join(SHRINK_MODES)}; got {shrink!r}")
        if not 0.0 <= random_fraction <= 1.0:
            raise ConfigError(f"random_fraction must be in [0, 1], got {random_fraction}")
        config = config if config is not None else Config()
        budget = config.continual.budget if budget is None else budget
        if budget not in BUDGETS:
            raise ConfigError(f"budget must be one of {', '.join(BUDGETS)}; got {budget!r}")
        if budget != config.continual.budget:  # the argument overrides the config's key, validated as one
            config = dataclasses.replace(config, continual=dataclasses.replace(config.continual, budget=budget))
        config.validate()
        if config.condense.factor != 1 and budget == "images":
            raise ConfigError(
                "condense.factor must be 1 when the memory budget counts replayed images: set continual.budget: pixels "
                "(CondensedBuffer(budget='pixels')) to count stored pixels"
            )
        if config.condense.label_source != "hard":
            raise ConfigError("condensed memory keeps hard labels (replay batches mix memory and new data); set condense.labels: hard")
        super().__init__(max_size)
        self.config = config
        self.features = features
        self.shrink = shrink
        self.random_fraction = float(random_fraction)
        self.device = resolve_device(config.device) if device is None else torch.device(device)
        self.store_logits = bool(logits)
        self.budget = budget
        self.factor = config.condense.factor if budget == "pixels" else 1
        self._images: dict[int, torch.Tensor] = {}  # what is replayed (decoded tiles when factorised)
        self._stored: dict[int, int] = {}  # stored images of the benchmark's size, per class
        self._logits: dict[int, torch.Tensor] = {}
        self._task: dict[int, int] = {}
        self._with_tasks: bool | None = None
        self._cached: AvalancheDataset | None = None
        self._calls = 0
        #: Seconds spent condensing (and shrinking) in each ``post_adapt`` call, in order.
        self.condense_seconds: list[float] = []

    # ------------------------------------------------------------------ the memory
    @property
    def classes(self) -> list[int]:
        return sorted(self._images)

    def class_sizes(self) -> dict[int, int]:
        """Replayed samples per class."""
        return {c: len(self._images[c]) for c in self.classes}

    def stored_sizes(self) -> dict[int, int]:
        """Stored images (of the benchmark's size) per class: what the budget counts."""
        return {c: self._stored[c] for c in self.classes}

    @property
    def stored_size(self) -> int:
        """Stored images in the memory, at most ``max_size``."""
        return sum(self._stored.values())

    def memory_tensors(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """The memory as ``(images, labels, logits)`` tensors (``logits`` None unless stored)."""
        if not self._images:
            return torch.empty(0), torch.empty(0, dtype=torch.int64), None
        x = torch.cat([self._images[c] for c in self.classes])
        y = torch.cat([torch.full((len(self._images[c]),), c, dtype=torch.int64) for c in self.classes])
        z = torch.cat([self._logits[c] for c in self.classes]) if self.store_logits else None
        return x, y, z

    @property
    def buffer(self) -> AvalancheDataset:
        if self._cached is None:
            self._cached = self._make_dataset()
        return self._cached

    @buffer.setter
    def buffer(self, new_buffer: AvalancheDataset) -> None:
        # ExemplarsBuffer.__init__ assigns an empty dataset; anything else would be lost silently.
        if len(new_buffer) != 0:
            raise AttributeError("CondensedBuffer.buffer is built from its condensed sets and cannot be assigned")

    def _make_dataset(self) -> AvalancheDataset:
        if not self._images:
            return _make_taskaware_tensor_classification_dataset(torch.empty(0, 1, 1, 1), torch.empty(0, dtype=torch.int64))
        x, y, _ = self.memory_tensors()
        if self._with_tasks is False:
            return ClassificationDataset([TensorDataset(x, y)], data_attributes=[DataAttribute(y, "targets")])
        t = torch.cat([torch.full((len(self._images[c]),), self._task[c], dtype=torch.int64) for c in self.classes])
        return _make_taskaware_tensor_classification_dataset(x, y, task_labels=t, targets=y)

    # ------------------------------------------------------------------ Avalanche hooks
    def post_adapt(self, agent: SupervisedTemplate, exp: DatasetExperience) -> None:
        """Condense the experience's classes into the memory, shrinking the classes already held."""
        data = experience_tensors(exp.dataset)
        if len(data.labels) == 0:
            return
        started = time.perf_counter()
        if self._with_tasks is None:
            self._with_tasks = data.task_labels is not None
        new_classes = sorted(int(c) for c in data.labels.unique())
        quota = class_quota(self.max_size, len(set(self._images) | set(new_classes)))
        network = self._network(agent)
        # One condensation per kind of work: the classes of a condensation are matched jointly in
        # one loop (one network draw and one backward pass per iteration for all of them).
        held = {c: self._images[c] for c in self.classes if c not in new_classes and len(self._images[c]) > quota}
        self._images.update(self._reduce(held, quota, network))
        arriving: dict[int, torch.Tensor] = {}
        for c in new_classes:
            mask = data.labels == c
            real = data.images[mask]
            if c in self._images:  # a class seen again: condense what is held together with the new samples
                real = torch.cat([self._images[c], real])
            arriving[c] = real
            if data.task_labels is not None:
                self._task[c] = int(data.task_labels[mask][0])
        made = self._condense(arriving, quota, network, self.config.condense.method)
        self._images.update(made)
        self._store_logits(agent, [*held, *made])
        self._cached = None
        self.condense_seconds.append(time.perf_counter() - started)

    def resize(self, strategy: SupervisedTemplate, new_size: int) -> None:
        """Change ``max_size``; held classes are shrunk to the new quota."""
        if not isinstance(new_size, int) or new_size < 1:
            raise ConfigError(f"mem_size must be a positive integer, got {new_size!r}")
        self.max_size = new_size
        if not self._images:
            return
        quota = class_quota(new_size, len(self._images))
        network = self._network(strategy)
        held = {c: self._images[c] for c in self.classes if len(self._images[c]) > quota}
        self._images.update(self._reduce(held, quota, network))
        self._store_logits(strategy, list(held))
        self._cached = None

    def _store_logits(self, agent: SupervisedTemplate, classes: list[int]) -> None:
        """The model's outputs on the (new) images of ``classes``, taken in eval mode."""
        if not self.store_logits or not classes:
            return
        model = getattr(agent, "model", None)
        if model is None:
            raise ConfigError("a memory that stores logits needs the strategy's model (agent.model)")
        device = next(model.parameters()).device
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                for c in classes:
                    self._logits[c] = model(self._images[c].to(device)).detach().float().cpu()
        finally:
            model.train(was_training)

    # ------------------------------------------------------------------ condensation
    def _network(self, agent: SupervisedTemplate) -> nn.Module | None:
        if self.features == "random":
            return None
        model = getattr(agent, "model", None)
        if model is None or not callable(getattr(model, "embed", None)):
            raise ConfigError(
                "features='model' condenses through the strategy model's embed(x) method; "
                f"{type(model).__name__} has none (use features='random' or a fedcond model)"
            )
        return model

    def _reduce(self, held: dict[int, torch.Tensor], quota: int, network: nn.Module | None) -> dict[int, torch.Tensor]:
        method = "herding" if self.shrink == "select" else self.config.condense.method
        return self._condense(held, quota, network, method)

    def _condense(
        self, images: dict[int, torch.Tensor], quota: int, network: nn.Module | None, method: str
    ) -> dict[int, torch.Tensor]:
        """``quota`` synthetic images for each class of ``images`` (class -> all its samples at hand)."""
        from fedcond.condense import condense  # the condensers import heavy registries
        from fedcond.condense.parameterisation import decode, encode

        # A class with no more samples than its quota is kept as it is: a memory never holds more than its source.
        out = {c: x.clone() for c, x in images.items() if len(x) <= quota}
        self._stored.update({c: len(x) for c, x in out.items()})
        todo = sorted(c for c in images if c not in out)
        if not todo:
            return out
        data = ImageDataset(
            images=torch.cat([images[c] for c in todo]).cpu(),
            labels=torch.cat([torch.full((len(images[c]),), k, dtype=torch.int64) for k, c in enumerate(todo)]),
            num_classes=len(todo),
            name="experience",
            mean=(0.0,) * images[todo[0]].shape[1],
            std=(1.0,) * images[todo[0]].shape[1],
        )
        selecting = method in SELECTION_METHODS
        tiles = self.factor * self.factor
        # A selection keeps real (held) images: quota x f² of them, packed f² to a stored image below.
        condense_cfg = dataclasses.replace(
            self.config.condense, method=method, ipc=quota * tiles if selecting else quota, init="real",
            factor=1 if selecting else self.factor,
        )  # fmt: skip
        if network is not None:
            condense_cfg = dataclasses.replace(
                condense_cfg,
                feature_map="mixed-embedding",
                feature_params={"random_fraction": self.random_fraction, "network": copy.deepcopy(network)},
                # the condenser freezes the network it is given: a copy, not the model being trained
                pool_networks=0,  # the trained network changes every experience: nothing to cache
            )
        # A different seed for every condensation (each update shrinks, then condenses the new
        # classes), so memories of successive experiences are not condensed through the same networks.
        self._calls += 1
        seed = derive_seed(self.config.seed, "memory-update", self._calls)
        config = dataclasses.replace(self.config, condense=condense_cfg, seed=seed)
        synthetic = condense(data, config, device=self.device, progress=False)
        images_out = synthetic.images.detach().cpu().float()
        for k, c in enumerate(todo):
            picked = images_out[synthetic.labels == k]
            if selecting and self.factor > 1:
                picked = decode(encode(picked[: len(picked) // tiles * tiles], self.factor), self.factor)
            out[c] = picked
            self._stored[c] = len(picked) // tiles if self.factor > 1 else len(picked)
        return out


class TruncatedHerding(HerdingSelectionStrategy):
    """Avalanche's herding (iCaRL) on flattened features, ranking only as far as a memory can hold.

    Avalanche sums distances over dim 1, so a conv layer's [N, C, H, W] output is flattened. It also
    ranks all N samples (N greedy steps over N x D distances: minutes for a 6000-image class); no
    group of a ``limit``-sample memory keeps more than ``limit``, so the greedy order (the coreset
    condenser's ``herding_order``, the same rule) is computed for the first ``limit`` picks, which
    are Avalanche's (tested), and the rest follow in index order.
    """

    def __init__(self, model: nn.Module, layer_name: str, *, limit: int) -> None:
        super().__init__(model, layer_name)
        self.limit = limit

    def make_sorted_indices_from_features(self, features: torch.Tensor) -> list[int]:
        from fedcond.condense.coreset import herding_order  # the condensers import heavy registries

        chosen = herding_order(features.flatten(1), min(self.limit, len(features))).tolist()
        rest = torch.ones(len(features), dtype=torch.bool)
        rest[chosen] = False
        return chosen + torch.nonzero(rest).flatten().tolist()
