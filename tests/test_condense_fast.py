"""The speed/quality switches of the matching condenser: cached real statistics and factorised images."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from fedcond import condense
from fedcond.condense.parameterisation import check_factor, decode, encode
from fedcond.condense.targets.pool import RealStatisticsPool, network_seed
from fedcond.device import CPU_CHUNK, chunk_size
from fedcond.discrepancies import build_discrepancy, summarise_real
from fedcond.errors import ConfigError
from fedcond.features import FeatureContext, build_feature_map, embed_in_chunks

CPU = torch.device("cpu")


# ---------------------------------------------------------------- factorised parameterisation
def test_decode_cuts_tiles_in_row_major_order_and_upsamples() -> None:
    stored = torch.zeros(1, 1, 4, 4)
    stored[0, 0, :2, :2], stored[0, 0, :2, 2:], stored[0, 0, 2:, :2], stored[0, 0, 2:, 2:] = 1, 2, 3, 4
    decoded = decode(stored, 2)
    assert decoded.shape == (4, 1, 4, 4)
    for i, value in enumerate([1, 2, 3, 4]):
        assert torch.allclose(decoded[i], torch.full((1, 4, 4), float(value)))


def test_decode_is_identity_at_factor_one_and_encode_inverts_on_smooth_images() -> None:
    x = torch.randn(6, 3, 8, 8)
    assert decode(x, 1) is x
    flat = torch.randn(8, 3, 1, 1).expand(8, 3, 8, 8)  # constant images survive down/up-sampling
    packed = encode(flat, 2)
    assert packed.shape == (2, 3, 8, 8)
    assert torch.allclose(decode(packed, 2), flat, atol=1e-6)
    with pytest.raises(ValueError, match="multiple of 4"):
        encode(torch.randn(3, 1, 8, 8), 2)


def test_decode_passes_gradients_to_every_stored_pixel() -> None:
    stored = torch.randn(2, 1, 8, 8, requires_grad=True)
    decode(stored, 2).square().sum().backward()
    assert stored.grad is not None and (stored.grad != 0).all()


def test_check_factor_names_the_problem() -> None:
    check_factor(2, (28, 28))
    with pytest.raises(ConfigError, match="must divide the image size 8x8"):
        check_factor(3, (8, 8))


def test_factorised_condensation_trains_factor_squared_images_per_class(digits, make_config) -> None:
    config = make_config(condense={"ipc": 2, "factor": 2, "iterations": 3})
    synthetic = condense(digits.train, config)
    assert synthetic.class_counts().tolist() == [8] * 10
    assert synthetic.metadata["factor"] == 2 and synthetic.metadata["images_per_class"] == 8
    assert synthetic.metadata["ipc"] == 2  # the stored budget
    # The stored form is what the condenser optimised: 2 images per class that decode to the set.
    assert synthetic.stored is not None and synthetic.stored.factor == 2
    assert synthetic.stored.images.shape == (20, 1, 8, 8)
    assert torch.equal(decode(synthetic.stored.images, 2), synthetic.images)
    assert condense(digits.train, make_config(condense={"ipc": 2, "iterations": 3})).stored is None  # factor 1
    with pytest.raises(ConfigError, match="condense.factor=3 must divide"):
        condense(digits.train, make_config(condense={"factor": 3}))


def test_model_params_set_the_random_networks_architecture(digits, make_config, monkeypatch) -> None:
    from fedcond.features import FeatureContext

    widths: list[int] = []
    build = FeatureContext.build_network

    def spy(self: FeatureContext) -> Any:
        net = build(self)
        widths.append(net.embed_dim)
        return net

    monkeypatch.setattr(FeatureContext, "build_network", spy)
    synthetic = condense(digits.train, make_config(condense={"iterations": 2, "model_params": {"width": 16}}))
    assert widths and set(widths) == {16}  # 8x8 digits: 16 channels x 1 x 1 after three poolings
    assert synthetic.metadata["model_params"] == {"width": 16}
    with pytest.raises(ConfigError, match="model 'convnet' has no option"):
        make_config(condense={"model_params": {"widht": 16}})


def test_factorised_init_is_blurred_real_data(digits, make_config) -> None:
    synthetic = condense(digits.train, make_config(condense={"ipc": 1, "factor": 2, "iterations": 0}))
    # Every decoded image is a 2x up-sampled 4x4 average of a real image of its class.
    real = decode(encode(digits.train.images, 1), 1)
    small = torch.nn.functional.interpolate(real, size=(4, 4), mode="area")
    blurred = torch.nn.functional.interpolate(small, size=(8, 8), mode="bilinear", align_corners=False)
    for image, label in zip(synthetic.images, synthetic.labels):
        distance = (blurred[digits.train.labels == label] - image).flatten(1).abs().amax(1)
        assert distance.min() < 1e-5


# ---------------------------------------------------------------- cached real statistics
def test_linear_mmd_real_summary_keeps_the_value() -> None:
    real, syn = torch.randn(50, 7), torch.randn(5, 7)
    linear = build_discrepancy("mmd-linear")
    assert summarise_real("mmd-linear", real).shape == (1, 7)
    assert torch.allclose(linear(summarise_real("mmd-linear", real), syn), linear(real, syn))
    assert summarise_real("mmd-gaussian", real) is real  # no summary: the features themselves


def _pool(digits, networks: int, seed: int = 0, discrepancy: str = "mmd-linear") -> tuple:
    context = FeatureContext("convnet", 1, 10, (8, 8), CPU)
    feature_map = build_feature_map("random-embedding", context)
    per_class = digits.train.indices_per_class()
    pool = RealStatisticsPool.build(
        feature_map, discrepancy, digits.train.images, per_class, list(range(10)), 10, networks=networks, batch_real=16,
        dsa_strategy=None, dsa_mode="single", seed=seed, progress=False,
    )  # fmt: skip
    return pool, feature_map, per_class


def test_pool_stores_each_networks_real_statistics(digits) -> None:
    pool, feature_map, per_class = _pool(digits, networks=3)
    assert len(pool) == 3 and len(pool.features[0]) == 10
    assert pool.features[0][0].shape == (1, feature_map.net.embed_dim)  # one mean row per class
    # Re-activating a pool network re-creates it: its real features match the cached ones.
    generator = torch.Generator().manual_seed(pool.seeds[1])
    draws = [idx[torch.randperm(len(idx), generator=generator)[:16]] for idx in per_class]  # class by class
    picks = draws[4]
    pool.activate(1, feature_map)
    mean = embed_in_chunks(feature_map, digits.train.images[picks], digits.train.labels[picks]).mean(0)
    assert torch.allclose(mean, pool.features[1][4][0], atol=1e-5)
    assert not torch.allclose(pool.features[0][4], pool.features[1][4])
    assert network_seed(0, 1) != network_seed(1, 0) and network_seed(0, 0) != network_seed(0, 1)


def test_pool_keeps_all_features_for_discrepancies_without_summary(digits) -> None:
    pool, _, _ = _pool(digits, networks=1, discrepancy="mmd-gaussian")
    assert pool.features[0][0].shape[0] == 16
    assert pool.memory_bytes() == sum(t.numel() * 4 for t in pool.features[0])


def test_pool_activation_leaves_the_global_rng_alone(digits) -> None:
    pool, feature_map, _ = _pool(digits, networks=2)
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    pool.activate(0, feature_map)
    assert torch.equal(torch.rand(3), expected)


@pytest.mark.parametrize("discrepancy", ["mmd-linear", "mmd-gaussian"])
def test_pooled_condensation_lowers_the_loss_and_is_reproducible(digits, make_config, discrepancy) -> None:
    # One network and no augmentation: the target is fixed, so the loss must fall steadily.
    config = make_config(condense={"pool_networks": 1, "discrepancy": discrepancy, "iterations": 40, "ipc": 3, "dsa": False})
    trace = [loss for _, loss in condense(digits.train, config).metadata["loss_trace"]]
    assert trace[-1] < 0.7 * trace[0] and all(b <= a * 1.001 for a, b in zip(trace, trace[1:]))
    config = make_config(condense={"pool_networks": 4, "discrepancy": discrepancy, "iterations": 5})
    first, second = condense(digits.train, config), condense(digits.train, config)
    assert torch.equal(first.images, second.images)
    assert first.metadata["pool_networks"] == 4 and first.metadata["timings"]["pool_seconds"] > 0


def test_pool_needs_an_embedding_feature_map(make_config) -> None:
    with pytest.raises(ConfigError, match="pool_networks caches embeddings"):
        make_config(condense={"pool_networks": 2, "feature_map": "gradients", "discrepancy": "gradient-matching"})
    with pytest.raises(ConfigError, match="pool_networks must be >= 0"):
        make_config(condense={"pool_networks": -1})


def test_pool_and_factor_checkpoint_resume(digits, make_config, tmp_path) -> None:
    section = {"pool_networks": 3, "factor": 2}
    full = condense(digits.train, make_config(condense={**section, "iterations": 6}))
    path = tmp_path / "checkpoint.pt"
    condense(digits.train, make_config(condense={**section, "iterations": 3, "checkpoint_every": 3}), checkpoint=path)
    resumed = condense(digits.train, make_config(condense={**section, "iterations": 6, "checkpoint_every": 3}), checkpoint=path)
    assert torch.allclose(full.images, resumed.images, atol=1e-6)


# ---------------------------------------------------------------- chunked embedding
def test_chunked_embedding_matches_one_forward_and_keeps_gradients() -> None:
    context = FeatureContext("convnet", 1, 10, (8, 8), CPU)
    feature_map = build_feature_map("random-embedding", context)
    feature_map.refresh()
    x = torch.randn(CPU_CHUNK * 2 + 5, 1, 8, 8, requires_grad=True)
    y = torch.zeros(len(x), dtype=torch.long)
    chunked = embed_in_chunks(feature_map, x, y, differentiable=True)
    whole = feature_map.net.embed(x)
    assert torch.allclose(chunked, whole, atol=1e-5)
    chunked.sum().backward()
    assert x.grad is not None and (x.grad.abs().sum((1, 2, 3)) > 0).all()
    assert not embed_in_chunks(feature_map, x, y).requires_grad
    assert chunk_size(CPU) == CPU_CHUNK


def test_pool_entries_augment_synthetic_images_with_their_real_draw(digits) -> None:
    """Siamese: an entry's DSA draw, replayed on its real images, reproduces its cached statistics."""
    feature_map = build_feature_map("pixels", FeatureContext("convnet", 1, 10, (8, 8), CPU))
    per_class = digits.train.indices_per_class()
    pool = RealStatisticsPool.build(
        feature_map, "mmd-linear", digits.train.images, per_class, list(range(10)), 10, networks=2, batch_real=16,
        dsa_strategy="color_crop_flip_rotate", dsa_mode="all", seed=5, progress=False,
    )  # fmt: skip
    generator = torch.Generator().manual_seed(pool.seeds[1])
    picks = torch.cat([idx[torch.randperm(len(idx), generator=generator)[:16]] for idx in per_class])
    labels = digits.train.labels[picks]
    augmented = pool.augment(1, digits.train.images[picks], labels)
    assert not torch.allclose(augmented, digits.train.images[picks])
    for k in range(10):
        assert torch.allclose(augmented[labels == k].flatten(1).mean(0), pool.features[1][k][0], atol=1e-5)
