"""The condenser: shapes, seeding, every feature map x discrepancy pair, checkpoints, coresets."""

from __future__ import annotations

import pytest
import torch

from fedcond import condense
from fedcond.condense.coreset import herding_order, k_center_order
from fedcond.condense.parameterisation import decode, encode
from fedcond.errors import ConfigError
from fedcond.models import build_model


def test_matching_shapes_labels_and_metadata(digits, make_config) -> None:
    config = make_config(condense={"ipc": 3})
    synthetic = condense(digits.train, config)
    assert synthetic.images.shape == (30, 1, 8, 8)
    assert synthetic.images.dtype == torch.float32
    assert synthetic.labels.tolist() == [k for k in range(10) for _ in range(3)]
    meta = synthetic.metadata
    assert meta["dataset"] == "digits"
    assert meta["method"] == "matching"
    assert meta["discrepancy"] == "mmd-gaussian"
    assert meta["feature_map"] == "random-embedding"
    assert meta["ipc"] == 3 and meta["seed"] == 0 and meta["iterations"] == 5
    assert meta["timings"]["condense_seconds"] > 0
    assert meta["privacy"] == {"epsilon": None, "delta": None}
    synthetic.validate(num_classes=10, max_per_class=3)


def test_matching_is_reproducible_and_leaves_global_rng_alone(digits, make_config) -> None:
    config = make_config()
    torch.manual_seed(123)
    a = condense(digits.train, config)
    after_a = torch.rand(3)
    torch.manual_seed(123)
    b = condense(digits.train, config)
    assert torch.equal(a.images, b.images)
    assert torch.equal(after_a, torch.rand(3)), "condense must not consume the caller's RNG"
    c = condense(digits.train, make_config(seed=1))
    assert not torch.equal(a.images, c.images)


def test_matching_moves_pixels_and_lowers_the_loss(digits, make_config) -> None:
    config = make_config(condense={"iterations": 40, "discrepancy": "mmd-linear", "dsa": False, "ipc": 1})
    initial = condense(digits.train, make_config(condense={"iterations": 0, "ipc": 1}))
    synthetic = condense(digits.train, config)
    assert not torch.allclose(initial.images, synthetic.images)
    trace = [loss for _, loss in synthetic.metadata["loss_trace"]]
    # A fresh random network per iteration makes the loss noisy: compare the ends of the run.
    assert sum(trace[-5:]) < sum(trace[:5])


@pytest.mark.parametrize(
    ("feature_map", "discrepancy"),
    [
        ("random-embedding", "mmd-linear"),
        ("random-embedding", "mmd-gaussian"),
        ("random-embedding", "sliced-wasserstein"),
        ("random-embedding", "moments"),
        ("logits", "mmd-linear"),
        ("pixels", "mmd-gaussian"),
        ("gradients", "gradient-matching"),
    ],
)
def test_every_pair_condenses(digits, make_config, feature_map, discrepancy) -> None:
    params = {"outer_loop": 2, "inner_steps": 2} if feature_map == "gradients" else {}
    config = make_config(condense={"feature_map": feature_map, "discrepancy": discrepancy, "feature_params": params})
    synthetic = condense(digits.train, config)
    assert torch.isfinite(synthetic.images).all()
    assert len(synthetic) == 20


def test_soft_labels_are_learned(digits, make_config) -> None:
    config = make_config(
        condense={
            "feature_map": "gradients",
            "discrepancy": "gradient-matching",
            "soft_labels": True,
            "lr_images": 0.01,
            "lr_labels": 0.1,
            "feature_params": {"outer_loop": 2, "inner_steps": 1},
        }
    )
    synthetic = condense(digits.train, config)
    assert synthetic.is_soft and synthetic.labels.shape == (20, 10)
    assert torch.allclose(synthetic.labels.sum(1), torch.ones(20), atol=1e-5)
    assert torch.equal(synthetic.hard_labels, torch.arange(10).repeat_interleave(2))
    start = torch.softmax(5.0 * torch.eye(10), 1).repeat_interleave(2, 0)
    assert not torch.allclose(synthetic.labels, start, atol=1e-4)


def test_noise_init_is_not_real_data(digits, make_config) -> None:
    synthetic = condense(digits.train, make_config(condense={"init": "noise", "iterations": 0}))
    distances = torch.cdist(synthetic.images.flatten(1), digits.train.images.flatten(1))
    assert distances.min() > 1.0


@pytest.mark.parametrize("method", ["herding", "k-center"])
def test_coreset_init_starts_from_that_coreset(digits, make_config, method) -> None:
    started = condense(digits.train, make_config(condense={"init": method, "iterations": 0, "ipc": 3}))
    coreset = condense(digits.train, make_config(condense={"method": method, "ipc": 3}))
    assert torch.equal(started.images, coreset.images)
    # Factorised, each stored image packs the next f² samples of the selection, as tiles.
    packed = condense(digits.train, make_config(condense={"init": method, "iterations": 0, "ipc": 1, "factor": 2}))
    four = condense(digits.train, make_config(condense={"method": method, "ipc": 4}))
    assert torch.allclose(packed.images, decode(encode(four.images, 2), 2), atol=1e-6)
    random = condense(digits.train, make_config(condense={"iterations": 0, "ipc": 3}))
    assert not torch.equal(started.images, random.images)


