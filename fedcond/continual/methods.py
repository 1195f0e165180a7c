"""Continual-learning methods compared by ``fedcond continual``, registered by name.

Each builder turns (model, settings) into an Avalanche strategy; every replay method gets the same
memory budget and the same minibatches of new data and of memory. Avalanche is imported inside the
builders so that validating a config does not pay for importing it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from fedcond.registry import Registry
from fedcond.seeds import derive_seed

if TYPE_CHECKING:
    from avalanche.core import SupervisedPlugin
    from avalanche.training.plugins import EvaluationPlugin, ReplayPlugin
    from avalanche.training.storage_policy import ExemplarsBuffer
    from avalanche.training.templates import SupervisedTemplate

    from fedcond.config import Config


@dataclass
class MethodSettings:
    """What every method shares: the config, the device, the evaluation plugin."""

    config: Config
    device: torch.device
    evaluator: EvaluationPlugin

    def optimizer(self, model: nn.Module) -> torch.optim.Optimizer:
        k = self.config.continual
        return torch.optim.SGD(model.parameters(), lr=k.lr, momentum=k.momentum, weight_decay=k.weight_decay)

    def common(
        self, model: nn.Module, *, plugins: list[SupervisedPlugin] | None = None, retrain: bool = False
    ) -> dict[str, Any]:
        """The strategy arguments every method shares (and the DSA plugin when ``continual.dsa``).

        ``retrain``: GDumb-style methods train from scratch for ``gdumb_epochs`` with the evaluation
        protocol's schedule (lr x0.1 at half-way, restarted every experience).
        """
        from avalanche.training.plugins import LRSchedulerPlugin

        k = self.config.continual
        optimizer = self.optimizer(model)
        extra: list[SupervisedPlugin] = []
        if k.dsa:
            from fedcond.continual.plugins import DSAPlugin

            c = self.config.condense
            extra.append(DSAPlugin(c.dsa_strategy, mode=c.dsa_mode, seed=derive_seed(self.config.seed, "continual-dsa")))
        if retrain:
            schedule = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=[max(1, k.gdumb_epochs // 2)], gamma=0.1)
            extra.append(LRSchedulerPlugin(schedule, reset_scheduler=True, reset_lr=True))
        return {
            "plugins": [*(plugins or []), *extra],
            "model": model,
            "optimizer": optimizer,
            "criterion": nn.CrossEntropyLoss(),
            "train_mb_size": k.train_mb_size,
            "train_epochs": k.gdumb_epochs if retrain else k.train_epochs,
            "eval_mb_size": 256,
            "device": self.device,
            "evaluator": self.evaluator,
        }

    def replay(self, storage_policy: ExemplarsBuffer | None = None) -> ReplayPlugin:
        """Avalanche's ReplayPlugin with explicit batch sizes (its defaults double the batch)."""
        from avalanche.training.plugins import ReplayPlugin

        k = self.config.continual
        return ReplayPlugin(
            mem_size=k.mem_size,
            batch_size=k.train_mb_size,
            batch_size_mem=k.batch_size_mem,
            storage_policy=storage_policy,
        )

    def memory_batch(self) -> int:
        """Memory samples per minibatch for Avalanche's DER and ER-ACE.

        Both replay only once the buffer holds a whole ``batch_size_mem`` (their loaders drop the
        last batch), so a memory smaller than ``continual.batch_size_mem`` would never be replayed;
        ``ReplayPlugin`` gives at most the whole memory per step, and so do these.
        """
        k = self.config.continual
        return min(k.batch_size_mem, k.mem_size)

    def augment(self) -> Callable[[torch.Tensor], torch.Tensor] | None:
        """DSA as a function of a batch (for plugins that draw their own memory batches), or None."""
        k, c = self.config.continual, self.config.condense
        if not k.dsa:
            return None
        from fedcond.augment import dsa

        generator = torch.Generator().manual_seed(derive_seed(self.config.seed, "continual-memory-dsa"))
        return lambda images: dsa(images, c.dsa_strategy, generator=generator, mode=c.dsa_mode)

    def corrected(self, strategy: SupervisedTemplate, memory: ExemplarsBuffer) -> tuple[SupervisedTemplate, ExemplarsBuffer]:
        """Append the bias correction (balanced fine-tuning on ``memory``) when it is on.

        Appended last, so it runs after whatever updates the memory at the end of an experience.
        """
        k = self.config.continual
        if k.balanced_finetune_epochs > 0:
            from fedcond.continual.plugins import BalancedFinetunePlugin

            strategy.plugins.append(BalancedFinetunePlugin(
                memory, epochs=k.balanced_finetune_epochs, lr=k.balanced_finetune_lr, batch_size=k.batch_size_mem,
                layers=k.balanced_finetune_layers, augment=self.augment(),
                seed=derive_seed(self.config.seed, "balanced-finetune"),
            ))  # fmt: skip
        return strategy, memory

    def condensed_kwargs(self) -> dict[str, Any]:
        k = self.config.continual
        return {
            "features": k.features, "shrink": k.shrink, "random_fraction": k.random_fraction, "device": self.device,
            "budget": k.budget,
        }  # fmt: skip


