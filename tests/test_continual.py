"""Condensed replay memory in Avalanche: the storage policy, the plugins, the benchmarks, the command."""

from __future__ import annotations

import gzip
import json
import statistics
import struct
import warnings
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch
from avalanche.benchmarks.utils import _make_taskaware_tensor_classification_dataset
from avalanche.training.plugins import SupervisedPlugin
from avalanche.training.supervised import Naive
from sklearn.datasets import load_digits
from torch.utils.data import TensorDataset

from fedcond.apps.cli import main
from fedcond.config import Config
from fedcond.continual import CondensedBuffer, CondensedGDumbPlugin, CondensedReplayPlugin
from fedcond.continual.benchmarks import build_benchmark
from fedcond.errors import ConfigError, DataError
from fedcond.models import build_model

pytestmark = pytest.mark.filterwarnings("ignore")


def continual_config(**continual: Any) -> Config:
    """Digits, tiny condensation and training budgets (seconds per test)."""
    return Config.from_dict({
        "progress": False,
        "device": "cpu",
        "condense": {"iterations": 5, "batch_real": 32, "pool_networks": 0, "discrepancy": "mmd-linear"},
        "continual": {"seeds": 1, "train_epochs": 2, "gdumb_epochs": 3, "model_params": {"norm": "batchnorm"}, **continual},
    })  # fmt: skip


@pytest.fixture(scope="module")
def scenario() -> Any:
    return build_benchmark(continual_config(), seed=0)


def model_for(scenario: Any) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model("convnet", channels=1, num_classes=10, image_size=(8, 8), norm="batchnorm")


def naive(model: torch.nn.Module, plugins: list, epochs: int = 2, mb: int = 32) -> Naive:
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    return Naive(model=model, optimizer=optimizer, criterion=torch.nn.CrossEntropyLoss(), train_mb_size=mb,
                 train_epochs=epochs, eval_mb_size=256, device="cpu", plugins=plugins, evaluator=None)  # fmt: skip


class BatchSpy(SupervisedPlugin):
    """Records the labels and size of every training minibatch, per experience."""

    def __init__(self) -> None:
        super().__init__()
        self.labels: list[torch.Tensor] = []
        self.sizes: list[list[int]] = []

    def before_training_exp(self, strategy: Any, **kwargs: Any) -> None:
        self.labels.append(torch.empty(0, dtype=torch.int64))
        self.sizes.append([])

    def before_forward(self, strategy: Any, **kwargs: Any) -> None:
        self.labels[-1] = torch.cat([self.labels[-1], strategy.mb_y.cpu()])
        self.sizes[-1].append(len(strategy.mb_y))


def accuracy(model: torch.nn.Module, stream: Any, upto: int) -> float:
    model.eval()
    correct = total = 0
    with torch.no_grad():
        for exp in list(stream)[: upto + 1]:
            x = torch.stack([exp.dataset[i][0] for i in range(len(exp.dataset))])
            y = torch.tensor([int(exp.dataset[i][1]) for i in range(len(exp.dataset))])
            correct += int((model(x).argmax(1) == y).sum())
            total += len(y)
    return 100 * correct / total


# ---------------------------------------------------------------------------- the storage policy


def test_buffer_is_class_balanced_condensed_and_shrinks_old_classes(scenario: Any) -> None:
    buffer = CondensedBuffer(20, continual_config())
    stream = scenario.scenario.train_stream
    agent = SimpleNamespace(model=None)
    buffer.post_adapt(agent, stream[0])
    first = sorted(stream[0].classes_in_this_experience)
    assert buffer.class_sizes() == {c: 10 for c in first}
    held_before = {c: buffer._images[c].clone() for c in first}
    buffer.post_adapt(agent, stream[1])
    classes = sorted(first + sorted(stream[1].classes_in_this_experience))
    assert buffer.class_sizes() == {c: 5 for c in classes}
    assert len(buffer.buffer) == 20 and len(buffer.condense_seconds) == 2

    # Items have the benchmark's (x, y, t) layout, labels match the targets attribute.
    x, y, t = buffer.buffer[0]
    assert x.shape == (1, 8, 8) and isinstance(t, int) and t == 0
    assert sorted(set(int(v) for v in buffer.buffer.targets)) == classes
    # Condensed, not copied: the images moved away from every real sample of their class.
    real = torch.cat([exp.dataset.eval()[i][0][None] for exp in stream[:2] for i in range(len(exp.dataset))])
    nearest = torch.cdist(buffer._images[first[0]].flatten(1), real.flatten(1)).min(1).values
    assert float(nearest.min()) > 1e-3
    # Re-condensed from what was held: 5 images, none equal to the 10 held before.
    assert not any(torch.equal(a, b) for a in buffer._images[first[0]] for b in held_before[first[0]])


