"""Federated parts without a Flower run: partitions, upload checks, the defence, metering, strategies."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterable

import numpy as np
import pytest
import torch
import yaml
from flwr.app import ArrayRecord, ConfigRecord, Context, Error, Message, MetricRecord, RecordDict
from flwr.supercore.task_identity import TaskIdentity

from fedcond.config import Config
from fedcond.data import load_dataset
from fedcond.errors import ConfigError, DataError, SyntheticSetError
from fedcond.evaluation import fit, fresh_network
from fedcond.features import FeatureContext, build_feature_map
from fedcond.federated import client_app
from fedcond.federated.config import FederatedConfig
from fedcond.federated.metering import MeteredGrid, record_bytes
from fedcond.federated.partition import client_partition, partition_indices
from fedcond.federated.wire import to_array_record
from fedcond.synthetic import SyntheticSet
from strategies import STRATEGIES
from strategies.context import ServerContext
from strategies.defence import screen
from strategies.fedcondense import FedCondense
from strategies.uploads import UploadSpec, read_upload

CPU = torch.device("cpu")


@pytest.fixture(autouse=True)
def task_identity() -> None:
    # Flower 1.41 stamps every Message with the running task's identity; outside a run, set one.
    TaskIdentity.run_id, TaskIdentity.task_id, TaskIdentity.node_id = 1, 1, 0


# ---------------------------------------------------------------------------------- partitions
@pytest.mark.parametrize("partitioner", ["iid", "dirichlet", "pathological"])
def test_partitions_are_disjoint_deterministic_and_cover(digits, partitioner: str) -> None:
    cfg = FederatedConfig(num_clients=5, partitioner=partitioner, alpha=0.3, classes_per_client=2)
    parts = partition_indices(digits.train.labels, cfg, seed=0)
    assert len(parts) == 5 and all(len(p) > 0 for p in parts)
    joined = torch.cat(parts)
    assert len(set(joined.tolist())) == len(joined)  # disjoint
    if partitioner != "pathological":
        assert len(joined) == len(digits.train)
    again = partition_indices(digits.train.labels, cfg, seed=0)
    assert all(torch.equal(a, b) for a, b in zip(parts, again))
    if partitioner == "pathological":
        assert all(len(digits.train.labels[p].unique()) <= 2 for p in parts)


def test_dirichlet_skews_labels_more_at_small_alpha(digits) -> None:
    def skew(alpha: float) -> float:
        parts = partition_indices(digits.train.labels, FederatedConfig(num_clients=5, alpha=alpha), seed=0)
        return float(np.mean([digits.train.labels[p].bincount(minlength=10).max() / len(p) for p in parts]))

    assert skew(0.1) > skew(100.0) + 0.2


def test_partition_errors_name_the_problem(digits) -> None:
    with pytest.raises(DataError, match="partition-id 7"):
        client_partition(digits.train, FederatedConfig(num_clients=5), 0, 7)
    with pytest.raises(DataError, match="clients but only"):
        partition_indices(digits.train.labels[:3], FederatedConfig(num_clients=5), 0)


def test_a_node_splits_the_training_set_once_for_all_the_clients_it_serves(monkeypatch) -> None:
    calls = []
    real = client_app.partition_indices

    def counting(labels: torch.Tensor, cfg: FederatedConfig, seed: int) -> list[torch.Tensor]:
        calls.append(cfg.num_clients)
        return real(labels, cfg, seed)

    monkeypatch.setattr(client_app, "partition_indices", counting)
    client_app._split.cache_clear()
    client_app._partition.cache_clear()
    config = Config.from_dict({"dataset": {"name": "digits"}, "federated": {"num_clients": 6}})
    config_yaml = yaml.safe_dump(config.to_dict())
    try:
        parts = [client_app._partition(config_yaml, pid) for pid in range(6)]
        assert calls == [6]  # six clients, one split
        assert sum(len(p) for p in parts) == len(load_dataset(config.dataset).train)
        with pytest.raises(DataError, match="partition-id 6"):
            client_app._partition(config_yaml, 6)
    finally:
        client_app._split.cache_clear()
        client_app._partition.cache_clear()
    with pytest.raises(DataError, match="5 index lists for 6 clients"):
        client_partition(parts[0], FederatedConfig(num_clients=6), 0, 0, indices=[torch.zeros(0, dtype=torch.int64)] * 5)


def test_config_checks_federated_keys() -> None:
    with pytest.raises(ConfigError, match="unknown strategy 'fedsgd'"):
        Config.from_dict({"federated": {"strategies": ["fedsgd"]}})
    with pytest.raises(ConfigError, match="federated.partitioner"):
        Config.from_dict({"federated": {"partitioner": "zipf"}})
    with pytest.raises(ConfigError, match="defence_folds must be >= 2"):
        Config.from_dict({"federated": {"defence_folds": 1}})
    with pytest.raises(ConfigError, match="max_in_flight must be null or >= 1"):
        Config.from_dict({"federated": {"max_in_flight": 0}})
    assert Config.from_dict({"federated": {"max_in_flight": None}}).federated.max_in_flight is None
    with pytest.raises(ConfigError, match="federated.alpha"):
        Config.from_dict({"federated": {"alpha": 0}})
    assert Config.load("configs/federated-digits.yaml").federated.strategies == ["fedcondense", "fedavg"]


# ---------------------------------------------------------------------------------- uploads
SPEC = UploadSpec(num_classes=10, image_shape=(1, 8, 8), max_per_class=2)


def _set(n_per_class: int = 2, *, labels: torch.Tensor | None = None, seed: int = 0) -> SyntheticSet:
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(10).repeat_interleave(n_per_class) if labels is None else labels
    return SyntheticSet(torch.randn(len(y), 1, 8, 8, generator=g), y, 10)


def _reply(arrays: dict[str, np.ndarray] | ArrayRecord, node: int = 3, partition: int = 0) -> Message:
    sent = Message(content=RecordDict({"config": ConfigRecord({"server-round": 1})}), dst_node_id=node, message_type="train")
    record = arrays if isinstance(arrays, ArrayRecord) else ArrayRecord({k: _array(v) for k, v in arrays.items()})
    metrics = MetricRecord({"num-examples": 10, "partition-id": partition, "num-synthetic": 20})
    return Message(RecordDict({"synthetic": record, "metrics": metrics}), reply_to=sent)


def _array(value: np.ndarray):
    from flwr.app import Array

    return Array(value)


def test_a_valid_upload_is_read() -> None:
    good = _set()
    got = read_upload(_reply(to_array_record(good)), SPEC)
    assert torch.equal(got.images, good.images) and torch.equal(got.labels, good.labels)


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"images": np.full((20, 1, 8, 8), np.nan, np.float32), "labels": np.repeat(np.arange(10), 2)}, "non-finite"),
        ({"images": np.zeros((20, 3, 8, 8), np.float32), "labels": np.repeat(np.arange(10), 2)}, "expected"),
        ({"images": np.zeros((20, 1, 8, 8), np.float64), "labels": np.repeat(np.arange(10), 2)}, "float64"),
        ({"images": np.zeros((2, 1, 8, 8), np.float32), "labels": np.array([0, 12])}, "12"),
        ({"images": np.zeros((3, 1, 8, 8), np.float32), "labels": np.array([1, 1, 1])}, "max_per_class=2"),
        ({"images": np.zeros((0, 1, 8, 8), np.float32), "labels": np.zeros(0, np.int64)}, "empty"),
        ({"images": np.zeros((1, 1, 8, 8), np.float32), "labels": np.zeros(1, np.int64), "x": np.zeros(1)}, "exactly"),
    ],
    ids=["nan", "shape", "dtype", "label-range", "too-many", "empty", "extra-array"],
)
def test_bad_uploads_are_rejected_with_the_reason(arrays: dict[str, np.ndarray], message: str) -> None:
    arrays = {k: (v.astype(np.int64) if k == "labels" else v) for k, v in arrays.items()}
    with pytest.raises(SyntheticSetError, match=message):
        read_upload(_reply(arrays), SPEC)


# ---------------------------------------------------------------------------------- defence
def _client_sets(
    digits, flip: Iterable[int] = (), garbage: Iterable[int] = (), clients: int = 6
) -> list[SyntheticSet]:
    parts = partition_indices(digits.train.labels, FederatedConfig(num_clients=clients, partitioner="iid"), seed=0)
    sets = []
    for i, part in enumerate(parts):
        data = digits.train.subset(part[:60])
        labels = (data.labels + 5) % 10 if i in flip else data.labels
        images = torch.randn_like(data.images) * 3 if i in garbage else data.images
        sets.append(SyntheticSet(images, labels, 10))
    return sets


def test_defence_keeps_honest_sets(digits) -> None:
    screening = screen(_client_sets(digits), 0.5)
    assert screening.dropped == [] and all(s is not None and s > 0.7 for s in screening.scores)


def test_defence_drops_label_flipped_and_garbage_sets(digits) -> None:
    screening = screen(_client_sets(digits, flip=[1], garbage=[4]), 0.5)
    assert sorted(screening.dropped) == [1, 4]


def test_defence_needs_a_majority_to_compare_with(digits) -> None:
    assert screen(_client_sets(digits, flip=[1])[:2], 0.5).dropped == []


def test_defence_scores_many_sets_in_folds_with_one_classifier_per_fold(digits, monkeypatch) -> None:
    import strategies.defence as defence

    fits = []
    real_fit = defence.LogisticRegression.fit
    monkeypatch.setattr(defence.LogisticRegression, "fit", lambda self, x, y: fits.append(len(y)) or real_fit(self, x, y))
    sets = _client_sets(digits, flip=[3, 17], garbage=[25], clients=30)
    screening = screen(sets, 0.5, folds=5)
    assert len(fits) == 5  # not 30
    assert sorted(screening.dropped) == [3, 17, 25]
    assert all(s is not None for s in screening.scores)
    # Up to `folds` sets, every set is its own fold: leave-one-out, as before.
    few = _client_sets(digits, flip=[1])
    assert screen(few, 0.5, folds=6).scores == screen(few, 0.5, folds=50).scores
    with pytest.raises(ValueError, match="folds"):
        screen(few, 0.5, folds=1)


# ---------------------------------------------------------------------------------- metering
class FakeGrid:
    """Replies like a Grid would: node 1 answers, node 2 answers with an error, node 3 never does."""

    def get_node_ids(self) -> list[int]:
        return [1, 2, 3]

    def send_and_receive(self, messages: Iterable[Message], *, timeout: float | None = None) -> list[Message]:
        replies = []
        for m in messages:
            node = m.metadata.dst_node_id
            if node == 1:
                replies.append(Message(RecordDict({"arrays": ArrayRecord({"w": _array(np.zeros(100, np.float32))})}), reply_to=m))
            elif node == 2:
                replies.append(Message(Error(code=0, reason="client raised"), reply_to=m))
        return replies


def test_metered_grid_counts_bytes_and_failures() -> None:
    grid = MeteredGrid(FakeGrid())
    payload = RecordDict({"arrays": ArrayRecord({"w": _array(np.zeros(50, np.float32))}),
                          "config": ConfigRecord({"server-round": 4})})  # fmt: skip
    messages = [Message(content=payload, dst_node_id=n, message_type="train") for n in grid.get_node_ids()]
    grid.send_and_receive(messages, timeout=5)
    traffic = grid.traffic(4)
    per_message = record_bytes(payload)
    assert per_message >= 200 and traffic.download_bytes == 3 * per_message
    assert 400 <= traffic.upload_bytes < 600
    reasons = {item["node_id"]: item["reason"] for item in traffic.failed}
    assert reasons[2] == "error: client raised" and "no reply within 5" in reasons[3] and 1 not in reasons


class WindowedFakeGrid(FakeGrid):
    """A grid spoken to through push/pull: a pushed message is answered at the next pull (node 2 with
    an error, node 3 never); records who was asked and the most messages out at once."""

    def __init__(self, nodes: int) -> None:
        self.nodes, self.out, self.most_out, self.pushed = list(range(1, nodes + 1)), {}, 0, []

    def get_node_ids(self) -> list[int]:
        return self.nodes

    def push_messages(self, messages: Iterable[Message]) -> list[str]:
        ids = []
        for m in messages:
            m.metadata.__dict__["_message_id"] = f"m{len(self.pushed)}"  # as Flower's grids set it
            self.pushed.append(m.metadata.dst_node_id)
            self.out[m.metadata.message_id] = m
            ids.append(m.metadata.message_id)
        self.most_out = max(self.most_out, len(self.out))
        return ids

    def pull_messages(self, message_ids: Iterable[str]) -> list[Message]:
        replies = []
        for m in [self.out[i] for i in message_ids if i in self.out]:
            node = m.metadata.dst_node_id
            if node == 3:
                continue
            content = Error(code=0, reason="client raised") if node == 2 else RecordDict()
            replies.append(Message(content, reply_to=m))
            del self.out[m.metadata.message_id]
        return replies


def test_metered_grid_window_asks_everyone_with_at_most_max_in_flight_out() -> None:
    fake = WindowedFakeGrid(nodes=12)
    grid = MeteredGrid(fake, max_in_flight=4)
    payload = RecordDict({"config": ConfigRecord({"server-round": 2})})
    messages = [Message(content=payload, dst_node_id=n, message_type="train") for n in fake.nodes]
    replies = grid.send_and_receive(messages, timeout=0.5)
    assert sorted(fake.pushed) == fake.nodes and fake.most_out == 4
    assert sorted(r.metadata.src_node_id for r in replies) == [n for n in fake.nodes if n != 3]
    reasons = {item["node_id"]: item["reason"] for item in grid.traffic(2).failed}
    assert reasons == {2: "error: client raised", 3: "no reply within 0.5 s"}


def test_metered_grid_window_stops_at_the_timeout_and_counts_the_unsent_as_failed() -> None:
    fake = WindowedFakeGrid(nodes=5)
    grid = MeteredGrid(fake, max_in_flight=1)  # node 3 never answers and holds the only slot
    payload = RecordDict({"config": ConfigRecord({"server-round": 1})})
    messages = [Message(content=payload, dst_node_id=n, message_type="train") for n in fake.nodes]
    started = time.monotonic()
    grid.send_and_receive(messages, timeout=0.3)
    assert time.monotonic() - started < 2 and fake.pushed == [1, 2, 3]
    assert sorted(item["node_id"] for item in grid.traffic(1).failed) == [2, 3, 4, 5]
    with pytest.raises(ValueError, match="max_in_flight"):
        MeteredGrid(fake, max_in_flight=0)


# ---------------------------------------------------------------------------------- strategies
@pytest.fixture
def fast_config(make_config):
    return make_config


@pytest.fixture
def server(digits, fast_config) -> ServerContext:
    config = fast_config(federated={"num_clients": 3, "server_epochs": 3, "finetune_epochs": 2})
    return ServerContext(config, digits.test, CPU)


def test_every_registered_strategy_builds(server: ServerContext) -> None:
    for name in STRATEGIES.names():
        plan = STRATEGIES.get(name)(server)
        assert plan.num_rounds == (1 if name == "fedcondense" else server.config.federated.rounds)
        assert plan.train_config["task"] in ("condense", "fit")


def test_fedcondense_rejects_bad_uploads_and_trains_on_the_rest(digits, server: ServerContext) -> None:
    sets = _client_sets(digits, flip=[3])
    honest, flipped = sets[:3], sets[3]
    server.config.condense.ipc = 10  # the spec allows 10 images per class
    server.config.federated.server_epochs = 40  # enough to learn something from 180 images
    strategy = FedCondense(server)
    strategy.configure_train(1, server.initial_arrays(), ConfigRecord(), FakeGrid())
    bad = {"images": np.full((10, 1, 8, 8), np.inf, np.float32), "labels": np.arange(10, dtype=np.int64)}
    replies = [_reply(to_array_record(s), node=10 + i, partition=i) for i, s in enumerate(honest)]
    replies.append(_reply(bad, node=99, partition=7))
    replies.append(_reply(to_array_record(flipped), node=98, partition=8))
    arrays, metrics = strategy.aggregate_train(1, replies)
    assert arrays is not None and metrics["accepted-sets"] == 3
    reasons = {r["partition_id"]: r["reason"] for r in strategy.rejected}
    assert "non-finite" in reasons[7] and "defence" in reasons[8]
    # Trained on the three honest sets only, the global model is far better than its random start.
    assert server.accuracy(arrays) > server.accuracy(server.initial_arrays()) + 20
    assert not all(torch.equal(a, b) for a, b in zip(arrays.to_torch_state_dict().values(),
                                                     server.initial_arrays().to_torch_state_dict().values()))  # fmt: skip


def test_fedcondense_with_nothing_acceptable_keeps_the_model(server: ServerContext) -> None:
    bad = {"images": np.zeros((1, 1, 4, 4), np.float32), "labels": np.zeros(1, np.int64)}
    arrays, metrics = FedCondense(server).aggregate_train(1, [_reply(bad)])
    assert arrays is None and metrics["accepted-sets"] == 0


def test_iterative_sends_the_global_model(server: ServerContext) -> None:
    plan = STRATEGIES.get("fedcondense-iterative")(server)
    messages = list(plan.strategy.configure_train(2, server.initial_arrays(), plan.train_config, FakeGrid()))
    assert len(messages) == 3 and all("model" in m.content.array_records for m in messages)
    assert messages[0].content.config_records["config"]["server-round"] == 2
    one_shot = STRATEGIES.get("fedcondense")(server)
    messages = list(one_shot.strategy.configure_train(1, server.initial_arrays(), one_shot.train_config, FakeGrid()))
    assert record_bytes(messages[0].content) == 0  # one-shot downloads nothing


def test_hybrid_condenses_first_then_averages(server: ServerContext) -> None:
    plan = STRATEGIES.get("hybrid")(server)
    first = list(plan.strategy.configure_train(1, server.initial_arrays(), plan.train_config, FakeGrid()))
    later = list(plan.strategy.configure_train(2, server.initial_arrays(), plan.train_config, FakeGrid()))
    assert first[0].content.config_records["config"]["task"] == "condense"
    assert later[0].content.config_records["config"]["task"] == "fit" and "arrays" in later[0].content.array_records


def _fit_reply(arrays: ArrayRecord, node: int, **metrics: object) -> Message:
    sent = Message(content=RecordDict({"config": ConfigRecord({"server-round": 2})}), dst_node_id=node, message_type="train")
    values = {"num-examples": 50, "train-seconds": 0.5, "upload-bytes": 1000} | metrics
    client = ConfigRecord({"partition-id": node + 100})
    return Message(RecordDict({"arrays": arrays, "metrics": MetricRecord(values), "client": client}), reply_to=sent)


def _shifted(arrays: ArrayRecord, by: float, poison: str | None = None) -> ArrayRecord:
    state = {k: v.clone() + by if v.is_floating_point() else v.clone() for k, v in arrays.to_torch_state_dict().items()}
    if poison == "nan":
        first = next(k for k, v in state.items() if v.is_floating_point())
        state[first].view(-1)[0] = float("nan")
    return ArrayRecord(state)


def test_hybrid_rejects_bad_weights_and_averages_the_rest(server: ServerContext) -> None:
    # A client replying with NaN weights used to turn the hybrid's global model into NaNs.
    plan = STRATEGIES.get("hybrid")(server)
    start = server.initial_arrays()
    list(plan.strategy.configure_train(2, start, plan.train_config, FakeGrid()))
    state = start.to_torch_state_dict()
    first = next(iter(state))
    wrong_shape = ArrayRecord({**state, first: torch.zeros(3)})
    missing = ArrayRecord({k: v for k, v in state.items() if k != first})
    as_float64 = ArrayRecord({k: v.double() if v.is_floating_point() else v for k, v in state.items()})
    replies = [
        _fit_reply(_shifted(start, 1.0), node=1),
        _fit_reply(_shifted(start, 3.0), node=2),
        _fit_reply(_shifted(start, 0.0, poison="nan"), node=3),
        _fit_reply(wrong_shape, node=4),
        _fit_reply(missing, node=5),
        _fit_reply(as_float64, node=6),
        _fit_reply(_shifted(start, 0.0), node=7, **{"num-examples": 0}),
        _fit_reply(_shifted(start, 0.0), node=8, extra=1.0),
        Message(Error(code=0, reason="client raised"), reply_to=Message(RecordDict(), dst_node_id=9, message_type="train")),
    ]
    arrays, _ = plan.strategy.aggregate_train(2, replies)
    reasons = {r["node_id"]: r["reason"] for r in plan.strategy.rejected}
    assert sorted(reasons) == [3, 4, 5, 6, 7, 8] and all(r["round"] == 2 for r in plan.strategy.rejected)
    assert sorted(r["partition_id"] for r in plan.strategy.rejected) == [103, 104, 105, 106, 107, 108]
    assert "not finite" in reasons[3] and "shape" in reasons[4] and "missing" in reasons[5]
    assert "float64" in reasons[6] and "num-examples" in reasons[7] and "exactly" in reasons[8]
    averaged = arrays.to_torch_state_dict()
    # Equal weights: the mean of the two valid replies is the start shifted by 2.
    assert all(torch.allclose(averaged[k], v + 2.0) for k, v in state.items() if v.is_floating_point())


def test_hybrid_with_no_acceptable_reply_keeps_the_model(server: ServerContext) -> None:
    plan = STRATEGIES.get("hybrid")(server)
    start = server.initial_arrays()
    list(plan.strategy.configure_train(2, start, plan.train_config, FakeGrid()))
    arrays, _ = plan.strategy.aggregate_train(2, [_fit_reply(_shifted(start, 0.0, poison="nan"), node=1)])
    assert arrays is None and len(plan.strategy.rejected) == 1


@pytest.mark.parametrize(
    ("aggregator", "flower_class"),
    [("fedavg", "FedAvg"), ("fedmedian", "FedMedian"), ("fedtrimmedavg", "FedTrimmedAvg"), ("krum", "Krum"), ("multikrum", "MultiKrum")],
)
def test_hybrid_averages_with_flowers_aggregator(server: ServerContext, aggregator: str, flower_class: str) -> None:
    server.config.federated.aggregator = aggregator
    server.config.federated.num_malicious_clients = 1
    plan = STRATEGIES.get("hybrid")(server)
    assert type(plan.strategy.averaging).__name__ == flower_class
    start = server.initial_arrays()
    list(plan.strategy.configure_train(2, start, plan.train_config, FakeGrid()))
    replies = [_fit_reply(_shifted(start, by), node=i) for i, by in enumerate((0.0, 1.0, 1.0, 1.0, 1.0, 100.0), start=1)]
    averaged = plan.strategy.aggregate_train(2, replies)[0].to_torch_state_dict()
    moved = {k: float((averaged[k] - v).mean()) for k, v in start.to_torch_state_dict().items() if v.is_floating_point()}
    if aggregator == "fedavg":
        assert all(abs(m - 104.0 / 6) < 1e-3 for m in moved.values())  # the outlier pulls the mean
    else:
        assert all(abs(m - 1.0) < 1e-3 for m in moved.values())  # the robust ones hold it at 1


def _grid_nodes(messages: list[Message]) -> dict[str, list[int]]:
    by_task: dict[str, list[int]] = {}
    for m in messages:
        by_task.setdefault(m.content.config_records["config"]["task"], []).append(m.metadata.dst_node_id)
    return {task: sorted(nodes) for task, nodes in by_task.items()}


def test_corrected_uploads_in_round_one_and_every_refresh(server: ServerContext) -> None:
    plan = STRATEGIES.get("fedavg-corrected")(server)
    start = server.initial_arrays()
    first = list(plan.strategy.configure_train(1, start, plan.train_config, FakeGrid()))
    assert _grid_nodes(first) == {"fit": [1, 2, 3], "condense": [1, 2, 3]}
    condense = [m for m in first if m.content.config_records["config"]["task"] == "condense"]
    assert all("model" not in m.content.array_records for m in condense)  # round 1: the plain recipe
    later = list(plan.strategy.configure_train(2, start, plan.train_config, FakeGrid()))
    assert _grid_nodes(later) == {"fit": [1, 2, 3]}  # uploaded once by default
    server.config.federated.correction_refresh = 2
    refreshing = STRATEGIES.get("fedavg-corrected")(server).strategy
    assert [r for r in range(1, 8) if refreshing.uploads_in(r)] == [1, 3, 5, 7]
    third = list(refreshing.configure_train(3, start, plan.train_config, FakeGrid()))
    condense = [m for m in third if m.content.config_records["config"]["task"] == "condense"]
    assert len(condense) == 3 and all("model" in m.content.array_records for m in condense)


def _plain_average(replies: list[Message]) -> dict[str, torch.Tensor]:
    states = [r.content.array_records["arrays"].to_torch_state_dict() for r in replies]
    return {k: sum(s[k].double() for s in states) / len(states) for k in states[0]}


def test_corrected_averages_checked_weights_then_trains_on_accepted_sets(digits, server: ServerContext) -> None:
    server.config.condense.ipc = 10
    server.config.federated.correction_steps = 15
    plan = STRATEGIES.get("fedavg-corrected")(server)
    start = server.initial_arrays()
    list(plan.strategy.configure_train(1, start, plan.train_config, FakeGrid()))
    sets = _client_sets(digits, flip=[3])
    good = [_fit_reply(_shifted(start, 0.0), node=1), _fit_reply(_shifted(start, 0.0), node=2)]
    bad_set = {"images": np.full((10, 1, 8, 8), np.nan, np.float32), "labels": np.arange(10, dtype=np.int64)}
    replies = [*good, _fit_reply(_shifted(start, 0.0, poison="nan"), node=3)]
    replies += [_reply(to_array_record(s), node=10 + i, partition=i) for i, s in enumerate(sets[:4])]
    replies.append(_reply(bad_set, node=99, partition=9))
    arrays, _ = plan.strategy.aggregate_train(1, replies)
    reasons = {r["node_id"]: r["reason"] for r in plan.strategy.log.rejected}
    assert "invalid weights" in reasons[3] and "invalid upload" in reasons[99] and "defence" in reasons[13]
    assert len(plan.strategy.sets) == 3 and plan.strategy.log.rounds[1]["accepted"] == 3
    # The average is the (untrained) start; the correction on the honest sets makes it a classifier.
    assert server.accuracy(arrays) > server.accuracy(start) + 20
    # Round 2 asks for weights only: a set arriving then is rejected; the round-1 sets still correct.
    list(plan.strategy.configure_train(2, arrays, plan.train_config, FakeGrid()))
    round_two = [_fit_reply(_shifted(arrays, 0.01), node=1), _reply(to_array_record(sets[0]), node=12, partition=2)]
    corrected, _ = plan.strategy.aggregate_train(2, round_two)
    assert any(r["round"] == 2 and "unexpected upload" in r["reason"] for r in plan.strategy.log.rejected)
    average = _plain_average(round_two[:1])
    moved = corrected.to_torch_state_dict()
    assert any(not torch.allclose(moved[k].double(), v) for k, v in average.items() if v.is_floating_point())


def test_corrected_with_no_set_and_no_weights_keeps_the_model(server: ServerContext) -> None:
    plan = STRATEGIES.get("fedavg-corrected")(server)
    start = server.initial_arrays()
    list(plan.strategy.configure_train(1, start, plan.train_config, FakeGrid()))
    arrays, _ = plan.strategy.aggregate_train(1, [_fit_reply(_shifted(start, 0.0, poison="nan"), node=1)])
    assert arrays is None and plan.strategy.sets == [] and plan.strategy.log.rounds[1]["accepted"] == 0


@pytest.mark.parametrize("correction", [False, True])
def test_hybrid_corrects_its_averages_with_the_round_one_sets_when_asked(digits, server: ServerContext, correction: bool) -> None:
    server.config.condense.ipc = 10
    server.config.federated.hybrid_correction = correction
    server.config.federated.correction_steps = 5
    plan = STRATEGIES.get("hybrid")(server)
    start = server.initial_arrays()
    list(plan.strategy.configure_train(1, start, plan.train_config, FakeGrid()))
    warm, _ = plan.strategy.aggregate_train(1, [_reply(to_array_record(s), node=10 + i, partition=i)
                                                for i, s in enumerate(_client_sets(digits)[:3])])  # fmt: skip
    list(plan.strategy.configure_train(2, warm, plan.train_config, FakeGrid()))
    replies = [_fit_reply(_shifted(warm, 1.0), node=1), _fit_reply(_shifted(warm, 3.0), node=2)]
    arrays, _ = plan.strategy.aggregate_train(2, replies)
    state, average = arrays.to_torch_state_dict(), _plain_average(replies)
    same = all(torch.allclose(state[k].double(), v) for k, v in average.items() if v.is_floating_point())
    assert same is not correction


def test_server_training_distils_with_the_clients_teachers_temperature(server: ServerContext) -> None:
    assert server.kd_temperature == 1.0
    server.config.condense.labels = "teacher"
    server.config.condense.teacher.temperature = 4.0
    assert server.kd_temperature == 4.0
    server.config.evaluation.temperature = 2.0
    assert server.kd_temperature == 2.0
    server.config.evaluation.loss = "kd"
    soft = _set(3)
    soft = SyntheticSet(soft.images, torch.softmax(torch.randn(30, 10, generator=torch.Generator().manual_seed(1)), 1), 10)
    arrays = server.train_on(soft, start=None, epochs=1, seed=0, steps=2)
    assert arrays is not None
    # Hard labels are distilled as one-hot rows.
    assert server.train_on(_set(3), start=None, epochs=1, seed=0, steps=2) is not None


def test_config_checks_the_correction() -> None:
    with pytest.raises(ConfigError, match="federated.correction_steps must be at least 1"):
        Config.from_dict({"federated": {"correction_steps": 0}})
    with pytest.raises(ConfigError, match="federated.correction_refresh must be >= 0"):
        Config.from_dict({"federated": {"correction_refresh": -1}})


def test_config_checks_the_aggregator() -> None:
    with pytest.raises(ConfigError, match="federated.aggregator must be one of fedavg, fedmedian"):
        Config.from_dict({"federated": {"aggregator": "mean"}})
    with pytest.raises(ConfigError, match="federated.num_malicious_clients"):
        Config.from_dict({"federated": {"num_clients": 3, "num_malicious_clients": 3}})


# ---------------------------------------------------------------------------------- client side
def _context(partition: int, clients: int) -> Context:
    node_config = {"partition-id": partition, "num-partitions": clients}
    return Context(run_id=1, node_id=partition, node_config=node_config, state=RecordDict(), run_config={})


def test_client_condenses_its_partition(server: ServerContext) -> None:
    message = Message(RecordDict({"config": server.message_config("condense")}), dst_node_id=5, message_type="train")
    reply = client_app.train(message, _context(1, 3))
    metrics = reply.content.metric_records["metrics"]
    synthetic = read_upload(reply, server.spec)
    part = client_partition(load_dataset(server.config).train, server.config.federated, server.config.seed, 1)
    assert len(synthetic) == metrics["num-synthetic"] <= 20 and metrics["partition-id"] == 1
    # A client condenses only the classes it holds (Dirichlet partitions miss some).
    assert set(synthetic.hard_labels.tolist()) <= set(part.labels.tolist())
    assert metrics["upload-bytes"] == record_bytes(reply.content) and metrics["condense-seconds"] > 0
    assert metrics["num-examples"] == len(part)
    # Hard labels: one int64 each, in a .npy payload whose header is a few dozen bytes more.
    assert 8 * len(synthetic) < metrics["label-bytes"] <= 8 * len(synthetic) + 256
    assert metrics["iterations-run"] == server.config.condense.iterations and metrics["time-budget-hit"] == 0


def test_a_factorised_client_uploads_its_stored_images(server: ServerContext) -> None:
    server.config.condense.factor = 2
    message = Message(RecordDict({"config": server.message_config("condense")}), dst_node_id=5, message_type="train")
    reply = client_app.train(message, _context(1, 3))
    record = reply.content.array_records["synthetic"]
    assert set(record.keys()) == {"stored", "factor", "labels"}
    stored = record["stored"].numpy()
    synthetic = read_upload(reply, server.spec)  # decoded by the server: 4 images per stored one
    assert len(synthetic) == 4 * len(stored) == reply.content.metric_records["metrics"]["num-synthetic"]
    assert reply.content.metric_records["metrics"]["upload-bytes"] == record_bytes(reply.content)
    assert len(record["stored"].data) - 128 == synthetic.images.numel()  # a quarter of the decoded images' 4 bytes a value
    with pytest.raises(SyntheticSetError, match="factor 2 but 1 expected"):
        read_upload(reply, dataclasses.replace(server.spec, factor=1))


def test_client_uploads_its_teachers_soft_labels_within_its_time_budget(server: ServerContext) -> None:
    server.config.condense.labels = "teacher"
    server.config.condense.teacher.steps = 5
    server.config.condense.iterations = 10_000
    server.config.condense.max_seconds = 0.5
    message = Message(RecordDict({"config": server.message_config("condense")}), dst_node_id=5, message_type="train")
    reply = client_app.train(message, _context(0, 3))
    metrics = reply.content.metric_records["metrics"]
    synthetic = read_upload(reply, server.spec)
    assert synthetic.labels.ndim == 2 and torch.allclose(synthetic.labels.sum(1), torch.ones(len(synthetic)))
    assert 40 * len(synthetic) < metrics["label-bytes"] <= 40 * len(synthetic) + 256  # float32 distributions
    assert metrics["time-budget-hit"] == 1 and 1 <= metrics["iterations-run"] < 10_000


def test_private_client_reports_its_guarantee_and_the_server_records_it(digits, fast_config) -> None:
    config = fast_config(
        condense={"init": "noise", "discrepancy": "mmd-linear", "pool_networks": 2, "iterations": 2},
        federated={"num_clients": 3},
        privacy={"epsilon": 2.0, "delta": 1e-5},
    )
    server = ServerContext(config, digits.test, CPU)
    message = Message(RecordDict({"config": server.message_config("condense")}), dst_node_id=5, message_type="train")
    reply = client_app.train(message, _context(0, 3))
    metrics = reply.content.metric_records["metrics"]
    assert metrics["epsilon"] <= 2.0 and metrics["delta"] == 1e-5
    strategy = FedCondense(server)
    strategy.aggregate_train(1, [reply])
    assert strategy.log.rounds[1]["clients"][0]["epsilon"] == metrics["epsilon"]
    # Every class gets its images, held or not: what a client holds is private.
    assert len(read_upload(reply, server.spec)) == 10 * config.condense.ipc


def test_client_fit_trains_the_global_model(server: ServerContext) -> None:
    content = RecordDict({"arrays": server.initial_arrays(), "config": server.message_config("fit", **{"server-round": 1})})
    reply = client_app.train(Message(content, dst_node_id=5, message_type="train"), _context(0, 3))
    trained = reply.content.array_records["arrays"].to_torch_state_dict()
    start = server.initial_arrays().to_torch_state_dict()
    assert any(not torch.equal(trained[k], start[k]) for k in start)
    assert reply.content.metric_records["metrics"]["num-examples"] > 0


def test_a_label_flipping_client_also_trains_on_flipped_labels(server: ServerContext) -> None:
    from simulations.attacks import attacked_client_app

    f = server.config.federated
    f.partitioner, f.local_epochs, f.local_lr = "iid", 8, 0.05
    content = RecordDict({"arrays": server.initial_arrays(), "config": server.message_config("fit", **{"server-round": 1})})
    app = attacked_client_app({0: "label-flip"}, num_classes=10)
    predictions = {}
    for name, reply_of in (("flipped", app), ("honest", client_app.app)):
        reply = reply_of(Message(content, dst_node_id=5, message_type="train"), _context(0, 3))
        with torch.no_grad():
            predictions[name] = server.network(reply.content.array_records["arrays"])(server.test.images).argmax(1)
    truth = server.test.labels

    def agreement(name: str, labels: torch.Tensor) -> float:
        return float((predictions[name] == labels).float().mean())

    assert agreement("honest", truth) > 0.5 and agreement("flipped", 9 - truth) > 0.5
    assert agreement("flipped", truth) < 0.2


def test_client_refuses_a_mismatched_node(server: ServerContext) -> None:
    message = Message(RecordDict({"config": server.message_config("condense")}), dst_node_id=5, message_type="train")
    with pytest.raises(ConfigError, match="num-partitions=4"):
        client_app.train(message, _context(0, 4))
    bad = Message(RecordDict({"config": server.message_config("dance")}), dst_node_id=5, message_type="train")
    with pytest.raises(ConfigError, match="unknown task 'dance'"):
        client_app.train(bad, _context(0, 3))


def test_proximal_term_pulls_towards_the_start(digits, fast_config) -> None:
    cfg = dataclasses.replace(fast_config().evaluation, epochs=2, lr=0.05, batch_size=32)

    def drift(mu: float) -> float:
        net = fresh_network("convnet", digits.train.images.shape[1:], 10, device=CPU, seed=0)
        start = [p.detach().clone() for p in net.parameters()]
        fit(net, digits.train.images[:256], digits.train.labels[:256], cfg=cfg, dsa_strategy=None, device=CPU,
            seed=0, decay=False, proximal_mu=mu)  # fmt: skip
        return float(sum(((p.detach() - s) ** 2).sum() for p, s in zip(net.parameters(), start)))

    assert drift(10.0) < 0.5 * drift(0.0)


@pytest.mark.parametrize(("fraction", "expect_trained"), [(0.0, True), (1.0, False)])
def test_mixed_embedding_uses_the_global_or_random_networks(fraction: float, expect_trained: bool) -> None:
    context = FeatureContext("convnet", 1, 10, (8, 8), CPU)
    trained = fresh_network("convnet", (1, 8, 8), 10, device=CPU, seed=5)
    feature_map = build_feature_map("mixed-embedding", context, random_fraction=fraction, network=trained)
    for _ in range(3):
        feature_map.refresh()
        assert (feature_map.net is trained) == expect_trained
    with pytest.raises(ConfigError, match="random_fraction"):
        build_feature_map("mixed-embedding", context, random_fraction=2.0, network=trained)