#: A method: ``(model, settings) -> (Avalanche strategy, the storage policy holding its memory or None)``.
ContinualMethod = Callable[[nn.Module, MethodSettings], tuple["SupervisedTemplate", "ExemplarsBuffer | None"]]
CONTINUAL_METHODS: Registry[ContinualMethod] = Registry("continual method")
register_continual_method = CONTINUAL_METHODS.register


@register_continual_method("naive")
def build_naive(model: nn.Module, s: MethodSettings) -> tuple[SupervisedTemplate, ExemplarsBuffer | None]:
    """Fine-tuning on each experience, no memory: the lower bound."""
    from avalanche.training.supervised import Naive

    return Naive(**s.common(model)), None


@register_continual_method("replay")
def build_replay(model: nn.Module, s: MethodSettings) -> tuple[SupervisedTemplate, ExemplarsBuffer | None]:
    """Avalanche's default replay: ReplayPlugin's experience-balanced random (reservoir) buffer."""
    from avalanche.training.supervised import Naive

    plugin = s.replay()
    return s.corrected(Naive(**s.common(model, plugins=[plugin])), plugin.storage_policy)


@register_continual_method("class-balanced")
def build_class_balanced(model: nn.Module, s: MethodSettings) -> tuple[SupervisedTemplate, ExemplarsBuffer | None]:
    """Replay from Avalanche's ClassBalancedBuffer: random samples, equal share per class seen."""
    from avalanche.training.storage_policy import ClassBalancedBuffer
    from avalanche.training.supervised import Naive

    plugin = s.replay(ClassBalancedBuffer(max_size=s.config.continual.mem_size, adaptive_size=True))
    return s.corrected(Naive(**s.common(model, plugins=[plugin])), plugin.storage_policy)


@register_continual_method("herding")
def build_herding(model: nn.Module, s: MethodSettings) -> tuple[SupervisedTemplate, ExemplarsBuffer | None]:
    """Replay from Avalanche's ParametricBuffer per class with herding (iCaRL) in the model's features."""
    from avalanche.training.storage_policy import ParametricBuffer
    from avalanche.training.supervised import Naive

    from fedcond.continual.storage import TruncatedHerding

    layer = getattr(model, "embedding_layer", "features")
    selection = TruncatedHerding(model, layer, limit=s.config.continual.mem_size)
    plugin = s.replay(ParametricBuffer(max_size=s.config.continual.mem_size, groupby="class", selection_strategy=selection))
    return s.corrected(Naive(**s.common(model, plugins=[plugin])), plugin.storage_policy)


