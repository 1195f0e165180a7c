"""When the condensed memory is used: thin Avalanche plugins around :class:`CondensedBuffer`.

* :class:`CondensedReplayPlugin`: experience replay (Avalanche's ``ReplayPlugin``) whose storage
  policy is a :class:`CondensedBuffer`; ``Naive(..., plugins=[CondensedReplayPlugin(mem_size=100)])``.
* :class:`CondensedGDumbPlugin`: GDumb's protocol (Prabhu et al. 2020) on a condensed memory: before
  each experience's training the model is reset to its initial weights and trained on the memory only.
* :class:`DSAPlugin`: differentiable siamese augmentation of every training minibatch, the
  augmentation condensed sets are made to be trained with; ``fedcond continual`` gives it to every
  method alike (``continual.dsa``).
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from avalanche.training.plugins import ReplayPlugin, SupervisedPlugin
from avalanche.training.templates import SupervisedTemplate

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
        ``features``, ``shrink``, ``random_fraction``, ``device`` of :class:`CondensedBuffer`.
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
        ``features``, ``shrink``, ``random_fraction``, ``device`` of :class:`CondensedBuffer`.
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