def test_select_shrink_keeps_a_subset_of_what_was_held(scenario: Any) -> None:
    buffer = CondensedBuffer(20, continual_config(), shrink="select")
    stream, agent = scenario.scenario.train_stream, SimpleNamespace(model=None)
    buffer.post_adapt(agent, stream[0])
    c = sorted(stream[0].classes_in_this_experience)[0]
    held = buffer._images[c].clone()
    buffer.post_adapt(agent, stream[1])
    kept = buffer._images[c]
    assert len(kept) == 5 and all(any(torch.equal(k, h) for h in held) for k in kept)


@pytest.mark.parametrize("shrink", ["recondense", "select"])
def test_factorised_memory_counts_stored_pixels_and_replays_the_tiles(scenario: Any, shrink: str) -> None:
    factorised = continual_config()
    factorised.condense.factor = 2  # 8x8 digits: 2x2 tiles of 4x4 pixels per stored image
    with pytest.raises(ConfigError, match="budget='pixels'"):  # counting replayed images
        CondensedBuffer(20, factorised)
    buffer = CondensedBuffer(20, factorised, budget="pixels", shrink=shrink)
    stream, agent = scenario.scenario.train_stream, SimpleNamespace(model=None)
    for exp in stream[:2]:
        buffer.post_adapt(agent, exp)
    classes = sorted(set(stream[0].classes_in_this_experience) | set(stream[1].classes_in_this_experience))
    # 20 stored images of 8x8 (5 per class) replay as 80 samples of 8x8, each a decoded 4x4 tile.
    assert buffer.stored_sizes() == {c: 5 for c in classes} and buffer.stored_size == 20
    assert buffer.class_sizes() == {c: 20 for c in classes} and len(buffer.buffer) == 80
    # Every replayed sample is a decoded 4x4 tile: in the range of the (linear) tile decoder.
    basis = torch.eye(16).reshape(16, 1, 4, 4)
    upsample = torch.nn.functional.interpolate(basis, size=(8, 8), mode="bilinear", align_corners=False).reshape(16, 64).T
    samples = torch.cat([buffer._images[c] for c in classes]).reshape(-1, 64).T
    tiles = torch.linalg.lstsq(upsample, samples).solution
    assert torch.allclose(upsample @ tiles, samples, atol=1e-4)
    # The budget is one config key, checked once.
    with pytest.raises(ConfigError, match="continual.budget"):
        Config.from_dict({**continual_config().to_dict(), "condense": {"factor": 2}}).validate()
    Config.from_dict({**continual_config(budget="pixels").to_dict(), "condense": {"factor": 2}}).validate()


