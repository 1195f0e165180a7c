"""The ``federated`` section of a config, owned by the Flower side: clients, partitions, strategies, budgets."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from fedcond.config import register_config_section
from fedcond.errors import check, check_choice

if TYPE_CHECKING:
    from fedcond.config import Config

PARTITIONERS = ("iid", "dirichlet", "pathological")
SERVER_UPDATES = ("finetune", "retrain")
#: Flower's aggregators a fedcond-owned averaging strategy (hybrid, fedavg-corrected) can use, by name.
AGGREGATORS = ("fedavg", "fedmedian", "fedtrimmedavg", "krum", "multikrum")


@register_config_section("federated")
@dataclass
class FederatedConfig:
    """``fedcond federate``: the clients, their partitions, the strategies compared and their budgets."""

    #: Strategies run one after another on the same partitions: fedcondense, fedcondense-iterative,
    #: hybrid, fedavg-corrected, fedavg, fedprox.
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
    #: How hybrid (rounds after the first) and fedavg-corrected average weights: Flower's fedavg,
    #: fedmedian, fedtrimmedavg (``trim_beta`` cut at each end), krum or multikrum
    #: (``num_malicious_clients`` assumed; multikrum averages the ``multikrum_select`` best). The
    #: fedavg and fedprox baselines are Flower's plain strategies and ignore it.
    aggregator: str = "fedavg"
    trim_beta: float = 0.2
    num_malicious_clients: int = 0
    multikrum_select: int = 2
    #: fedcondense-iterative: share of condensation iterations that use a fresh random network
    #: instead of the current global model, and how the server uses each round's sets.
    random_mix: float = 0.5
    server_update: str = "finetune"
    #: Server-side training of the global model on the union of the synthetic sets: epochs (the
    #: rest of the schedule is ``evaluation``'s); fine-tuning rounds use ``finetune_epochs``.
    server_epochs: int = 300
    finetune_epochs: int = 50
    #: fedavg-corrected (and hybrid with ``hybrid_correction: true``): after each averaging round the
    #: server fine-tunes the global model for ``correction_steps`` SGD steps on the union of the
    #: clients' synthetic sets (``evaluation``'s lr, batch size, DSA and loss, no lr decay). The sets
    #: are uploaded in round 1; with ``correction_refresh: k > 0`` clients condense again against
    #: the current global model every k rounds (rounds 1, 1 + k, 1 + 2k, ...) and the new sets
    #: replace the old. Hybrid corrects with its round-1 sets.
    correction_steps: int = 100
    correction_refresh: int = 0
    hybrid_correction: bool = False
    #: Most images per class a client may upload; null allows ``ipc * factor**2``.
    max_per_class: int | None = None
    #: Drop uploads whose labels disagree with a classifier fitted on the other clients' sets.
    defence: bool = True
    #: A set is dropped when its agreement is below this fraction of the median agreement.
    defence_ratio: float = 0.5
    #: Most classifiers the defence fits: beyond this many sets, sets are scored in this many folds.
    defence_folds: int = 10
    #: Most messages of a round the server has out at once; the rest are sent as replies come in.
    #: Flower's simulation engine scans every held message for every node 10 times a second, so
    #: 1,000 clients asked at once keep a core busy; null sends every message at once.
    max_in_flight: int | None = 100
    #: Resources of each simulated client (Flower's ``client_resources``).
    num_cpus: float = 1.0
    num_gpus: float = 0.0
    #: Seconds the server waits for a round's replies; late clients are recorded as failed.
    timeout: float = 86_400.0

    def validate(self, config: Config) -> None:
        """Check the section; strategy names are looked up in :data:`strategies.STRATEGIES`."""
        from strategies import STRATEGIES  # Flower's server side: loaded only for a federated config

        check(len(self.strategies) >= 1, "federated.strategies must name at least one strategy")
        for name in self.strategies:
            STRATEGIES.get(name)
        check(len(set(self.strategies)) == len(self.strategies), "federated.strategies names a strategy twice")
        check(self.num_clients >= 1, "federated.num_clients must be at least 1")
        check_choice("federated.partitioner", self.partitioner, PARTITIONERS)
        check(self.alpha > 0, "federated.alpha must be > 0")
        check(self.classes_per_client >= 1, "federated.classes_per_client must be at least 1")
        check(self.min_partition_size >= 0, "federated.min_partition_size must be >= 0")
        check(self.rounds >= 1, "federated.rounds must be at least 1")
        check(self.local_epochs >= 1 and self.local_batch_size >= 1, "federated.local_epochs and local_batch_size must be >= 1")
        check(self.local_lr > 0 and 0 <= self.local_momentum < 1, "federated.local_lr must be > 0, local_momentum in [0, 1)")
        check(self.local_weight_decay >= 0 and self.proximal_mu >= 0, "federated.local_weight_decay and proximal_mu must be >= 0")
        check_choice("federated.aggregator", self.aggregator, AGGREGATORS)
        check(0 <= self.trim_beta < 0.5, "federated.trim_beta must be in [0, 0.5)")
        check(0 <= self.num_malicious_clients < self.num_clients, "federated.num_malicious_clients must be in [0, num_clients)")
        check(1 <= self.multikrum_select <= self.num_clients, "federated.multikrum_select must be in [1, num_clients]")
        check(0 <= self.random_mix <= 1, "federated.random_mix must be in [0, 1]")
        check_choice("federated.server_update", self.server_update, SERVER_UPDATES)
        check(self.server_epochs >= 1 and self.finetune_epochs >= 1, "federated.server_epochs and finetune_epochs must be >= 1")
        check(self.correction_steps >= 1, "federated.correction_steps must be at least 1")
        check(self.correction_refresh >= 0, "federated.correction_refresh must be >= 0 (0: sets uploaded once, in round 1)")
        check(self.max_per_class is None or self.max_per_class >= 1, "federated.max_per_class must be null or >= 1")
        check(0 < self.defence_ratio < 1, "federated.defence_ratio must be in (0, 1)")
        check(self.defence_folds >= 2, "federated.defence_folds must be >= 2")
        check(self.num_cpus > 0 and self.num_gpus >= 0, "federated.num_cpus must be > 0 and num_gpus >= 0")
        check(self.timeout > 0, "federated.timeout must be > 0")
        check(self.max_in_flight is None or self.max_in_flight >= 1, "federated.max_in_flight must be null or >= 1")
