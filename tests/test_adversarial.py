"""PGD in pixel space, the engine's adversarial training (evaluation.adversarial)."""

from __future__ import annotations

import pytest
import torch

from fedcond.adversarial import PixelSpace, pgd_perturb
from fedcond.config import Config
from fedcond.errors import ConfigError
from fedcond.evaluation import evaluate_synthetic, fit, fresh_network, piece_loss
from fedcond.synthetic import SyntheticSet

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def trained(digits) -> torch.nn.Module:
    config = Config.from_dict({"evaluation": {"epochs": 20}})
    net = fresh_network("mlp", digits.train.images.shape[1:], 10, device=CPU, seed=0)
    return fit(net, digits.train.images, digits.train.labels, cfg=config.evaluation, dsa_strategy=None, device=CPU, seed=0)


def test_pgd_stays_in_the_pixel_ball_and_the_pixel_range_and_raises_the_loss(digits, trained) -> None:
    space = PixelSpace(digits.test.mean, digits.test.std)
    images, labels = digits.test.images[:128], digits.test.labels[:128]
    generator = torch.Generator().manual_seed(0)
    adversarial = pgd_perturb(trained, images, labels, piece_loss, space=space, epsilon=0.1, steps=5, generator=generator)
    std, mean = torch.tensor(space.std).view(1, -1, 1, 1), torch.tensor(space.mean).view(1, -1, 1, 1)
    moved = (adversarial - images) * std  # in pixel units
    assert moved.abs().max() <= 0.1 + 1e-5 and moved.abs().max() > 0.05
    pixels = adversarial * std + mean
    assert pixels.min() >= -1e-5 and pixels.max() <= 1 + 1e-5
    assert piece_loss(trained, adversarial, labels) > 1.5 * piece_loss(trained, images, labels)
    assert not trained.training  # left in the mode it was in
    again = pgd_perturb(trained, images, labels, piece_loss, space=space, epsilon=0.1, steps=5,
                        generator=torch.Generator().manual_seed(0))  # fmt: skip
    assert torch.equal(again, adversarial)


def test_adversarial_training_is_recorded_and_changes_the_networks(digits) -> None:
    base = {"device": "cpu", "progress": False, "evaluation": {"runs": 1, "epochs": 30, "lr": 0.05, "model": "mlp", "dsa": False}}
    synthetic = SyntheticSet(digits.train.images[:200].clone(), digits.train.labels[:200].clone(), 10)
    plain = evaluate_synthetic(synthetic, digits.test, Config.from_dict(base))
    config = Config.from_dict({**base, "evaluation": {**base["evaluation"], "adversarial": {"epsilon": 0.1, "steps": 2}}})
    robust = evaluate_synthetic(synthetic, digits.test, config)
    assert plain.adversarial is None and plain.to_dict()["adversarial"] is None
    assert robust.to_dict()["adversarial"] == {"method": "pgd-at", "epsilon": 0.1, "steps": 2, "step_size": 0.125, "norm": "linf"}
    assert robust.accuracies != plain.accuracies and min(plain.accuracy_mean, robust.accuracy_mean) > 50


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("evaluation.adversarial.epsilon=0", r"evaluation.adversarial.epsilon must lie in \(0, 1\]"),
        ("evaluation.adversarial.steps=0", "evaluation.adversarial.steps must be >= 1; got 0"),
        ("evaluation.adversarial.step_size=-1", "evaluation.adversarial.step_size must be > 0"),
    ],
)
def test_bad_adversarial_settings_are_one_line_errors(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Config.load(None, [override])
