"""When the condensed memory is used: thin Avalanche plugins around :class:`CondensedBuffer`.

* :class:`CondensedReplayPlugin`: experience replay (Avalanche's ``ReplayPlugin``) whose storage
  policy is a :class:`CondensedBuffer`; ``Naive(..., plugins=[CondensedReplayPlugin(mem_size=100)])``.
* :class:`CondensedGDumbPlugin`: GDumb's protocol (Prabhu et al. 2020) on a condensed memory: before
  each experience's training the model is reset to its initial weights and trained on the memory only.
* :class:`CondensedDERPlugin`: DER++ (Buzzega et al. 2020) on a condensed memory: each condensed
  image is stored with the learner's outputs on it, and replayed with cross-entropy on its label and
  an MSE towards those outputs; ``Naive(..., plugins=[CondensedDERPlugin(mem_size=100)])``.
* :class:`BalancedFinetunePlugin`: bias correction (EEIL's balanced fine-tuning, Castro et al. 2018):
  after each experience the model is fine-tuned on the class-balanced memory of any storage policy.
* :class:`DSAPlugin`: differentiable siamese augmentation of every training minibatch, the
  augmentation condensed sets are made to be trained with; ``fedcond continual`` gives it to every
  method alike (``continual.dsa``).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Iterator
from typing import Any

import torch
import torch.nn.functional as F
from avalanche.training.plugins import ReplayPlugin, SupervisedPlugin
from avalanche.training.storage_policy import ExemplarsBuffer
from avalanche.training.templates import SupervisedTemplate
from torch import nn
from torch.utils.data import DataLoader

from fedcond.augment import dsa, validate_strategy
from fedcond.config import Config
from fedcond.continual.storage import CondensedBuffer
from fedcond.errors import ConfigError


def _buffer(mem_size: int, config: Config | None, storage_policy: CondensedBuffer | None, **kwargs: Any) -> CondensedBuffer:
    if storage_policy is None:
        return CondensedBuffer(mem_size, config, **kwargs)
    if storage_policy.max_size != mem_size:
        raise ConfigError(f"storage_policy.max_size {storage_policy.max_size} differs from mem_size {mem_size}")
    return storage_policy


class CondensedReplayPlugin(ReplayPlugin):
    """Experience replay from a class-balanced memory of ``mem_size`` condensed samples.

    Avalanche's ``ReplayPlugin`` defaults both ``batch_size`` and ``batch_size_mem`` to the strategy's
    ``train_mb_size``, so once the memory is used every step sees twice the batch (and twice the
    learning signal) of the first experience. Here the defaults split ``train_mb_size`` instead:
    half new data, half memory. Pass both explicitly to reproduce Avalanche's behaviour.

    Parameters
    ----------
    mem_size
        The memory budget in samples.
    config
        The experiment config whose ``condense`` section condenses the memory.
    batch_size, batch_size_mem
        New-data and memory samples per minibatch (default: ``train_mb_size`` split in half).
    task_balanced_dataloader
        As in Avalanche's ``ReplayPlugin``.
    storage_policy
        A :class:`CondensedBuffer` to use (its ``max_size`` must equal ``mem_size``); built from
        ``config`` and ``buffer_kwargs`` when None.
    **buffer_kwargs
        ``features``, ``shrink``, ``random_fraction``, ``device``, ``budget`` of :class:`CondensedBuffer`.
    """

    def __init__(
        self,
        mem_size: int = 200,
        config: Config | None = None,
        *,
        batch_size: int | None = None,
        batch_size_mem: int | None = None,
        task_balanced_dataloader: bool = False,
        storage_policy: CondensedBuffer | None = None,
        **buffer_kwargs: Any,
    ) -> None:
        policy = _buffer(mem_size, config, storage_policy, **buffer_kwargs)
        super().__init__(
            mem_size=mem_size,
            batch_size=batch_size,
            batch_size_mem=batch_size_mem,
            task_balanced_dataloader=task_balanced_dataloader,
            storage_policy=policy,
        )
        self._split_batch = batch_size is None and batch_size_mem is None

    def before_training_exp(self, strategy: SupervisedTemplate, num_workers: int = 0, shuffle: bool = True, drop_last: bool = False, **kwargs: Any) -> None:
        if self._split_batch:
            mem = max(1, strategy.train_mb_size // 2)
            self.batch_size, self.batch_size_mem = max(1, strategy.train_mb_size - mem), mem
        super().before_training_exp(strategy, num_workers=num_workers, shuffle=shuffle, drop_last=drop_last, **kwargs)
        if self._split_batch:
            self.batch_size = self.batch_size_mem = None

    def after_training_exp(self, strategy: SupervisedTemplate, **kwargs: Any) -> None:
        # ReplayPlugin calls the storage policy's deprecated update(); post_adapt is its replacement.
        self.storage_policy.post_adapt(strategy, strategy.experience)


class CondensedGDumbPlugin(SupervisedPlugin):
    """GDumb on a condensed memory: the model restarts from its initial weights at every experience
    and trains on the memory only (the strategy's ``train_epochs`` over ``mem_size`` samples).

    Like Avalanche's ``GDumbPlugin``, the memory is updated before training, from the experience
    just received; the optimizer's state (momentum) is dropped with the reset.

    Parameters
    ----------
    mem_size
        The memory budget in samples.
    config
        The experiment config whose ``condense`` section condenses the memory.
    storage_policy
        A :class:`CondensedBuffer` to use; built from ``config`` and ``buffer_kwargs`` when None.
    **buffer_kwargs
        ``features``, ``shrink``, ``random_fraction``, ``device``, ``budget`` of :class:`CondensedBuffer`.
    """

    def __init__(
        self,
        mem_size: int = 200,
        config: Config | None = None,
        *,
        storage_policy: CondensedBuffer | None = None,
        **buffer_kwargs: Any,
    ) -> None:
        super().__init__()
        self.mem_size = mem_size
        self.storage_policy = _buffer(mem_size, config, storage_policy, **buffer_kwargs)
        self._initial_state: dict[str, torch.Tensor] | None = None

    def before_train_dataset_adaptation(self, strategy: SupervisedTemplate, **kwargs: Any) -> None:
        if self._initial_state is None:
            self._initial_state = copy.deepcopy(strategy.model.state_dict())
        else:
            strategy.model.load_state_dict(self._initial_state)
            # Avalanche keeps the optimizer's state across experiences: a restart must drop momentum too.
            if getattr(strategy, "optimizer", None) is not None:
                strategy.optimizer.state.clear()

    def after_train_dataset_adaptation(self, strategy: SupervisedTemplate, **kwargs: Any) -> None:
        self.storage_policy.post_adapt(strategy, strategy.experience)
        strategy.adapted_dataset = self.storage_policy.buffer


Augment = Callable[[torch.Tensor], torch.Tensor]


def _memory_batches(tensors: tuple[torch.Tensor, ...], batch_size: int, seed: int) -> Iterator[list[torch.Tensor]]:
    """Endless shuffled minibatches over ``tensors`` (reshuffled every pass, the last batch kept)."""
    generator = torch.Generator().manual_seed(seed)
    while True:
        order = torch.randperm(len(tensors[0]), generator=generator)
        for start in range(0, len(order), batch_size):
            index = order[start : start + batch_size]
            yield [t[index] for t in tensors]


class CondensedDERPlugin(SupervisedPlugin):
    """DER++ on a condensed memory: replayed images carry the learner's outputs from when they were stored.

    After each experience the memory is condensed (a :class:`CondensedBuffer` with ``logits=True``)
    and the model's outputs on the new images are stored with them. At every training step a memory
    minibatch is drawn and the loss gains ``beta`` x cross-entropy on its labels plus ``alpha`` x the
    MSE between the model's outputs and the stored ones (DER++'s loss; Avalanche's ``DER`` uses the
    same defaults). Works with any Avalanche strategy whose ``criterion()`` makes the new-data loss
    (``Naive``, ``EWC``, ...); the model must be single-headed (one output vector per image).

    Parameters
    ----------
    mem_size
        The memory budget in samples.
    config
        The experiment config whose ``condense`` section condenses the memory.
    batch_size_mem
        Memory samples per step (default: the strategy's ``train_mb_size``, at most ``mem_size``).
    alpha, beta
        Weights of the logit MSE and of the memory's cross-entropy.
    augment
        Applied to each memory minibatch before the forward pass (``fedcond continual`` gives DSA,
        the augmentation every method's batches get); None: no augmentation.
    seed
        Seeds the memory minibatches' order.
    storage_policy
        A :class:`CondensedBuffer` that stores logits; built from ``config`` and ``buffer_kwargs``
        when None.
    **buffer_kwargs
        ``features``, ``shrink``, ``random_fraction``, ``device``, ``budget`` of :class:`CondensedBuffer`.
    """

    def __init__(
        self,
        mem_size: int = 200,
        config: Config | None = None,
        *,
        batch_size_mem: int | None = None,
        alpha: float = 0.1,
        beta: float = 0.5,
        augment: Augment | None = None,
        seed: int = 0,
        storage_policy: CondensedBuffer | None = None,
        **buffer_kwargs: Any,
    ) -> None:
        super().__init__()
        if alpha < 0 or beta < 0:
            raise ConfigError(f"alpha and beta must be >= 0, got {alpha} and {beta}")
        if batch_size_mem is not None and batch_size_mem < 1:
            raise ConfigError(f"batch_size_mem must be >= 1, got {batch_size_mem}")
        self.storage_policy = _buffer(mem_size, config, storage_policy, logits=True, **buffer_kwargs)
        if not self.storage_policy.store_logits:
            raise ConfigError("CondensedDERPlugin replays stored logits: its storage_policy needs logits=True")
        self.mem_size, self.batch_size_mem = mem_size, batch_size_mem
        self.alpha, self.beta, self.augment, self.seed = float(alpha), float(beta), augment, seed
        self._batches: Iterator[list[torch.Tensor]] | None = None
        self._experiences = 0

    def before_training_exp(self, strategy: SupervisedTemplate, **kwargs: Any) -> None:
        images, labels, logits = self.storage_policy.memory_tensors()
        self._batches = None
        if len(images):
            size = min(self.batch_size_mem or strategy.train_mb_size, len(images))
            self._experiences += 1
            self._batches = _memory_batches((images, labels, logits), size, self.seed + self._experiences)

    def before_backward(self, strategy: SupervisedTemplate, **kwargs: Any) -> None:
        if self._batches is None:
            return
        images, labels, logits = (t.to(strategy.device) for t in next(self._batches))
        if self.augment is not None:
            images = self.augment(images)
        output = strategy.model(images)
        if output.shape != logits.shape:
            raise ConfigError(
                f"the model's output {tuple(output.shape)} differs from the stored logits {tuple(logits.shape)}: "
                "CondensedDERPlugin needs a single-headed model with a fixed number of outputs"
            )
        strategy.loss = strategy.loss + self.beta * F.cross_entropy(output, labels) + self.alpha * F.mse_loss(output, logits)

    def after_training_exp(self, strategy: SupervisedTemplate, **kwargs: Any) -> None:
        self._batches = None
        self.storage_policy.post_adapt(strategy, strategy.experience)


class BalancedFinetunePlugin(SupervisedPlugin):
    """Bias correction: after each experience, fine-tune the model on the class-balanced memory.

    With a small memory the last experience's classes dominate what a replay learner predicts; EEIL's
    balanced fine-tuning (Castro et al. 2018) trains, at the end of each experience, on a subset with
    the same number of samples of every class seen. Here that subset is the memory of any class-balanced
    storage policy (a :class:`CondensedBuffer`, Avalanche's ``ClassBalancedBuffer`` or ``ParametricBuffer``
    by class, ...) once it holds the experience's classes, so the plugin goes **after** the plugin or
    strategy that updates the memory (it checks, and says so otherwise).

    Parameters
    ----------
    storage_policy
        The memory to fine-tune on (read from its ``buffer`` after each experience).
    epochs
        Passes over the memory per experience.
    lr
        Learning rate of the fine-tuning (SGD, momentum 0.9, a fresh optimizer each time).
    batch_size
        Memory samples per step.
    layers
        ``all``: every parameter; ``classifier``: the last ``nn.Linear`` only (the bias sits there).
    augment
        Applied to each minibatch (``fedcond continual`` gives DSA); None: no augmentation.
    seed
        Seeds the minibatches' order.
    """

    LAYERS = ("all", "classifier")

    def __init__(
        self,
        storage_policy: ExemplarsBuffer,
        *,
        epochs: int = 30,
        lr: float = 0.001,
        batch_size: int = 32,
        layers: str = "all",
        augment: Augment | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if epochs < 1 or batch_size < 1 or lr <= 0:
            raise ConfigError(f"balanced fine-tuning needs epochs >= 1, batch_size >= 1, lr > 0; got {epochs}, {batch_size}, {lr}")
        if layers not in self.LAYERS:
            raise ConfigError(f"layers must be one of {', '.join(self.LAYERS)}; got {layers!r}")
        self.storage_policy, self.epochs, self.lr, self.batch_size = storage_policy, epochs, lr, batch_size
        self.layers, self.augment, self.seed = layers, augment, seed
        self._calls = 0
        #: Seconds spent fine-tuning after each experience, in order.
        self.finetune_seconds: list[float] = []

    def after_training_exp(self, strategy: SupervisedTemplate, **kwargs: Any) -> None:
        memory = self.storage_policy.buffer
        if len(memory) == 0:
            return
        held = {int(c) for c in memory.targets}
        arrived = {int(c) for c in getattr(strategy.experience, "classes_in_this_experience", [])}
        if not arrived <= held:
            raise ConfigError(
                "BalancedFinetunePlugin found a memory without the experience's classes "
                f"{sorted(arrived - held)}: put it after the plugin that updates the memory"
            )
        started = time.perf_counter()
        self._calls += 1
        model = strategy.model
        params = list(_last_linear(model).parameters()) if self.layers == "classifier" else list(model.parameters())
        optimizer = torch.optim.SGD(params, lr=self.lr, momentum=0.9)
        generator = torch.Generator().manual_seed(self.seed + self._calls)
        loader = DataLoader(memory.train() if hasattr(memory, "train") else memory, batch_size=self.batch_size,
                            shuffle=True, generator=generator, collate_fn=getattr(memory, "collate_fn", None))  # fmt: skip
        was_training = model.training
        # Classifier only: everything else frozen, normalisation statistics included (eval mode).
        model.train(self.layers == "all")
        try:
            for _ in range(self.epochs):
                for batch in loader:
                    images, labels = batch[0].to(strategy.device), batch[1].to(strategy.device)
                    if self.augment is not None:
                        images = self.augment(images)
                    optimizer.zero_grad()
                    F.cross_entropy(model(images), labels).backward()
                    optimizer.step()
        finally:
            model.train(was_training)
        self.finetune_seconds.append(time.perf_counter() - started)


def _last_linear(model: nn.Module) -> nn.Linear:
    linear = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linear:
        raise ConfigError(f"layers='classifier' fine-tunes the last nn.Linear; {type(model).__name__} has none")
    return linear[-1]


class DSAPlugin(SupervisedPlugin):
    """Augments each training minibatch (new data and memory alike) with DSA before the forward pass.

    Memory batches that Avalanche's DER and ER-ACE draw from their own ``replay_loader`` are
    augmented too.

    Parameters
    ----------
    strategy
        DSA operations joined by ``_`` (``color_crop_cutout_flip_scale_rotate``).
    mode
        ``single``: one operation per draw, as the reference code does; ``all``: each in order.
    seed
        Seed of the augmentation draws.
    """

    def __init__(self, strategy: str = "color_crop_cutout_flip_scale_rotate", *, mode: str = "single", seed: int = 0) -> None:
        super().__init__()
        validate_strategy(strategy)
        self.strategy, self.mode = strategy, mode
        self.generator = torch.Generator().manual_seed(seed)

    def before_forward(self, strategy: SupervisedTemplate, **kwargs: Any) -> None:
        if strategy.is_training:
            strategy.mbatch[0] = dsa(strategy.mbatch[0], self.strategy, generator=self.generator, mode=self.mode)

    def before_training_epoch(self, strategy: SupervisedTemplate, **kwargs: Any) -> None:
        # Avalanche's DER and ER-ACE draw their memory batch from their own ``replay_loader`` after
        # (DER) or beside (ER-ACE) the minibatch the hook above sees: augment it where it is drawn,
        # so their memory samples are augmented as every other method's are.
        loader = getattr(strategy, "replay_loader", None)
        if loader is not None and not isinstance(loader, _AugmentedBatches):
            strategy.replay_loader = _AugmentedBatches(loader, self._augment)

    def _augment(self, images: torch.Tensor) -> torch.Tensor:
        return dsa(images, self.strategy, generator=self.generator, mode=self.mode)


class _AugmentedBatches:
    """An endless batch iterator whose batches' first element (the images) goes through ``augment``."""

    def __init__(self, batches: Any, augment: Any) -> None:
        self.batches, self.augment = batches, augment

    def __iter__(self) -> _AugmentedBatches:
        return self

    def __next__(self) -> Any:
        images, *rest = next(self.batches)
        return [self.augment(images), *rest]