@register_continual_method("gdumb")
def build_gdumb(model: nn.Module, s: MethodSettings) -> tuple[SupervisedTemplate, ExemplarsBuffer | None]:
    """Avalanche's GDumb: a class-balanced random memory, the model retrained from scratch on it."""
    from avalanche.training.supervised import GDumb

    strategy = GDumb(**s.common(model, retrain=True), mem_size=s.config.continual.mem_size)
    plugin = next(p for p in strategy.plugins if hasattr(p, "storage_policy"))
    return strategy, plugin.storage_policy


@register_continual_method("condensed")
def build_condensed(model: nn.Module, s: MethodSettings) -> tuple[SupervisedTemplate, ExemplarsBuffer | None]:
    """Replay from a condensed memory (fedcond's CondensedBuffer), same batches as the other replays."""
    from avalanche.training.supervised import Naive

    from fedcond.continual.plugins import CondensedReplayPlugin

    k = s.config.continual
    plugin = CondensedReplayPlugin(
        mem_size=k.mem_size, config=s.config, batch_size=k.train_mb_size, batch_size_mem=k.batch_size_mem, **s.condensed_kwargs()
    )
    return s.corrected(Naive(**s.common(model, plugins=[plugin])), plugin.storage_policy)


@register_continual_method("condensed-gdumb")
def build_condensed_gdumb(model: nn.Module, s: MethodSettings) -> tuple[SupervisedTemplate, ExemplarsBuffer | None]:
    """GDumb's protocol on a condensed memory: retrain from scratch on the memory only."""
    from avalanche.training.supervised import Naive

    from fedcond.continual.plugins import CondensedGDumbPlugin

    plugin = CondensedGDumbPlugin(mem_size=s.config.continual.mem_size, config=s.config, **s.condensed_kwargs())
    return Naive(**s.common(model, plugins=[plugin], retrain=True)), plugin.storage_policy


@register_continual_method("der")
def build_der(model: nn.Module, s: MethodSettings) -> tuple[SupervisedTemplate, ExemplarsBuffer | None]:
    """Avalanche's DER (DER++): a class-balanced random memory stored with the model's logits, replayed
    with cross-entropy on its labels (``continual.der_beta``) and a logit-matching MSE (``der_alpha``)."""
    from avalanche.training.supervised import DER

    k = s.config.continual
    strategy = DER(**s.common(model), mem_size=k.mem_size, batch_size_mem=s.memory_batch(), alpha=k.der_alpha, beta=k.der_beta)
    return s.corrected(strategy, strategy.storage_policy)


@register_continual_method("er-ace")
def build_er_ace(model: nn.Module, s: MethodSettings) -> tuple[SupervisedTemplate, ExemplarsBuffer | None]:
    """Avalanche's ER-ACE: a class-balanced random memory, new data trained with the asymmetric
    cross-entropy (logits of the classes in the batch only) so old classes are not pushed down."""
    from avalanche.training.supervised import ER_ACE

    k = s.config.continual
    strategy = ER_ACE(**s.common(model), mem_size=k.mem_size, batch_size_mem=s.memory_batch())
    return s.corrected(strategy, strategy.storage_policy)


@register_continual_method("condensed-der")
def build_condensed_der(model: nn.Module, s: MethodSettings) -> tuple[SupervisedTemplate, ExemplarsBuffer | None]:
    """DER++ on a condensed memory: condensed images stored with the learner's outputs, replayed with
    cross-entropy (``continual.der_beta``) and a logit MSE (``der_alpha``), as Avalanche's ``der``."""
    from avalanche.training.supervised import Naive

    from fedcond.continual.plugins import CondensedDERPlugin

    k = s.config.continual
    plugin = CondensedDERPlugin(
        mem_size=k.mem_size, config=s.config, batch_size_mem=s.memory_batch(), alpha=k.der_alpha, beta=k.der_beta,
        augment=s.augment(), seed=derive_seed(s.config.seed, "condensed-der"), **s.condensed_kwargs(),
    )  # fmt: skip
    return s.corrected(Naive(**s.common(model, plugins=[plugin])), plugin.storage_policy)
