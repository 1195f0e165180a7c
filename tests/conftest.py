"""Shared fixtures: the digits dataset (bundled with scikit-learn) and small, fast configs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch

from fedcond.config import Config
from fedcond.data import DatasetSplits, load_dataset

torch.set_num_threads(2)


@pytest.fixture(scope="session")
def digits() -> DatasetSplits:
    return load_dataset(Config().dataset)


def fast_config(**sections: Any) -> Config:
    """A config that condenses and evaluates digits in about a second; ``sections`` update it."""
    data: dict[str, Any] = {
        "progress": False,
        "device": "cpu",
        "condense": {"ipc": 2, "iterations": 5, "batch_real": 32},
        "evaluation": {"runs": 1, "epochs": 5},
    }
    for name, values in sections.items():
        if isinstance(values, dict):
            data.setdefault(name, {}).update(values)
        else:
            data[name] = values
    return Config.from_dict(data)


@pytest.fixture
def make_config() -> Callable[..., Config]:
    return fast_config
