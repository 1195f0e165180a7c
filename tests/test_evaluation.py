"""The evaluation protocol: it trains, it is seeded, it refuses mismatched data."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.optim.optimizer import register_optimizer_step_post_hook

from fedcond import SyntheticSet, condense, evaluate_synthetic
from fedcond.errors import DataError
from fedcond.evaluation import fit, fresh_network, run_seed, train_network
from fedcond.evaluation import test_accuracy as accuracy_on


def test_protocol_learns_from_a_coreset(digits, make_config) -> None:
    config = make_config(condense={"method": "random", "ipc": 10}, evaluation={"epochs": 60, "runs": 2})
    coreset = condense(digits.train, config)
    result = evaluate_synthetic(coreset, digits.test, config)
    assert result.runs == 2 and len(result.accuracies) == 2
    assert result.accuracy_mean > 60.0  # chance is 10 %
    assert result.accuracy_std == pytest.approx(float(np.std(result.accuracies)), abs=1e-4)  # population std
    assert result.accuracy_mean == pytest.approx(float(np.mean(result.accuracies)), abs=1e-4)
    again = evaluate_synthetic(coreset, digits.test, config)
    assert again.accuracies == result.accuracies


def test_cross_architecture_and_soft_labels(digits, make_config) -> None:
    config = make_config(condense={"method": "random", "ipc": 5}, evaluation={"epochs": 20})
    coreset = condense(digits.train, config)
    soft = SyntheticSet(
        images=coreset.images,
        labels=torch.nn.functional.one_hot(coreset.labels, 10).float(),
        num_classes=10,
        metadata=coreset.metadata,
    )
    cpu = torch.device("cpu")
    results = {model: evaluate_synthetic(coreset, digits.test, config, model=model) for model in ("mlp", "lenet", "resnet18")}
    # The named architecture is the one trained: the protocol by hand gives the same accuracy.
    net = train_network(coreset.images, coreset.labels, model="lenet", num_classes=10, cfg=config.evaluation,
                        dsa_strategy=config.condense.dsa_strategy, device=cpu, seed=run_seed(config.seed, 0))  # fmt: skip
    assert results["lenet"].accuracies == [round(accuracy_on(net, digits.test, cpu), 4)]
    assert len({tuple(r.accuracies) for r in results.values()}) > 1  # three architectures, not one
    assert evaluate_synthetic(soft, digits.test, config).accuracy_mean > 20.0


def test_mismatched_shapes_are_refused(digits, make_config) -> None:
    config = make_config()
    wrong = SyntheticSet(images=torch.zeros(10, 1, 28, 28), labels=torch.arange(10), num_classes=10, metadata={})
    with pytest.raises(DataError, match="synthetic images are"):
        evaluate_synthetic(wrong, digits.test, config)


def test_batch_pieces_give_the_one_batch_result(digits, make_config, monkeypatch) -> None:
    """The fast path splits batches for cache-friendliness; the trained weights must not change."""
    import fedcond.evaluation as evaluation
    from fedcond.device import resolve_device

    config = make_config(condense={"method": "random", "ipc": 6}, evaluation={"epochs": 3, "batch_size": 40})
    coreset = condense(digits.train, config)
    kwargs = dict(
        model="convnet", num_classes=10, cfg=config.evaluation, dsa_strategy=config.condense.dsa_strategy,
        device=resolve_device("cpu"), seed=3,
    )  # fmt: skip
    whole = evaluation.train_network(coreset.images, coreset.labels, **kwargs)
    monkeypatch.setattr(evaluation, "chunk_size", lambda device: 7)
    pieces = evaluation.train_network(coreset.images, coreset.labels, **kwargs)
    for a, b in zip(whole.parameters(), pieces.parameters()):
        assert torch.allclose(a, b, atol=1e-5)
    assert evaluation.test_accuracy(whole, digits.test, torch.device("cpu")) == pytest.approx(
        evaluation.test_accuracy(pieces, digits.test, torch.device("cpu")), abs=0.2
    )


def test_batch_norm_networks_are_not_split() -> None:
    from fedcond.models import batch_independent, build_model

    assert batch_independent(build_model("convnet", channels=1, num_classes=10, image_size=(8, 8)))
    assert not batch_independent(build_model("convnet", channels=1, num_classes=10, image_size=(8, 8), norm="batchnorm"))


def test_quick_protocol_is_one_network_of_100_epochs(digits, make_config) -> None:
    quick = make_config(condense={"method": "random", "ipc": 1}, evaluation={"protocol": "quick", "runs": 3})
    coreset = condense(digits.train, quick)
    result = evaluate_synthetic(coreset, digits.test, quick)
    assert (result.protocol, result.runs, result.epochs, len(result.accuracies)) == ("quick", 1, 100, 1)
    # Nothing but runs and epochs changes: the full protocol at 1 x 100 meets the same network and draws.
    by_hand = make_config(condense={"method": "random", "ipc": 1}, evaluation={"runs": 1, "epochs": 100})
    assert evaluate_synthetic(coreset, digits.test, by_hand).accuracies == result.accuracies
    assert result.to_dict()["protocol"] == "quick"


@pytest.mark.parametrize(("steps", "batch_size"), [(7, 32), (1, 256), (40, 100)])
def test_fit_takes_exactly_the_steps_asked(digits, make_config, steps: int, batch_size: int) -> None:
    cfg = make_config(evaluation={"batch_size": batch_size, "epochs": 99}).evaluation
    net = fresh_network("convnet", digits.train.images.shape[1:], 10, device=torch.device("cpu"), seed=0)
    taken = []
    handle = register_optimizer_step_post_hook(lambda *args: taken.append(1))
    try:
        fit(net, digits.train.images[:150], digits.train.labels[:150], cfg=cfg, dsa_strategy=None,
            device=torch.device("cpu"), seed=0, steps=steps, decay=False)  # fmt: skip
    finally:
        handle.remove()
    assert len(taken) == steps
