"""The attention-embedding feature map (DataDAM): what it emits, what linear MMD then measures, where it refuses."""

from __future__ import annotations

import pytest
import torch

from fedcond.condense import condense
from fedcond.discrepancies import mmd_linear
from fedcond.errors import ConfigError
from fedcond.features import FeatureContext, attention_features, build_feature_map


def _context(model: str = "convnet") -> FeatureContext:
    return FeatureContext(model=model, channels=1, num_classes=10, image_size=(8, 8), device=torch.device("cpu"))


def test_features_are_each_blocks_unit_attention_map_then_the_embedding() -> None:
    torch.manual_seed(0)
    feature_map = build_feature_map("attention-embedding", _context(), attention_weight=4.0)
    x = torch.randn(6, 1, 8, 8)
    features = feature_map(x, None, differentiable=False)
    embedding = feature_map.net.embed(x)
    # convnet depth 3 on 8x8: attention maps of 8x8, 4x4 and 2x2 (taken before each pooling)
    sizes = [64, 16, 4]
    assert features.shape == (6, sum(sizes) + embedding.shape[1])
    assert torch.allclose(features[:, sum(sizes) :], embedding)
    for block in features[:, : sum(sizes)].split(sizes, dim=1):
        assert torch.allclose(block.norm(dim=1), torch.full((6,), 2.0))  # unit norm times sqrt(4)


def test_linear_mmd_of_the_features_is_the_weighted_attention_loss_plus_dms() -> None:
    torch.manual_seed(0)
    net = build_feature_map("random-embedding", _context())
    net.refresh()
    real, synthetic = torch.randn(20, 1, 8, 8), torch.randn(3, 1, 8, 8)
    plain = [attention_features(net.net, batch, power=4.0, attention_weight=1.0) for batch in (real, synthetic)]
    weighted = [attention_features(net.net, batch, power=4.0, attention_weight=3.0) for batch in (real, synthetic)]
    d = net.net.embed(real).shape[1]
    attention_term = mmd_linear(plain[0][:, :-d], plain[1][:, :-d])
    embedding_term = mmd_linear(plain[0][:, -d:], plain[1][:, -d:])
    assert mmd_linear(*weighted).item() == pytest.approx(3.0 * attention_term.item() + embedding_term.item(), rel=1e-5)
    assert attention_term.item() > 0


def test_gradients_reach_the_images_through_the_attention_maps() -> None:
    torch.manual_seed(0)
    feature_map = build_feature_map("attention-embedding", _context())
    x = torch.randn(4, 1, 8, 8, requires_grad=True)
    features = feature_map(x, None, differentiable=True)
    (grad,) = torch.autograd.grad(features[:, :84].sum(), x)  # the attention part alone
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0


def test_networks_without_blocks_and_bad_options_are_one_line_errors() -> None:
    with pytest.raises(ConfigError, match="attention-embedding needs a network whose blocks") as error:
        build_feature_map("attention-embedding", _context("mlp"))(torch.randn(2, 1, 8, 8), None, differentiable=False)
    assert "\n" not in str(error.value)
    with pytest.raises(ConfigError, match="'power' must be a number > 0"):
        build_feature_map("attention-embedding", _context(), power=-1)


def test_condenses_against_a_trained_pool(make_config, digits) -> None:
    config = make_config(
        condense={"feature_map": "attention-embedding", "discrepancy": "mmd-linear", "real_target": "trained-pool",
                  "pool_networks": 2, "real_target_params": {"train_steps": 4, "snapshots": 2}},
    )  # fmt: skip
    synthetic = condense(digits.train, config)
    trace = synthetic.metadata["loss_trace"]
    assert len(synthetic) == 20 and trace and torch.isfinite(torch.tensor(trace)).all()
    assert synthetic.metadata["feature_map"] == "attention-embedding"