def test_rare_and_absent_classes(digits, make_config) -> None:
    labels = digits.train.labels
    keep = torch.cat([torch.nonzero(labels == 0)[:1, 0], torch.nonzero(labels >= 2)[:, 0]])
    partial = digits.train.subset(keep)  # class 0: one sample, class 1: none
    synthetic = condense(partial, make_config(condense={"ipc": 3}))
    assert synthetic.class_counts().tolist() == [1, 0] + [3] * 8


def test_checkpoint_resume_reproduces_the_uninterrupted_run(digits, make_config, tmp_path) -> None:
    full = condense(digits.train, make_config(condense={"iterations": 6}))
    path = tmp_path / "checkpoint.pt"
    condense(digits.train, make_config(condense={"iterations": 3, "checkpoint_every": 3}), checkpoint=path)
    assert path.exists()
    resumed = condense(digits.train, make_config(condense={"iterations": 6, "checkpoint_every": 3}), checkpoint=path)
    assert torch.allclose(full.images, resumed.images, atol=1e-6)
    with pytest.raises(ConfigError, match="different config"):
        condense(digits.train, make_config(condense={"iterations": 6, "ipc": 4, "checkpoint_every": 3}), checkpoint=path)
    path.write_bytes(b"garbage")
    with pytest.raises(ConfigError, match="cannot resume"):
        condense(digits.train, make_config(condense={"iterations": 6, "checkpoint_every": 3}), checkpoint=path)


def test_gradient_feature_map_checkpoint(digits, make_config, tmp_path) -> None:
    section = {"feature_map": "gradients", "discrepancy": "gradient-matching", "feature_params": {"outer_loop": 4, "inner_steps": 2}}
    full = condense(digits.train, make_config(condense={**section, "iterations": 6}))
    path = tmp_path / "checkpoint.pt"
    condense(digits.train, make_config(condense={**section, "iterations": 3, "checkpoint_every": 3}), checkpoint=path)
    resumed = condense(digits.train, make_config(condense={**section, "iterations": 6, "checkpoint_every": 3}), checkpoint=path)
    assert torch.allclose(full.images, resumed.images, atol=1e-5)


def test_trained_embedding_from_weights(digits, make_config, tmp_path) -> None:
    net = build_model("convnet", channels=1, num_classes=10, image_size=(8, 8))
    weights = tmp_path / "net.pt"
    torch.save(net.state_dict(), weights)
    config = make_config(condense={"feature_map": "trained-embedding", "feature_params": {"weights": str(weights)}})
    assert len(condense(digits.train, config)) == 20
    missing = make_config(condense={"feature_map": "trained-embedding", "feature_params": {"weights": str(tmp_path / "no.pt")}})
    with pytest.raises(ConfigError, match="not found"):
        condense(digits.train, missing)
    with pytest.raises(ConfigError, match="has no parameter 'depth'"):
        condense(digits.train, make_config(condense={"feature_params": {"depth": 2}}))


@pytest.mark.parametrize("method", ["random", "herding", "k-center"])
def test_coresets_return_real_samples(digits, make_config, method) -> None:
    synthetic = condense(digits.train, make_config(condense={"method": method, "ipc": 4}))
    assert synthetic.class_counts().tolist() == [4] * 10
    assert synthetic.metadata["method"] == method and synthetic.metadata["discrepancy"] is None
    same = synthetic.images.flatten(1)[:, None, :] == digits.train.images.flatten(1)[None, :, :]
    assert same.all(-1).any(1).all(), "every coreset image is a real training image"
    assert synthetic.labels.tolist() == [k for k in range(10) for _ in range(4)]


def test_herding_tracks_the_mean_better_than_random() -> None:
    generator = torch.Generator().manual_seed(0)
    features = torch.randn(500, 16, generator=generator)
    mean = features.mean(0)
    herd = herding_order(features, 10)
    assert len(set(herd.tolist())) == 10
    herd_error = (features[herd].mean(0) - mean).norm()
    random_errors = [(features[torch.randperm(500, generator=generator)[:10]].mean(0) - mean).norm() for _ in range(50)]
    assert herd_error < min(random_errors)


def test_k_center_picks_the_farthest_point() -> None:
    features = torch.tensor([[0.0, 0.0], [0.1, 0.0], [5.0, 5.0], [-0.1, 0.0], [1.0, 1.0]])
    order = k_center_order(features, 3).tolist()
    assert order[1] == 2  # farthest from the first pick
    assert len(set(order)) == 3


def test_a_time_budget_stops_matching_and_says_so(digits, make_config) -> None:
    unbounded = condense(digits.train, make_config(condense={"iterations": 3}))
    assert unbounded.metadata["iterations_run"] == 3 and unbounded.metadata["time_budget_hit"] is False
    budget = make_config(condense={"iterations": 100_000, "max_seconds": 0.3})
    bounded = condense(digits.train, budget)
    assert bounded.metadata["time_budget_hit"] is True and 1 <= bounded.metadata["iterations_run"] < 100_000
    assert bounded.metadata["timings"]["condense_seconds"] < 30
    with pytest.raises(ConfigError, match="condense.max_seconds must be null or > 0"):
        make_config(condense={"max_seconds": 0})
