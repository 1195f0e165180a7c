"""Label sources and distillation: teacher labels, the KD loss, teacher files, online relabelling."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from fedcond import SyntheticSet, condense, evaluate_synthetic
from fedcond.config import Config
from fedcond.errors import ConfigError
from fedcond.evaluation import fit, fresh_network, kd_piece_loss, train_network
from fedcond.labels import Teacher, build_teacher, load_teacher, measure_teacher, relabel, save_teacher, train_teacher

CPU = torch.device("cpu")
#: A teacher that learns digits in a few seconds.
TEACHER = {"model": "mlp", "steps": 100, "batch_size": 64, "lr": 0.05, "dsa": False, "temperature": 2.0}


@pytest.fixture(scope="module")
def teacher_config() -> Config:
    from conftest import fast_config

    return fast_config(condense={"method": "random", "ipc": 3, "labels": "teacher", "teacher": TEACHER})


@pytest.fixture(scope="module")
def teacher(digits, teacher_config) -> Teacher:
    return train_teacher(digits.train, teacher_config, device=CPU)


def test_kd_with_one_hot_labels_at_temperature_1_is_cross_entropy_training(digits, make_config) -> None:
    config = make_config(condense={"method": "random", "ipc": 4}, evaluation={"epochs": 4, "batch_size": 16})
    coreset = condense(digits.train, config)
    one_hot = F.one_hot(coreset.labels, 10).float()
    kwargs = dict(cfg=config.evaluation, dsa_strategy=config.condense.dsa_strategy, device=CPU, seed=3)
    shape = coreset.images.shape[1:]

    def net():
        return fresh_network("convnet", shape, 10, device=CPU, seed=1, width=16)

    start = [p.detach().clone() for p in net().parameters()]
    by_ce = fit(net(), coreset.images, coreset.labels, **kwargs)
    by_kd = fit(net(), coreset.images, one_hot, loss="kd", temperature=1.0, **kwargs)
    assert any(not torch.allclose(a, s) for a, s in zip(by_ce.parameters(), start))  # it trained
    for a, b in zip(by_ce.parameters(), by_kd.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    # Hard labels under loss "kd" are one-hot rows: the same network as cross-entropy's again.
    by_hard_kd = train_network(coreset.images, coreset.labels, model="mlp", num_classes=10, loss="kd", temperature=1.0, **kwargs)
    by_hard_ce = train_network(coreset.images, coreset.labels, model="mlp", num_classes=10, **kwargs)
    for a, b in zip(by_hard_ce.parameters(), by_hard_kd.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="distributions"):
        fit(net(), coreset.images, coreset.labels, loss="kd", **kwargs)


def test_the_temperature_divides_both_the_teachers_and_the_students_logits(teacher) -> None:
    torch.manual_seed(0)
    images = torch.randn(6, 1, 8, 8)
    with torch.no_grad():
        logits = teacher.net(images)
    for temperature in (1.0, 4.0):
        labels = teacher.soft_labels(images, temperature=temperature)
        torch.testing.assert_close(labels, (logits / temperature).softmax(dim=1))
    student = fresh_network("mlp", (1, 8, 8), 10, device=CPU, seed=5)
    targets = teacher.soft_labels(images, temperature=4.0)
    with torch.no_grad():
        log_q = (student(images) / 4.0).log_softmax(dim=1)
        expected = 16.0 * (targets * (targets.log() - log_q)).sum()
        torch.testing.assert_close(kd_piece_loss(student, images, targets, 4.0), expected)
        # A hotter student is a different loss: the student side is scaled too.
        assert not torch.isclose(kd_piece_loss(student, images, targets, 1.0), expected)


def test_averaging_over_dsa_draws_gives_distributions_that_differ_from_the_stored_view(teacher, teacher_config) -> None:
    images = torch.randn(5, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    plain = teacher.soft_labels(images, temperature=1.0)
    strategy = teacher_config.condense.dsa_strategy
    averaged = teacher.soft_labels(images, temperature=1.0, augmentations=4, dsa_strategy=strategy, seed=0)
    assert averaged.shape == plain.shape and averaged.dtype == torch.float32
    torch.testing.assert_close(averaged.sum(dim=1), torch.ones(5))
    assert not torch.allclose(averaged, plain)
    again = teacher.soft_labels(images, temperature=1.0, augmentations=4, dsa_strategy=strategy, seed=0)
    assert torch.equal(averaged, again)  # seeded


def test_a_set_condensed_with_teacher_labels_records_them_and_reloads_bit_identically(digits, teacher, teacher_config, tmp_path) -> None:
    measure_teacher(teacher, digits.test, teacher_config)
    assert teacher.test_accuracy > 60.0  # chance is 10 %: the budget is enough to learn digits
    synthetic = condense(digits.train, teacher_config, teacher=teacher)
    assert synthetic.is_soft and synthetic.labels.shape == (30, 10)
    labels = synthetic.metadata["labels"]
    assert labels["source"] == "teacher" and labels["temperature"] == 2.0 and labels["augmentations"] == 0
    assert labels["teacher"] == teacher.info() and labels["teacher"]["steps"] == 100
    timings = synthetic.metadata["timings"]
    assert timings["teacher_seconds"] == round(teacher.seconds, 3)
    assert timings["condense_seconds"] >= teacher.seconds + timings["labelling_seconds"]  # the teacher counts
    # A random coreset keeps its images; only the labels are the teacher's (DD-Ranking's control).
    hard = condense(digits.train, Config.from_dict({**teacher_config.to_dict(), "condense": {**teacher_config.to_dict()["condense"], "labels": "hard"}}))
    assert torch.equal(hard.images, synthetic.images) and hard.metadata["labels"] == {"source": "hard"}
    torch.testing.assert_close(synthetic.labels, teacher.soft_labels(synthetic.images, temperature=2.0))
    path = tmp_path / "set.pt"
    synthetic.save(path)
    loaded = SyntheticSet.load(path)
    assert torch.equal(loaded.images, synthetic.images) and torch.equal(loaded.labels, synthetic.labels)
    assert loaded.metadata == synthetic.metadata
    loaded.save(tmp_path / "again.pt")
    assert (tmp_path / "again.pt").read_bytes() == path.read_bytes()


def test_relabelling_keeps_a_factorised_sets_stored_form(teacher, teacher_config) -> None:
    from sets import make_factorised_set

    synthetic = make_factorised_set(num_classes=10, shape=(1, 8, 8))  # digits' classes and images
    relabelled = relabel(synthetic, teacher, teacher_config)
    assert relabelled.is_soft and relabelled.stored is synthetic.stored


def test_kd_evaluation_takes_the_labels_temperature_unless_told(digits, teacher, teacher_config) -> None:
    synthetic = condense(digits.train, teacher_config, teacher=teacher)
    kd = Config.from_dict({**teacher_config.to_dict(), "evaluation": {**teacher_config.to_dict()["evaluation"], "loss": "kd"}})
    result = evaluate_synthetic(synthetic, digits.test, kd)
    assert (result.loss, result.temperature, result.labels) == ("kd", 2.0, "stored")
    told = copy.deepcopy(kd)
    told.evaluation.temperature = 4.0
    assert evaluate_synthetic(synthetic, digits.test, told).temperature == 4.0
    assert evaluate_synthetic(synthetic, digits.test, teacher_config).to_dict()["loss"] == "ce"
    synthetic.metadata["labels"]["temperature"] = "hot"
    with pytest.raises(ConfigError, match="labels temperature 'hot'"):
        evaluate_synthetic(synthetic, digits.test, kd)


def test_online_relabelling_is_its_own_protocol_and_needs_the_teacher(digits, teacher, teacher_config) -> None:
    synthetic = condense(digits.train, teacher_config, teacher=teacher)
    online = Config.from_dict({**teacher_config.to_dict(), "evaluation": {**teacher_config.to_dict()["evaluation"], "loss": "kd", "online_relabel": True}})
    result = evaluate_synthetic(synthetic, digits.test, online, teacher=teacher)
    assert result.labels == "online-teacher"
    # Each augmented batch is relabelled: the student sees other targets than the stored ones.
    seen: list[torch.Tensor] = []

    def relabel_batch(images: torch.Tensor) -> torch.Tensor:
        targets = teacher.soft_labels(images, temperature=2.0)
        seen.append(targets)
        return targets

    kwargs = dict(cfg=online.evaluation, dsa_strategy=online.condense.dsa_strategy, device=CPU, seed=0, loss="kd", temperature=2.0)
    shape = synthetic.images.shape[1:]
    relabelled = fit(fresh_network("mlp", shape, 10, device=CPU, seed=0), synthetic.images, synthetic.labels, relabel=relabel_batch, **kwargs)
    stored = fit(fresh_network("mlp", shape, 10, device=CPU, seed=0), synthetic.images, synthetic.labels, **kwargs)
    assert len(seen) == online.evaluation.epochs  # one batch per epoch here
    assert any(not torch.allclose(a, b) for a, b in zip(relabelled.parameters(), stored.parameters()))
    with pytest.raises(ConfigError, match="online_relabel needs the teacher"):
        evaluate_synthetic(synthetic, digits.test, online)


def test_teacher_files_round_trip_and_hostile_ones_are_refused(digits, teacher, teacher_config, tmp_path: Path) -> None:
    path = tmp_path / "teacher.pt"
    save_teacher(teacher, path)
    config = Config.from_dict({**teacher_config.to_dict(), "condense": {**teacher_config.to_dict()["condense"], "teacher": {**TEACHER, "weights": str(path)}}})
    loaded = build_teacher(digits.train, config, device=CPU)
    assert loaded.weights == str(path) and loaded.steps == 0
    images = digits.test.images[:20]
    assert torch.equal(loaded.soft_labels(images, temperature=2.0), teacher.soft_labels(images, temperature=2.0))
    relabelled = relabel(condense(digits.train, Config.from_dict({**config.to_dict(), "condense": {**config.to_dict()["condense"], "labels": "hard"}})), loaded, config)
    assert relabelled.metadata["labels"]["teacher"]["weights"] == str(path)

    def refused(match: str, **kwargs) -> None:
        with pytest.raises(ConfigError, match=match) as err:
            load_teacher(kwargs.pop("path", path), kwargs.pop("config", config), num_classes=kwargs.pop("num_classes", 10), image_shape=kwargs.pop("image_shape", (1, 8, 8)), device=CPU)
        assert "\n" not in str(err.value)

    refused("labels 10 classes of 1x8x8 images, the data has 5", num_classes=5)
    refused("the data has 10 of 1x28x28", image_shape=(1, 28, 28))
    lenet = copy.deepcopy(config)
    lenet.condense.teacher.model = "lenet"
    refused("holds a 'mlp', condense.teacher.model is 'lenet'", config=lenet)
    refused("cannot read", path=tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a torch file")
    refused("is not a teacher file", path=tmp_path / "junk.pt")
    content = torch.load(path, weights_only=True)
    name = next(iter(content["state_dict"]))
    content["state_dict"][name] = content["state_dict"][name].clone().fill_(float("nan"))
    torch.save(content, tmp_path / "nan.pt")
    refused("non-finite weights", path=tmp_path / "nan.pt")
    content = torch.load(path, weights_only=True)
    content["state_dict"].pop(name)
    torch.save(content, tmp_path / "short.pt")
    refused("does not fit mlp", path=tmp_path / "short.pt")
    torch.save({"format": "fedcond.teacher/1"}, tmp_path / "partial.pt")
    refused("is not a fedcond.teacher/1 file", path=tmp_path / "partial.pt")


def test_condense_trains_the_configured_teacher_when_none_is_given(digits, teacher_config) -> None:
    quick = copy.deepcopy(teacher_config)
    quick.condense.teacher.steps = 3
    synthetic = condense(digits.train, quick)
    assert synthetic.metadata["labels"]["teacher"]["steps"] == 3
    assert synthetic.metadata["timings"]["teacher_seconds"] > 0


def test_teacher_labels_are_refused_where_they_would_break_a_promise() -> None:
    with pytest.raises(ConfigError, match="privacy mode releases hard labels"):
        Config.from_dict({"privacy": {"epsilon": 1.0}, "condense": {"init": "noise", "discrepancy": "mmd-linear", "labels": "teacher"}})
    from fedcond.continual.storage import CondensedBuffer

    with pytest.raises(ConfigError, match="condensed memory keeps hard labels"):
        CondensedBuffer(10, config=Config.from_dict({"condense": {"labels": "teacher"}}))