def test_each_update_condenses_its_classes_jointly(scenario: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    condense_module = sys.modules["fedcond.condense"]  # the package; fedcond.condense is also its function
    calls: list[tuple[int, int]] = []
    real_condense = condense_module.condense

    def spy(data: Any, config: Config, **kwargs: Any) -> Any:
        calls.append((data.num_classes, config.condense.ipc))
        return real_condense(data, config, **kwargs)

    monkeypatch.setattr(condense_module, "condense", spy)
    buffer = CondensedBuffer(20, continual_config())
    stream, agent = scenario.scenario.train_stream, SimpleNamespace(model=None)
    buffer.post_adapt(agent, stream[0])
    buffer.post_adapt(agent, stream[1])
    # One call for the first experience's classes, then one shrinking the old ones, one for the new.
    assert calls == [(2, 10), (2, 5), (2, 5)]
    assert buffer.class_sizes() == {c: 5 for c in buffer.classes} and len(buffer.classes) == 4


def test_truncated_herding_picks_what_avalanche_herding_picks() -> None:
    from avalanche.training.storage_policy import HerdingSelectionStrategy

    from fedcond.continual.storage import TruncatedHerding

    model = build_model("convnet", channels=1, num_classes=10, image_size=(8, 8))
    features = torch.randn(300, 4, 2, 2, generator=torch.Generator().manual_seed(0))
    full = HerdingSelectionStrategy(model, "features").make_sorted_indices_from_features(features.flatten(1))
    truncated = TruncatedHerding(model, "features", limit=25).make_sorted_indices_from_features(features)
    assert truncated[:25] == full[:25]
    assert sorted(truncated) == list(range(300))


def test_resize_shrinks_to_the_new_quota(scenario: Any) -> None:
    buffer = CondensedBuffer(20, continual_config(), shrink="select")
    buffer.post_adapt(SimpleNamespace(model=None), scenario.scenario.train_stream[0])
    buffer.resize(SimpleNamespace(model=None), 8)
    assert buffer.max_size == 8 and set(buffer.class_sizes().values()) == {4} and len(buffer.buffer) == 8


def test_model_features_leave_the_model_trainable(scenario: Any) -> None:
    model = model_for(scenario)
    model.train()
    buffer = CondensedBuffer(10, continual_config(), features="model")
    buffer.post_adapt(SimpleNamespace(model=model), scenario.scenario.train_stream[0])
    assert len(buffer.buffer) == 10
    assert model.training and all(p.requires_grad for p in model.parameters())


def test_model_features_need_an_embedding(scenario: Any) -> None:
    buffer = CondensedBuffer(10, continual_config(), features="model")
    with pytest.raises(ConfigError, match="embed"):
        buffer.post_adapt(SimpleNamespace(model=torch.nn.Linear(64, 10)), scenario.scenario.train_stream[0])


def test_bad_input_is_refused_with_a_clear_error(scenario: Any) -> None:
    with pytest.raises(ConfigError, match="smaller than the 2 classes"):
        CondensedBuffer(1, continual_config()).post_adapt(SimpleNamespace(model=None), scenario.scenario.train_stream[0])
    no_targets = SimpleNamespace(dataset=TensorDataset(torch.zeros(4, 1, 8, 8), torch.zeros(4, dtype=torch.int64)))
    with pytest.raises(DataError, match="no targets"):
        CondensedBuffer(10, continual_config()).post_adapt(SimpleNamespace(model=None), no_targets)
    flat = _make_taskaware_tensor_classification_dataset(torch.zeros(4, 64), torch.tensor([0, 0, 1, 1]))
    with pytest.raises(DataError, match=r"images \[N, C, H, W\]"):
        CondensedBuffer(10, continual_config()).post_adapt(SimpleNamespace(model=None), SimpleNamespace(dataset=flat))
    with pytest.raises(ConfigError, match="mem_size"):
        CondensedBuffer(0, continual_config())
    with pytest.raises(ConfigError, match="factor"):
        CondensedBuffer(10, Config.from_dict({"condense": {"factor": 2}}))
    with pytest.raises(ConfigError, match="shrink"):
        CondensedBuffer(10, continual_config(), shrink="drop")
    buffer = CondensedBuffer(10, continual_config())
    with pytest.raises(AttributeError, match="cannot be assigned"):
        buffer.buffer = scenario.scenario.train_stream[0].dataset


def test_items_without_task_labels_keep_that_layout() -> None:
    from avalanche.benchmarks.utils.classification_dataset import ClassificationDataset
    from avalanche.benchmarks.utils.data_attribute import DataAttribute

    bunch = load_digits()
    x = torch.tensor(bunch.images[:200], dtype=torch.float32)[:, None] / 16
    y = torch.tensor(bunch.target[:200])
    pairs = ClassificationDataset([TensorDataset(x, y)], data_attributes=[DataAttribute(y, "targets")])
    buffer = CondensedBuffer(20, continual_config())
    buffer.post_adapt(SimpleNamespace(model=None), SimpleNamespace(dataset=pairs))
    assert len(buffer.buffer[0]) == 2 and len(buffer.buffer) == 20


# ---------------------------------------------------------------------------- the plugins


def test_replay_plugin_mixes_memory_into_batches_of_the_same_size(scenario: Any) -> None:
    spy = BatchSpy()
    model = model_for(scenario)
    plugin = CondensedReplayPlugin(mem_size=20, config=continual_config())
    strategy = naive(model, [plugin, spy], epochs=3)
    stream = scenario.scenario.train_stream
    for exp in stream[:3]:
        strategy.train(exp)
    old = set(stream[0].classes_in_this_experience)
    assert old <= set(spy.labels[1].tolist())  # memory is replayed from the second experience on
    assert set(spy.labels[2].tolist()) >= old  # the first experience's classes come back from memory
    # Avalanche's ReplayPlugin would double the batch once memory is used; this one splits it.
    assert max(spy.sizes[0]) == 32 and max(spy.sizes[2]) == 32
    assert len(plugin.storage_policy.buffer) == 18  # 6 classes x 3 (20 // 6)
    # Replay keeps the old classes alive where fine-tuning forgets them.
    plain = naive(model_for(scenario), [], epochs=3)
    for exp in stream[:3]:
        plain.train(exp)
    assert accuracy(strategy.model, scenario.scenario.test_stream, 0) > accuracy(plain.model, scenario.scenario.test_stream, 0) + 20


def test_gdumb_plugin_restarts_and_trains_on_the_memory_only(scenario: Any) -> None:
    spy = BatchSpy()
    model = model_for(scenario)
    initial = {k: v.clone() for k, v in model.state_dict().items()}

    class StartSpy(SupervisedPlugin):
        def before_training_epoch(self, strategy: Any, **kwargs: Any) -> None:
            if strategy.clock.train_exp_epochs == 0:
                self.same = all(torch.equal(v, initial[k]) for k, v in strategy.model.state_dict().items())

    start = StartSpy()
    plugin = CondensedGDumbPlugin(mem_size=20, config=continual_config())
    strategy = naive(model, [plugin, spy, start], epochs=2)
    for exp in scenario.scenario.train_stream[:2]:
        strategy.train(exp)
        assert start.same
    assert [sum(s) for s in spy.sizes] == [2 * 20, 2 * 20]  # two epochs over the 20-sample memory, nothing else
    assert sorted(set(spy.labels[1].tolist())) == sorted(plugin.storage_policy.classes)


def test_plugin_refuses_a_policy_of_another_size() -> None:
    with pytest.raises(ConfigError, match="differs"):
        CondensedReplayPlugin(mem_size=20, storage_policy=CondensedBuffer(10, continual_config()))


# ---------------------------------------------------------------------------- benchmarks Avalanche builds


def test_class_incremental_benchmark_over_tensors(scenario: Any) -> None:
    assert scenario.name == "split-digits" and scenario.num_classes == 10 and scenario.image_shape == (1, 8, 8)
    assert len(scenario.scenario.train_stream) == 5 and sorted(scenario.class_order) == list(range(10))
    fixed = build_benchmark(continual_config(class_order=[9, 8, 7, 6, 5, 4, 3, 2, 1, 0]), seed=3)
    assert fixed.class_order == [8, 9, 6, 7, 4, 5, 2, 3, 0, 1]
    with pytest.raises(ConfigError, match="divide"):
        build_benchmark(continual_config(experiences=3), seed=0)
    with pytest.raises(ConfigError, match="permutation"):
        build_benchmark(continual_config(class_order=[0, 1, 2]), seed=0)


def _write_mnist_root(root: Path) -> None:
    """MNIST-format IDX files (gzipped, as Debian ships them) holding real 8x8 digits."""
    bunch = load_digits()
    images = (bunch.images * 16).clip(0, 255).astype(np.uint8)
    labels = bunch.target.astype(np.uint8)
    split = {"train": (images[:1400], labels[:1400]), "t10k": (images[1400:], labels[1400:])}
    root.mkdir(parents=True)
    for prefix, (x, y) in split.items():
        for kind, array in (("images-idx3-ubyte", x), ("labels-idx1-ubyte", y)):
            header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
            with gzip.open(root / f"{prefix}-{kind}.gz", "wb") as f:
                f.write(header + array.tobytes())


@pytest.mark.parametrize("dataset", ["mnist", "fashion-mnist"])
def test_avalanche_split_mnist_from_a_local_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, dataset: str) -> None:
    """Avalanche's own SplitMNIST/SplitFMNIST read the files fedcond found; nothing is downloaded."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    _write_mnist_root(tmp_path / "idx")
    config = Config.from_dict({**continual_config().to_dict(), "dataset": {"name": dataset, "data_root": str(tmp_path / "idx")}})
    bench = build_benchmark(config, seed=0)
    assert bench.name == f"split-{dataset}" and bench.image_shape == (1, 8, 8)
    raw = next((tmp_path / "cache").rglob("train-images-idx3-ubyte"))
    assert raw.parent.name == "raw" and raw.read_bytes()[:4] == bytes([0, 0, 8, 3])  # unpacked IDX
    assert sum(len(e.dataset) for e in bench.scenario.train_stream) == 1400
    plugin = CondensedReplayPlugin(mem_size=20, config=continual_config())
    strategy = naive(model_for(bench), [plugin], epochs=1)
    for exp in bench.scenario.train_stream[:2]:
        strategy.train(exp)
    x, y, t = plugin.storage_policy.buffer[0]
    sample = bench.scenario.train_stream[0].dataset[0]
    assert x.shape == sample[0].shape and isinstance(t, int) and len(plugin.storage_policy.buffer) == 20


def test_missing_idx_files_are_one_clear_error(tmp_path: Path) -> None:
    from fedcond.errors import DatasetUnavailableError

    config = Config.from_dict({"dataset": {"name": "mnist", "data_root": str(tmp_path)}})
    with pytest.raises(DatasetUnavailableError, match="not found"):
        build_benchmark(config, seed=0)


# ---------------------------------------------------------------------------- fedcond continual


def test_continual_command_compares_methods_and_writes_results(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    overrides = ["progress=false", "device=cpu", "condense.iterations=5", "condense.pool_networks=0",
                 "condense.batch_real=32", "continual.seeds=2", "continual.mem_size=20", "continual.train_epochs=1",
                 "continual.gdumb_epochs=2", "continual.model_params={norm: batchnorm}",
                 "continual.methods=[condensed, condensed-gdumb, replay, class-balanced, herding, gdumb, naive]"]  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        code = main(["continual", "--out", str(out), *[a for o in overrides for a in ("--set", o)]])
    assert code == 0
    printed = capsys.readouterr().out
    assert "condensed" in printed and "forgetting" in printed
    results = json.loads((out / "results.json").read_text())
    assert results["benchmark"] == "split-digits" and results["mem_size"] == 20 and results["complete"]
    assert len(results["class_orders"]) == 2 and results["class_orders"][0] != results["class_orders"][1]
    for name, method in results["methods"].items():
        assert len(method["accuracy_per_experience"]) == 5 and len(method["runs"]) == 2
        assert method["final_average_accuracy"] == pytest.approx(method["accuracy_per_experience"][-1])
        assert method["forgetting"] == pytest.approx(statistics.fmean(r["forgetting"] for r in method["runs"]), abs=0.01)
        expected_memory = 0 if name == "naive" else 20
        assert method["memory_size"] == expected_memory
        condensing = name.startswith("condensed")
        assert (sum(method["condense_seconds_per_experience"]) > 0) == condensing
    # Fine-tuning without a memory forgets the old experiences; every replay of a memory forgets far less.
    forgetting = {name: method["forgetting"] for name, method in results["methods"].items()}
    assert all(forgetting["naive"] > forgetting[name] + 20 for name in ("condensed", "replay", "class-balanced", "herding"))
    assert (out / "accuracy_per_experience.png").stat().st_size > 1000


def test_continual_command_runs_condensed_der_on_a_factorised_memory_with_bias_correction(tmp_path: Path) -> None:
    out = tmp_path / "run"
    overrides = ["progress=false", "device=cpu", "condense.iterations=5", "condense.pool_networks=0",
                 "condense.batch_real=32", "condense.factor=2", "continual.budget=pixels", "continual.seeds=1",
                 "continual.mem_size=20", "continual.train_epochs=1", "continual.balanced_finetune_epochs=2",
                 "continual.model_params={norm: batchnorm}", "continual.methods=[condensed-der, replay]"]  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["continual", "--out", str(out), *[a for o in overrides for a in ("--set", o)]]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["budget"] == "pixels"
    der, replay = results["methods"]["condensed-der"], results["methods"]["replay"]
    # The same 20 stored 8x8 images each: condensed DER replays their 80 tiles, replay its 20 images.
    assert (der["memory_size"], der["memory_samples"]) == (20, 80)
    assert (replay["memory_size"], replay["memory_samples"]) == (20, 20)


@pytest.mark.parametrize(
    "override, message",
    [
        ("continual.mem_size=5", "smaller than the"),
        ("continual.experiences=3", "divide"),
        ("continual.methods=[replay, icarl]", "unknown continual method 'icarl'"),
        ("continual.shrink=drop", "continual.shrink"),
        ("continual.model_params={depth_typo: 2}", "no option"),
        ("continual.budget=bytes", "continual.budget"),
        ("condense.factor=2", "continual.budget: pixels"),
        ("continual.balanced_finetune_layers=head", "continual.balanced_finetune_layers"),
        ("continual.balanced_finetune_epochs=-1", "balanced_finetune_epochs"),
    ],
)
def test_continual_command_bad_input_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], override: str, message: str
) -> None:
    base = ["--set", "progress=false", "--set", "continual.seeds=1", "--set", "continual.methods=[condensed]",
            "--set", "condense.iterations=1", "--set", "continual.experiences=5"]  # fmt: skip
    code = main(["continual", "--out", str(tmp_path), *base, "--set", override])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and message in err
    assert not (tmp_path / "results.json").exists()


def test_dsa_plugin_augments_training_batches_only(scenario: Any) -> None:
    from fedcond.continual.plugins import DSAPlugin

    seen: dict[str, list[torch.Tensor]] = {"train": [], "eval": []}

    class Inputs(SupervisedPlugin):
        def before_forward(self, strategy: Any, **kwargs: Any) -> None:
            seen["train"].append(strategy.mbatch[0].clone())

        def before_eval_forward(self, strategy: Any, **kwargs: Any) -> None:
            seen["eval"].append(strategy.mbatch[0].clone())

    exp = scenario.scenario.train_stream[0]
    strategy = naive(model_for(scenario), [DSAPlugin("flip", seed=0), Inputs()], epochs=1, mb=len(exp.dataset))
    strategy.train(exp)
    strategy.eval([exp])
    real = torch.stack([exp.dataset.eval()[i][0] for i in range(len(exp.dataset))])
    flipped = real.flip(-1)
    # Each training sample is the real one or its mirror image (DSA's flip), and some were flipped.
    x = seen["train"][0]
    row_match = lambda a, b: torch.isclose(a[:, None], b[None]).flatten(2).all(-1).any(1)  # noqa: E731
    assert bool((row_match(x, real) | row_match(x, flipped)).all()) and not bool(row_match(x, real).all())
    assert bool(row_match(seen["eval"][0], real).all())  # evaluation is never augmented
    with pytest.raises(ConfigError):
        DSAPlugin("flip_warp")


@pytest.mark.parametrize("name", ["gdumb", "condensed-gdumb"])
def test_retraining_methods_follow_the_protocols_schedule(scenario: Any, name: str) -> None:
    from avalanche.training.plugins import LRSchedulerPlugin

    from fedcond.continual.methods import CONTINUAL_METHODS, MethodSettings

    config = continual_config(gdumb_epochs=4)
    strategy, memory = CONTINUAL_METHODS.get(name)(model_for(scenario), MethodSettings(config, torch.device("cpu"), None))
    lrs: list[float] = []

    class LR(SupervisedPlugin):
        def before_training_epoch(self, strategy: Any, **kwargs: Any) -> None:
            lrs.append(strategy.optimizer.param_groups[0]["lr"])

    strategy.plugins.append(LR())
    for exp in scenario.scenario.train_stream[:2]:
        strategy.train(exp)
    # Four epochs per experience, lr x0.1 at half-way, restarted at the next experience.
    assert lrs == pytest.approx([0.01, 0.01, 0.001, 0.001] * 2)
    assert any(isinstance(p, LRSchedulerPlugin) for p in strategy.plugins) and len(memory.buffer) == 100 // 4 * 4


class TrainedOnSpy(SupervisedPlugin):
    """Records the labels and images of everything each training step forwarded, memory included:
    DER joins its memory batch to the minibatch after ``before_forward``; ER-ACE forwards it apart."""

    def __init__(self) -> None:
        super().__init__()
        self.labels: list[torch.Tensor] = []
        self.memory_images: list[torch.Tensor] = []
        self.stored: torch.Tensor | None = None  # the memory's images while the last experience trained

    def before_training_exp(self, strategy: Any, **kwargs: Any) -> None:
        self.labels.append(torch.empty(0, dtype=torch.int64))

    def before_training_epoch(self, strategy: Any, **kwargs: Any) -> None:
        buffer = strategy.storage_policy.buffer
        self.stored = torch.stack([buffer[i][0] for i in range(len(buffer))]) if len(buffer) else None

    def after_forward(self, strategy: Any, **kwargs: Any) -> None:
        labels = [strategy.mb_y.cpu()]
        if getattr(strategy, "replay_loader", None) is not None and hasattr(strategy, "mb_buffer_y"):
            labels.append(strategy.mb_buffer_y.cpu())
            self.memory_images.append(strategy.mb_buffer_x.cpu())
        elif getattr(strategy, "replay_loader", None) is not None:
            self.memory_images.append(strategy.mb_x[: strategy.batch_size_mem].cpu())
        self.labels[-1] = torch.cat([self.labels[-1], *labels])


@pytest.mark.parametrize("name", ["der", "er-ace"])
def test_avalanche_der_and_er_ace_replay_a_memory_smaller_than_the_memory_batch(scenario: Any, name: str) -> None:
    from avalanche.training.supervised import DER, ER_ACE

    from fedcond.continual.methods import CONTINUAL_METHODS, MethodSettings
    from fedcond.continual.plugins import DSAPlugin

    # Avalanche's own loaders replay only a full batch_size_mem: 20 < 32 would never replay.
    config = continual_config(mem_size=20, batch_size_mem=32, train_mb_size=16, train_epochs=1)
    strategy, memory = CONTINUAL_METHODS.get(name)(model_for(scenario), MethodSettings(config, torch.device("cpu"), None))
    assert isinstance(strategy, DER if name == "der" else ER_ACE)
    spy = TrainedOnSpy()
    strategy.plugins += [DSAPlugin("flip", seed=0), spy]
    streams = scenario.scenario.train_stream
    for exp in streams[:2]:
        strategy.train(exp)
    first = set(streams[0].classes_in_this_experience)
    assert len(memory.buffer) == 20
    assert not set(spy.labels[0].tolist()) - first  # nothing to replay in the first experience
    # The second experience trains on memory samples of the first experience's classes...
    assert set(spy.labels[1].tolist()) & first
    # ...augmented by the DSA plugin like every other batch: some memory images are mirrored.
    stored = spy.stored.flatten(1)
    seen = torch.cat(spy.memory_images).flatten(1)
    as_stored = torch.isclose(seen[:, None], stored[None]).all(-1).any(1)
    assert len(seen) > 0 and not bool(as_stored.all())


# ---------------------------------------------------------------------------- condensed DER and bias correction


def test_condensed_der_stores_the_learners_logits_and_distils_them(scenario: Any) -> None:
    from fedcond.continual import CondensedDERPlugin

    stream = scenario.scenario.train_stream
    shifts = {}
    for alpha in (0.0, 1.0):
        model = model_for(scenario)
        plugin = CondensedDERPlugin(mem_size=20, config=continual_config(), alpha=alpha, beta=0.0)
        strategy = naive(model, [plugin], epochs=2)
        strategy.train(stream[0])
        images, labels, logits = plugin.storage_policy.memory_tensors()
        model.eval()
        with torch.no_grad():  # stored: the learner's outputs on the images when they were stored
            assert logits.shape == (20, 10) and torch.allclose(logits, model(images), atol=1e-5)
        strategy.train(stream[1])
        kept = set(stream[0].classes_in_this_experience)
        old = torch.isin(labels, torch.tensor(sorted(kept)))
        model.eval()
        with torch.no_grad():
            shifts[alpha] = float(torch.nn.functional.mse_loss(model(images[old]), logits[old]))
        x, y, z = plugin.storage_policy.memory_tensors()
        assert z.shape == (len(x), 10) and len(x) == 20  # 4 classes x 5: shrunk classes got new logits
    # The logit MSE holds the old classes' outputs where training on new classes alone moves them.
    assert shifts[1.0] < 0.5 * shifts[0.0]


def _newest_share(model: torch.nn.Module, stream: Any, upto: int, newest: set[int]) -> float:
    model.eval()
    with torch.no_grad():
        preds = [model(torch.stack([e.dataset[i][0] for i in range(len(e.dataset))])).argmax(1)
                 for e in list(stream)[: upto + 1]]  # fmt: skip
    predicted = torch.cat(preds)
    return float(torch.isin(predicted, torch.tensor(sorted(newest))).float().mean())


def test_balanced_finetune_corrects_the_bias_towards_the_newest_classes(scenario: Any) -> None:
    from avalanche.training.plugins import ReplayPlugin
    from avalanche.training.storage_policy import ClassBalancedBuffer

    from fedcond.continual.plugins import BalancedFinetunePlugin

    stream, test = scenario.scenario.train_stream, scenario.scenario.test_stream
    newest = set(stream[2].classes_in_this_experience)
    shares, finetunes = {}, None
    for corrected in (False, True):
        memory = ClassBalancedBuffer(max_size=30, adaptive_size=True)
        plugins: list = [ReplayPlugin(mem_size=30, batch_size=32, batch_size_mem=4, storage_policy=memory)]
        if corrected:
            finetunes = BalancedFinetunePlugin(memory, epochs=20, lr=0.01, batch_size=10)
            plugins.append(finetunes)
        strategy = naive(model_for(scenario), plugins, epochs=3)
        for exp in stream[:3]:
            strategy.train(exp)
        shares[corrected] = _newest_share(strategy.model, test, 2, newest)
    # Three experiences of two classes: an unbiased learner predicts the newest two about a third of the time.
    assert shares[False] > 0.45 and shares[True] < shares[False] - 0.08
    assert len(finetunes.finetune_seconds) == 3


def test_balanced_finetune_of_the_classifier_leaves_the_features_and_needs_the_updated_memory(scenario: Any) -> None:
    from avalanche.training.plugins import ReplayPlugin
    from avalanche.training.storage_policy import ClassBalancedBuffer

    from fedcond.continual.plugins import BalancedFinetunePlugin

    memory = ClassBalancedBuffer(max_size=20, adaptive_size=True)
    model = model_for(scenario)
    finetune = BalancedFinetunePlugin(memory, epochs=2, layers="classifier")
    replay = ReplayPlugin(mem_size=20, storage_policy=memory)
    features: dict[str, torch.Tensor] = {}

    class Snapshot(SupervisedPlugin):  # runs after replay's update, before the fine-tuning
        def after_training_exp(self, strategy: Any, **kwargs: Any) -> None:
            features.update({k: v.clone() for k, v in strategy.model.state_dict().items()})

    strategy = naive(model, [replay, Snapshot(), finetune], epochs=1)
    strategy.train(scenario.scenario.train_stream[0])
    after = model.state_dict()
    assert all(torch.equal(after[k], v) for k, v in features.items() if not k.startswith("classifier"))
    assert not torch.equal(after["classifier.weight"], features["classifier.weight"])
    # Before the plugin that fills the memory, it would fine-tune on a memory without the new classes.
    wrong = naive(model_for(scenario), [BalancedFinetunePlugin(memory, epochs=1), ReplayPlugin(mem_size=20, storage_policy=memory)])
    with pytest.raises(ConfigError, match="after the plugin that updates the memory"):
        wrong.train(scenario.scenario.train_stream[1])
    with pytest.raises(ConfigError, match="layers"):
        BalancedFinetunePlugin(memory, layers="head")


def test_plugins_work_with_avalanche_strategies_and_models_fedcond_does_not_ship(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Avalanche's SplitMNIST (local root), its SimpleMLP, its DER and Naive: users bring their own."""
    from avalanche.models import SimpleMLP
    from avalanche.training.supervised import DER

    from fedcond.continual.plugins import BalancedFinetunePlugin, CondensedDERPlugin

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    _write_mnist_root(tmp_path / "idx")
    config = Config.from_dict({**continual_config().to_dict(), "dataset": {"name": "mnist", "data_root": str(tmp_path / "idx")}})
    stream = build_benchmark(config, seed=0).scenario.train_stream

    def mlp() -> torch.nn.Module:
        torch.manual_seed(0)
        return torch.nn.Sequential(torch.nn.Flatten(), SimpleMLP(num_classes=10, input_size=64, hidden_size=64))

    model = mlp()
    der = DER(model=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.01), criterion=torch.nn.CrossEntropyLoss(),
              mem_size=20, batch_size_mem=10, train_mb_size=32, train_epochs=1, device="cpu", evaluator=None)  # fmt: skip
    der.plugins.append(BalancedFinetunePlugin(der.storage_policy, epochs=2))
    model = mlp()
    condensed = CondensedDERPlugin(mem_size=20, config=continual_config())
    spy = BatchSpy()
    plain = naive(model, [condensed, spy], epochs=1)
    for exp in stream[:2]:
        der.train(exp)
        plain.train(exp)
    assert len(der.plugins[-1].finetune_seconds) == 2 and len(der.storage_policy.buffer) == 20
    images, labels, logits = condensed.storage_policy.memory_tensors()
    assert images.shape[1:] == stream[0].dataset[0][0].shape and logits.shape == (20, 10)
    assert set(labels.tolist()) == set(stream[0].classes_in_this_experience) | set(stream[1].classes_in_this_experience)
