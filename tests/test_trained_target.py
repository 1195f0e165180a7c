"""The ``trained-pool`` real-side target: networks trained briefly on real data, cached statistics, IDM's term."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from fedcond import condense
from fedcond.condense.matching import setup
from fedcond.condense.targets import select_real_target
from fedcond.condense.targets.trained import snapshot_steps, train_on_real
from fedcond.errors import ConfigError
from fedcond.features import FeatureContext, embed_in_chunks

CPU = torch.device("cpu")
TRAINED = {"real_target": "trained-pool", "pool_networks": 2, "batch_real": 16, "dsa": False, "discrepancy": "mmd-linear"}


def _trained(make_config, digits, **params):
    options = {"train_steps": 12, "snapshots": 2, "batch": 32, **params}
    config = make_config(condense={**TRAINED, "real_target_params": options})
    return setup(digits.train, config, device=CPU, progress=False)


def test_snapshot_steps_are_evenly_spaced_and_end_fully_trained() -> None:
    assert snapshot_steps(100, 4, False) == [25, 50, 75, 100]
    assert snapshot_steps(10, 1, True) == [0, 10]


def test_training_on_real_data_lowers_the_real_loss_and_keeps_frozen_copies(digits) -> None:
    context = FeatureContext("convnet", 1, 10, (8, 8), CPU)
    torch.manual_seed(0)
    net = context.build_network()
    images, labels = digits.train.images, digits.train.labels
    kept = train_on_real(
        net, images, labels, steps=20, keep_after=[0, 10, 20], lr=0.01, momentum=0.9, batch=32,
        dsa_strategy=None, dsa_mode="single", generator=torch.Generator().manual_seed(0),
    )  # fmt: skip
    losses = [float(F.cross_entropy(k(images), labels)) for k in kept]
    assert len(kept) == 3 and losses[2] < losses[1] < losses[0]
    assert all(not k.training and not any(p.requires_grad for p in k.parameters()) for k in kept)
    # Copies, not views of the network being trained.
    assert not torch.equal(kept[0].classifier.weight, kept[2].classifier.weight)
    assert torch.equal(kept[2].classifier.weight, net.classifier.weight)


def test_trained_pool_caches_the_statistics_of_every_snapshot(make_config, digits) -> None:
    run = _trained(make_config, digits, include_initial=True)
    pool = run.target.pool
    assert len(pool) == 2 * 3 and pool.networks is not None  # 2 networks x (initial + 2 snapshots)
    # An entry's cached class mean is its own network's embedding of its real draw.
    generator = torch.Generator().manual_seed(pool.seeds[4])
    picks = [idx[torch.randperm(len(idx), generator=generator)[:16]] for idx in digits.train.indices_per_class()][3]
    pool.activate(4, run.feature_map)
    assert run.feature_map.net is pool.networks[4]
    mean = embed_in_chunks(run.feature_map, digits.train.images[picks], digits.train.labels[picks]).mean(0)
    assert torch.allclose(mean, pool.features[4][3][0], atol=1e-5)
    # The trained snapshots separate the classes better than the untrained one.
    real = digits.train
    accuracy = [float((pool.networks[k](real.images).argmax(1) == real.labels).float().mean()) for k in (0, 2)]
    assert accuracy[1] > accuracy[0] + 0.05
    assert run.target.seconds >= run.target.train_seconds > 0


def test_class_aware_term_enters_the_loss_only_when_weighted(make_config, digits) -> None:
    run = _trained(make_config, digits, ce_weight=1.0)
    side = run.target.draw(torch.Generator().manual_seed(0))
    assert side.classifier is run.feature_map.net.classifier and side.classifier_weight == 1.0
    with_term = run.problem.loss(run.images, run.targets, side)
    side.classifier = None
    without = run.problem.loss(run.images, run.targets, side)
    assert with_term.item() > without.item()
    plain = _trained(make_config, digits)
    assert plain.target.draw(torch.Generator().manual_seed(0)).classifier is None


def test_trained_pool_condensation_is_reproducible_and_timed(make_config, digits) -> None:
    params = {"train_steps": 8, "snapshots": 2, "batch": 32, "ce_weight": 0.5}
    config = make_config(condense={**TRAINED, "iterations": 4, "real_target_params": params})
    first, second = condense(digits.train, config), condense(digits.train, config)
    assert torch.equal(first.images, second.images)
    meta = first.metadata
    assert (meta["pool_networks"], meta["trained_networks"], meta["train_steps"], meta["snapshots"]) == (4, 2, 8, 2)
    assert meta["timings"]["condense_seconds"] >= meta["timings"]["pool_seconds"] >= meta["train_seconds"] > 0


def test_real_target_config_is_checked_with_one_line_errors(make_config) -> None:
    cases = [
        ({"real_target": "trained-pool"}, "set it >= 1"),
        ({"real_target": "nope"}, "unknown real-side target 'nope'"),
        ({**TRAINED, "real_target_params": {"steps": 3}}, "has no parameter 'steps'"),
        ({**TRAINED, "real_target_params": {"train_steps": 0}}, "'train_steps' must be an integer >= 1"),
        ({**TRAINED, "real_target_params": {"train_steps": 2, "snapshots": 3}}, "snapshots \\(3\\) cannot exceed"),
        ({"real_target_params": {"train_steps": 3}}, "needs condense.real_target set"),
        ({"real_target": "fresh", "pool_networks": 2}, "set condense.pool_networks 0"),
        ({"real_target": "pool"}, "needs condense.pool_networks >= 1"),
        ({**TRAINED, "feature_map": "pixels"}, "feature map that takes given networks"),
    ]
    for section, message in cases:
        with pytest.raises(ConfigError, match=message):
            make_config(condense=section)
    assert select_real_target(make_config(condense=TRAINED)) == "trained-pool"
    assert select_real_target(make_config(condense={"pool_networks": 3})) == "pool"
    assert select_real_target(make_config(condense={"real_target": "fresh"})) == "fresh"

