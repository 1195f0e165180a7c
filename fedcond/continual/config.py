"""The ``continual`` section of a config, owned by the Avalanche side: benchmark, methods, budgets."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from fedcond.config import register_config_section
from fedcond.errors import check, check_choice
from fedcond.models import MODELS, check_model_options

if TYPE_CHECKING:
    from fedcond.config import Config

FEATURE_SOURCES = ("random", "model")
SHRINK_MODES = ("recondense", "select")
FINETUNE_LAYERS = ("all", "classifier")
BUDGETS = ("images", "pixels")


@register_config_section("continual")
@dataclass
class ContinualConfig:
    """``fedcond continual``: the class-incremental benchmark, the methods compared and their budgets."""

    #: Methods run on the same benchmark, each from the same initial model: condensed,
    #: condensed-gdumb, condensed-der, replay, class-balanced, herding, gdumb, naive, and Avalanche's der and er-ace
    #: (its BiC does not run on 0.6's own benchmarks with torch 2.14: see docs/continual.md).
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
    #: Replay memory budget, the same for every method that keeps one: in samples (``budget: images``)
    #: or in stored images of the benchmark's size (``budget: pixels``: a condensed memory with
    #: ``condense.factor`` f replays f² tiles per stored image; the other memories store full images,
    #: so every method holds the same bytes).
    mem_size: int = 100
    budget: str = "images"
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
    #: Avalanche's DER (DER++): weight of the logit-matching MSE and of the memory's cross-entropy
    #: (Avalanche's defaults; DER++ used 0.1-0.5 for both).
    der_alpha: float = 0.1
    der_beta: float = 0.5
    #: Bias correction (EEIL's balanced fine-tuning) for every replay method (not the GDumb-style
    #: ones, which already train on the memory alone): after each experience the model is fine-tuned
    #: on its class-balanced memory for this many epochs (0: off), at ``balanced_finetune_lr``, all
    #: parameters or the classifier (last linear layer) only.
    balanced_finetune_epochs: int = 0
    balanced_finetune_lr: float = 0.001
    balanced_finetune_layers: str = "all"

    def validate(self, config: Config) -> None:
        """Check the section; method names are looked up in the continual-method registry."""
        from fedcond.continual.methods import CONTINUAL_METHODS

        check(len(self.methods) >= 1, "continual.methods must name at least one method")
        for name in self.methods:
            CONTINUAL_METHODS.get(name)
        check(len(set(self.methods)) == len(self.methods), "continual.methods names a method twice")
        check(self.experiences >= 1, "continual.experiences must be at least 1")
        MODELS.get(self.model)
        check_model_options(self.model, self.model_params)
        check(
            self.class_order is None or len(set(self.class_order)) == len(self.class_order),
            "continual.class_order names a class twice",
        )
        check(self.mem_size >= 1, "continual.mem_size must be at least 1")
        check(self.seeds >= 1, "continual.seeds must be at least 1")
        check(self.train_epochs >= 1 and self.gdumb_epochs >= 1, "continual.train_epochs and gdumb_epochs must be >= 1")
        check(self.train_mb_size >= 1 and self.batch_size_mem >= 1, "continual.train_mb_size and batch_size_mem must be >= 1")
        check(
            self.lr > 0 and 0 <= self.momentum < 1 and self.weight_decay >= 0,
            "continual.lr must be > 0, momentum in [0, 1), weight_decay >= 0",
        )
        check_choice("continual.features", self.features, FEATURE_SOURCES)
        check_choice("continual.shrink", self.shrink, SHRINK_MODES)
        check(0 <= self.random_fraction <= 1, "continual.random_fraction must be in [0, 1]")
        check(self.der_alpha >= 0 and self.der_beta >= 0, "continual.der_alpha and der_beta must be >= 0")
        check(self.balanced_finetune_epochs >= 0, "continual.balanced_finetune_epochs must be >= 0")
        check(self.balanced_finetune_lr > 0, "continual.balanced_finetune_lr must be > 0")
        check_choice("continual.budget", self.budget, BUDGETS)
        check(
            self.budget == "pixels" or config.condense.factor == 1 or not any(m.startswith("condensed") for m in self.methods),
            "condense.factor must be 1 when the memory budget counts replayed images: set continual.budget: pixels "
            "(CondensedBuffer(budget='pixels')) to count stored pixels",
        )
        check_choice("continual.balanced_finetune_layers", self.balanced_finetune_layers, FINETUNE_LAYERS)
