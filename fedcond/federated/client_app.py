"""The Flower ClientApp: condense the local partition on this node's device, or train locally (FedAvg).

Every train message carries the task and the whole experiment config (YAML) from the server; the
client adds only what is its own: its partition (``partition-id``/``num-partitions`` from the node
config) and, optionally, where its data lives (``data-root`` in the node config). What the
messages and replies hold is described, key by key, in :mod:`fedcond.federated.wire`.
"""

from __future__ import annotations

import dataclasses
import functools
import time

import torch
import yaml
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from fedcond.condense import condense
from fedcond.config import Config
from fedcond.data import DatasetConfig, load_dataset
from fedcond.data.base import ImageDataset
from fedcond.device import resolve_device
from fedcond.errors import ConfigError
from fedcond.evaluation import fit, fresh_network
from fedcond.federated import wire
from fedcond.federated.partition import client_partition, partition_indices
from fedcond.seeds import derive_seed

app = ClientApp()


@dataclasses.dataclass(frozen=True)
class ClientTask:
    """What a train message asks of this node, resolved: the message's settings, the validated
    experiment config, this node's partition and device."""

    settings: ConfigRecord
    config: Config
    data: ImageDataset
    device: torch.device
    partition_id: int

    @property
    def name(self) -> object:
        return self.settings.get(wire.TASK_KEY)


def client_task(msg: Message, context: Context) -> ClientTask:
    """Read ``msg`` with this node's ``context``: config, partition, device (threads limited)."""
    settings = _message_config(msg)
    config = _client_config(settings, context)
    partition_id, num_partitions = _partition_of(context)
    if num_partitions != config.federated.num_clients:
        raise ConfigError(f"node has num-partitions={num_partitions} but the run has {config.federated.num_clients} clients")
    _limit_threads(config.federated.num_cpus)
    data = _partition(yaml.safe_dump(config.to_dict()), partition_id)
    return ClientTask(settings, config, data, resolve_device(config.device), partition_id)


@app.train()
def train(msg: Message, context: Context) -> Message:
    """Run the task the server asks for on this client's partition."""
    task = client_task(msg, context)
    if task.name == wire.CONDENSE_TASK:
        content = condense_reply(msg, task.config, task.data, task.device, task.partition_id)
    elif task.name == wire.FIT_TASK:
        content = fit_reply(msg, task.settings, task.config, task.data, task.device, task.partition_id)
    else:
        raise ConfigError(f"unknown task {task.name!r}; expected {' or '.join(repr(t) for t in wire.TASKS)}")
    return Message(content=content, reply_to=msg)


def condense_reply(
    msg: Message, config: Config, data: ImageDataset, device: torch.device, partition_id: int
) -> RecordDict:
    """Condense ``data``; against the global model's features when the message carries one."""
    if wire.MODEL_RECORD in msg.content.array_records:
        net = fresh_network(config.evaluation.model, data.images.shape[1:], data.num_classes, device=device, seed=0)
        net.load_state_dict(msg.content.array_records[wire.MODEL_RECORD].to_torch_state_dict())
        condense_cfg = dataclasses.replace(
            config.condense,
            feature_map="mixed-embedding",
            model=config.evaluation.model,
            feature_params={"random_fraction": config.federated.random_mix, "network": net},
        )
        config = dataclasses.replace(config, condense=condense_cfg)
    started = time.perf_counter()
    synthetic = condense(data, config, device=device, progress=False)
    seconds = time.perf_counter() - started
    record = wire.to_array_record(synthetic)
    metrics = MetricRecord({
        wire.NUM_EXAMPLES: len(data),
        wire.NUM_SYNTHETIC: len(synthetic),
        wire.CONDENSE_SECONDS: round(seconds, 3),
        wire.UPLOAD_BYTES: wire.array_record_bytes(record),
        wire.LABEL_BYTES: len(record["labels"].data),
        wire.PARTITION_ID: partition_id,
    })  # fmt: skip
    if "iterations_run" in synthetic.metadata:  # a matching run: did the time budget stop it?
        metrics[wire.ITERATIONS_RUN] = int(synthetic.metadata["iterations_run"])
        metrics[wire.TIME_BUDGET_HIT] = int(bool(synthetic.metadata.get("time_budget_hit")))
    privacy = synthetic.metadata.get("privacy") or {}
    if privacy.get("epsilon") is not None:  # a private release: the server records its guarantee per client
        metrics[wire.EPSILON], metrics[wire.DELTA] = float(privacy["epsilon"]), float(privacy["delta"])
    return RecordDict({wire.SET_RECORD: record, wire.METRICS_RECORD: metrics})


