"""Split a training set among federated clients with flwr-datasets' partitioners.

The partitioners run on a two-column table (sample index, label) built from the in-memory
dataset, so they work offline on any dataset fedcond loads; the indices they return select the
client's images. Every client computes the same split from the same config and seed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from fedcond.data.base import ImageDataset
from fedcond.errors import ConfigError, DataError
from fedcond.federated.config import FederatedConfig

if TYPE_CHECKING:
    from flwr_datasets.partitioner import Partitioner


def build_partitioner(cfg: FederatedConfig, seed: int) -> Partitioner:
    """The flwr-datasets partitioner that ``cfg.partitioner`` names, over the column ``label``."""
    # Imported here: flwr-datasets loads Hugging Face datasets, seconds the ClientApp's import need not pay.
    from flwr_datasets.partitioner import DirichletPartitioner, IidPartitioner, PathologicalPartitioner

    if cfg.partitioner == "iid":
        return IidPartitioner(num_partitions=cfg.num_clients)
    if cfg.partitioner == "dirichlet":
        return DirichletPartitioner(
            num_partitions=cfg.num_clients,
            partition_by="label",
            alpha=cfg.alpha,
            min_partition_size=cfg.min_partition_size,
            self_balancing=False,
            seed=seed,
        )
    if cfg.partitioner == "pathological":
        return PathologicalPartitioner(
            num_partitions=cfg.num_clients,
            partition_by="label",
            num_classes_per_partition=cfg.classes_per_client,
            # Every class reaches some client when there are enough clients (the test set has them all).
            class_assignment_mode="first-deterministic",
            seed=seed,
        )
    raise ConfigError(f"unknown federated.partitioner {cfg.partitioner!r}; valid: iid, dirichlet, pathological")


def partition_indices(labels: torch.Tensor, cfg: FederatedConfig, seed: int) -> list[torch.Tensor]:
    """Indices of every client's samples (one tensor per client, together a partition of ``labels``)."""
    from datasets import Dataset

    if cfg.num_clients > len(labels):
        raise DataError(f"{cfg.num_clients} clients but only {len(labels)} training samples")
    table = Dataset.from_dict({"index": list(range(len(labels))), "label": labels.tolist()})
    partitioner = build_partitioner(cfg, seed)
    partitioner.dataset = table
    try:
        parts = [partitioner.load_partition(i)["index"] for i in range(cfg.num_clients)]
    except ValueError as exc:  # e.g. Dirichlet cannot meet min_partition_size
        raise DataError(f"cannot partition {len(labels)} samples: {str(exc).splitlines()[0]}") from None
    return [torch.as_tensor(sorted(part), dtype=torch.int64) for part in parts]


def client_partition(
    train: ImageDataset,
    cfg: FederatedConfig,
    seed: int,
    partition_id: int,
    indices: list[torch.Tensor] | None = None,
) -> ImageDataset:
    """Client ``partition_id``'s share of ``train``.

    Parameters
    ----------
    train : ImageDataset
        The whole training split.
    cfg : FederatedConfig
        Number of clients and the partitioner.
    seed : int
        The partitioner's seed.
    partition_id : int
        Which client, in ``[0, cfg.num_clients)``.
    indices : list of torch.Tensor, optional
        Every client's indices, as :func:`partition_indices` returns them for ``train``, ``cfg`` and
        ``seed``; pass them when one process serves many clients (the split of 60,000 samples among
        1,000 clients takes seconds), else they are computed.
    """
    if not 0 <= partition_id < cfg.num_clients:
        raise DataError(f"partition-id {partition_id} is outside [0, {cfg.num_clients})")
    if indices is None:
        indices = partition_indices(train.labels, cfg, seed)
    elif len(indices) != cfg.num_clients:
        raise DataError(f"{len(indices)} index lists for {cfg.num_clients} clients")
    return train.subset(indices[partition_id])
