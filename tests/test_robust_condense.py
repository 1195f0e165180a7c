"""Robustness terms of the matching objective: adversarial real-side targets and the input-gradient penalty."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from fedcond import condense
from fedcond.adversarial import PixelSpace
from fedcond.condense import ROBUSTNESS_TERMS, RobustnessTerm, register_robustness
from fedcond.condense.robustness import AdversarialTargets, InputGradientPenalty
from fedcond.condense.targets.pool import RealStatisticsPool
from fedcond.config import Config, RobustnessConfig
from fedcond.errors import ConfigError
from fedcond.features import FeatureContext, build_feature_map, embed_in_chunks

CPU = torch.device("cpu")


@pytest.fixture
def scratch_terms(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ROBUSTNESS_TERMS, "_items", dict(ROBUSTNESS_TERMS._items))


def _feature_map(digits):
    context = FeatureContext("convnet", 1, 10, digits.train.image_size, CPU, {}, False)
    feature_map = build_feature_map("random-embedding", context)
    torch.manual_seed(0)
    feature_map.refresh()
    return feature_map


@pytest.mark.parametrize("objective", ["features", "logits"])
def test_adversarial_targets_move_real_images_within_the_ball_and_away_from_their_features(digits, objective: str) -> None:
    space = PixelSpace(digits.train.mean, digits.train.std)
    term = AdversarialTargets(RobustnessConfig(method="adversarial-targets", epsilon=0.1, steps=3, objective=objective), space)
    feature_map = _feature_map(digits)
    images, labels = digits.train.images[:64], digits.train.labels[:64]
    moved = term.perturb_real(feature_map, images, labels, torch.Generator().manual_seed(0))
    shift = (moved - images) * torch.tensor(space.std).view(1, -1, 1, 1)
    assert shift.abs().max() <= 0.1 + 1e-5 and shift.abs().max() > 0.05
    noise = images + (torch.rand(images.shape, generator=torch.Generator().manual_seed(1)) * 2 - 1) * 0.1 / space.std[0]
    if objective == "features":  # PGD displaces the embedding more than random noise of the same radius does
        clean = embed_in_chunks(feature_map, images, labels)
        attacked = (embed_in_chunks(feature_map, moved, labels) - clean).norm(dim=1).mean()
        assert attacked > 1.5 * (embed_in_chunks(feature_map, noise, labels) - clean).norm(dim=1).mean()
    else:  # PGD raises the network's own cross-entropy more than noise does
        with torch.no_grad():
            ce = {name: F.cross_entropy(feature_map.net(x), labels) for name, x in (("pgd", moved), ("noise", noise))}
        assert ce["pgd"] > ce["noise"] + 0.01


def test_the_input_gradient_penalty_reaches_the_pixels_and_grows_with_its_weight(digits) -> None:
    space = PixelSpace(digits.train.mean, digits.train.std)
    feature_map = _feature_map(digits)
    stored = digits.train.images[:20].clone().requires_grad_(True)
    syn = stored * 1.0  # a non-leaf, as the decoded and augmented images are
    labels = digits.train.labels[:20]
    penalties = []
    for weight in (1.0, 2.0):
        term = InputGradientPenalty(RobustnessConfig(method="input-gradient", weight=weight), space)
        torch.manual_seed(3)
        penalties.append(term.penalty(feature_map, syn, labels))
    assert penalties[0] > 0 and torch.allclose(penalties[1], 2 * penalties[0])
    (grad,) = torch.autograd.grad(penalties[0], stored)
    assert grad.abs().sum() > 0  # double backpropagation: the penalty moves the pixels
    off = InputGradientPenalty(RobustnessConfig(method="input-gradient", weight=0.0), space)
    assert off.penalty(feature_map, syn, labels) is None


def test_a_pool_embeds_the_perturbed_real_images(digits) -> None:
    feature_map = _feature_map(digits)
    per_class = [idx for idx in digits.train.indices_per_class()]
    seen = []

    def perturb(images: torch.Tensor, labels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        seen.append(len(images))
        return images + 1.0

    args = (feature_map, "mmd-linear", digits.train.images, per_class, list(range(10)), 10)
    options = {"networks": 2, "batch_real": 8, "dsa_strategy": None, "dsa_mode": "single", "seed": 0, "progress": False}
    clean = RealStatisticsPool.build(*args, **options)
    moved = RealStatisticsPool.build(*args, **options, perturb=perturb)
    assert seen == [80, 80]  # every entry's real images, once
    assert not torch.allclose(clean.features[0][0], moved.features[0][0])


@pytest.mark.parametrize(
    ("robustness", "target"),
    [
        ({"method": "adversarial-targets", "steps": 2}, {}),
        ({"method": "adversarial-targets", "steps": 2}, {"pool_networks": 2}),
        ({"method": "adversarial-targets", "steps": 2, "objective": "logits"},
         {"pool_networks": 1, "real_target": "trained-pool", "real_target_params": {"train_steps": 4, "snapshots": 1, "batch": 32}}),
        ({"method": "input-gradient", "weight": 0.5}, {}),
    ],
    ids=["adversarial-fresh", "adversarial-pool", "adversarial-trained-logits", "input-gradient"],
)
def test_robust_condensation_runs_with_the_targets_and_records_its_term(digits, make_config, robustness, target) -> None:
    plain = make_config(condense={"discrepancy": "mmd-linear", "iterations": 3, **target})
    robust = make_config(condense={"discrepancy": "mmd-linear", "iterations": 3, **target, "robustness": robustness})
    before, after = condense(digits.train, plain), condense(digits.train, robust)
    assert "robustness" not in before.metadata
    assert after.metadata["robustness"]["method"] == robustness["method"]
    assert after.metadata["robustness"]["epsilon"] == 0.1
    assert not torch.equal(before.images, after.images)


def test_a_new_robustness_term_is_one_class_and_its_registration(digits, make_config, scratch_terms) -> None:
    calls = []

    @register_robustness("count-calls")
    class CountCalls(RobustnessTerm):
        def penalty(self, feature_map, images, labels):
            calls.append(len(images))
            return images.pow(2).mean() * 0.0

    config = make_config(condense={"discrepancy": "mmd-linear", "iterations": 4, "robustness": {"method": "count-calls"}})
    synthetic = condense(digits.train, config)
    assert calls == [20] * 4 and synthetic.metadata["robustness"]["method"] == "count-calls"


@pytest.mark.parametrize(
    ("robustness", "message"),
    [
        ({"method": "pgd"}, "condense.robustness.method must be one of adversarial-targets, input-gradient"),
        ({"method": "adversarial-targets", "epsilon": 2.0}, r"condense.robustness.epsilon must lie in \(0, 1\]"),
        ({"steps": 0}, "condense.robustness.steps must be >= 1; got 0"),
        ({"weight": -1.0}, "condense.robustness.weight must be >= 0"),
        ({"objective": "loss"}, "condense.robustness.objective must be one of features, logits; got 'loss'"),
    ],
)
def test_bad_robustness_settings_are_one_line_errors(robustness: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as err:
        Config.from_dict({"condense": {"robustness": robustness}})
    assert "\n" not in str(err.value)


def test_robustness_needs_matching_with_an_embedding_map_and_no_privacy() -> None:
    with pytest.raises(ConfigError, match="condense.method must be matching"):
        Config.from_dict({"condense": {"method": "herding", "robustness": {"method": "input-gradient"}}})
    with pytest.raises(ConfigError, match="needs an embedding feature map; 'gradients' produces gradients"):
        Config.from_dict({"condense": {"feature_map": "gradients", "discrepancy": "gradient-matching",
                                       "robustness": {"method": "adversarial-targets"}}})  # fmt: skip
    with pytest.raises(ConfigError, match="privacy mode .* condense.robustness must be null"):
        Config.from_dict({"condense": {"init": "noise", "discrepancy": "mmd-linear", "pool_networks": 2,
                                       "robustness": {"method": "adversarial-targets"}}, "privacy": {"epsilon": 1.0}})  # fmt: skip