def fit_reply(
    msg: Message, settings: ConfigRecord, config: Config, data: ImageDataset, device: torch.device, partition_id: int
) -> RecordDict:
    """Train the global model locally for ``federated.local_epochs`` epochs (FedProx's term if asked)."""
    f = config.federated
    if wire.ARRAYS_RECORD not in msg.content.array_records:
        raise ConfigError(f"a fit message must carry the global model as ArrayRecord {wire.ARRAYS_RECORD!r}")
    net = fresh_network(config.evaluation.model, data.images.shape[1:], data.num_classes, device=device, seed=0)
    net.load_state_dict(msg.content.array_records[wire.ARRAYS_RECORD].to_torch_state_dict())
    local = dataclasses.replace(
        config.evaluation,
        epochs=f.local_epochs,
        lr=f.local_lr,
        momentum=f.local_momentum,
        weight_decay=f.local_weight_decay,
        batch_size=f.local_batch_size,
    )
    mu = float(settings.get(wire.PROXIMAL_MU_KEY, 0.0))
    server_round = int(settings.get(wire.SERVER_ROUND_KEY, 0))
    started = time.perf_counter()
    fit(net, data.images, data.labels, cfg=local, dsa_strategy=None, device=device,
        seed=derive_seed(config.seed, "client-fit", partition_id, server_round), decay=False, proximal_mu=mu)  # fmt: skip
    arrays = ArrayRecord({k: v.detach().cpu() for k, v in net.state_dict().items()})
    metrics = MetricRecord({
        wire.NUM_EXAMPLES: len(data),
        wire.TRAIN_SECONDS: round(time.perf_counter() - started, 3),
        wire.UPLOAD_BYTES: wire.array_record_bytes(arrays),
    })  # fmt: skip
    client = ConfigRecord({wire.PARTITION_ID: partition_id})
    return RecordDict({wire.ARRAYS_RECORD: arrays, wire.METRICS_RECORD: metrics, wire.CLIENT_RECORD: client})


def _message_config(msg: Message) -> ConfigRecord:
    settings = msg.content.config_records.get(wire.CONFIG_RECORD)
    if settings is None or not isinstance(settings.get(wire.CONFIG_KEY), str):
        raise ConfigError(
            f"train message has no ConfigRecord {wire.CONFIG_RECORD!r} with the experiment config {wire.CONFIG_KEY!r}"
        )
    return settings


def _client_config(settings: ConfigRecord, context: Context) -> Config:
    """The server's config, validated, with this node's ``data-root`` if it sets one."""
    data = yaml.safe_load(settings[wire.CONFIG_KEY])
    if not isinstance(data, dict):
        raise ConfigError("the experiment config in the message is not a mapping")
    root = context.node_config.get("data-root")
    if root:
        data.setdefault("dataset", {})["data_root"] = str(root)
    return Config.from_dict(data)


def _partition_of(context: Context) -> tuple[int, int]:
    try:
        return int(context.node_config["partition-id"]), int(context.node_config["num-partitions"])
    except (KeyError, TypeError, ValueError):
        raise ConfigError("node config needs integer partition-id and num-partitions") from None


def _limit_threads(num_cpus: float) -> None:
    # Simulated clients share the machine: each uses the CPUs Flower gave it, not all of them.
    threads = max(1, int(num_cpus))
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


@functools.lru_cache(maxsize=4)
def _partition(config_yaml: str, partition_id: int) -> ImageDataset:
    """This client's partition; cached, since a simulated node process serves many rounds."""
    config = Config.from_dict(yaml.safe_load(config_yaml))
    train, indices = _split(config_yaml)
    return client_partition(train, config.federated, config.seed, partition_id, indices)


@functools.lru_cache(maxsize=2)
def _split(config_yaml: str) -> tuple[ImageDataset, list[torch.Tensor]]:
    """The training split and every client's indices, computed once per node process: a simulated
    node serves many clients, and splitting among 1,000 of them costs seconds each time."""
    config = Config.from_dict(yaml.safe_load(config_yaml))
    train = _train_split(yaml.safe_dump(dataclasses.asdict(config.dataset)))
    return train, partition_indices(train.labels, config.federated, config.seed)


@functools.lru_cache(maxsize=2)
def _train_split(dataset_yaml: str) -> ImageDataset:
    return load_dataset(DatasetConfig(**yaml.safe_load(dataset_yaml))).train
