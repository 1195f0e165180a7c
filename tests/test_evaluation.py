"""The evaluation protocol: it trains, it is seeded, it refuses mismatched data."""

from __future__ import annotations

import pytest
import torch

from fedcond import SyntheticSet, condense, evaluate_synthetic
from fedcond.errors import DataError


def test_protocol_learns_from_a_coreset(digits, make_config) -> None:
    config = make_config(condense={"method": "random", "ipc": 10}, evaluation={"epochs": 60, "runs": 2})
    coreset = condense(digits.train, config)
    result = evaluate_synthetic(coreset, digits.test, config)
    assert result.runs == 2 and len(result.accuracies) == 2
    assert result.accuracy_mean > 60.0  # chance is 10 %
    assert result.accuracy_std >= 0.0
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
    for model in ("mlp", "lenet", "resnet18"):
        assert evaluate_synthetic(coreset, digits.test, config, model=model).model == model
    assert evaluate_synthetic(soft, digits.test, config).accuracy_mean > 20.0


def test_mismatched_shapes_are_refused(digits, make_config) -> None:
    config = make_config()
    wrong = SyntheticSet(images=torch.zeros(10, 1, 28, 28), labels=torch.arange(10), num_classes=10, metadata={})
    with pytest.raises(DataError, match="synthetic images are"):
        evaluate_synthetic(wrong, digits.test, config)
