"""Robust evaluation: attacked accuracy of the protocol's networks with the Adversarial Robustness Toolbox."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from fedcond.apps.cli import main
from fedcond.config import Config
from fedcond.errors import ConfigError
from fedcond.evaluation import fit, fresh_network, predict
from fedcond.robustness import RobustEvaluationConfig, evaluate_robust
from fedcond.robustness.attacks import AttackSubset, attacked_accuracies
from fedcond.synthetic import SyntheticSet

CPU = torch.device("cpu")
#: Radii from harmless to destructive for an undefended digits network (pixel units).
RADII = [0.02, 0.1, 0.3, 0.5]


@pytest.fixture(scope="module")
def undefended(digits) -> torch.nn.Module:
    """An MLP trained on all of digits' training split, no defence: ~90 % clean."""
    config = Config.from_dict({"evaluation": {"epochs": 30}})
    net = fresh_network("mlp", digits.train.images.shape[1:], 10, device=CPU, seed=0)
    return fit(net, digits.train.images, digits.train.labels, cfg=config.evaluation, dsa_strategy=None, device=CPU, seed=0)


def _cfg(**changes: object) -> RobustEvaluationConfig:
    cfg = RobustEvaluationConfig(**{"epsilons": RADII, "test_images": 200, **changes})
    cfg.validate(Config())
    return cfg


def test_an_undefended_network_falls_as_the_radius_grows(digits, undefended) -> None:
    subset = AttackSubset.draw(digits.test, 200, seed=0)
    result = attacked_accuracies(undefended, subset, 10, _cfg(), device=CPU, seed=1)
    # ART sees pixels in [0, 1] and standardises inside: its clean accuracy is the engine's on the same images.
    normalised = (torch.from_numpy(subset.pixels) - torch.from_numpy(subset.mean)) / torch.from_numpy(subset.std)
    engine = 100.0 * float((predict(undefended, normalised) == torch.from_numpy(subset.labels)).float().mean())
    assert result["clean"] == pytest.approx(engine) and result["clean"] > 80
    pgd = [result["pgd"][f"{eps:.4g}"] for eps in RADII]
    assert pgd == sorted(pgd, reverse=True) and pgd[0] <= result["clean"]  # monotone in the radius
    assert pgd[-1] <= 5.0  # at half the pixel range nothing survives
    assert pgd[1] < result["clean"] - 10  # an undefended network loses at 0.1
    # AutoAttack at the largest radius is at least as strong as PGD there.
    assert list(result["autoattack"]) == ["0.5"] and result["autoattack"]["0.5"] <= pgd[-1] + 1.0
    again = attacked_accuracies(undefended, subset, 10, _cfg(), device=CPU, seed=1)
    assert {k: again[k] for k in ("clean", "pgd", "autoattack")} == {k: result[k] for k in ("clean", "pgd", "autoattack")}


def test_adversarial_training_buys_pgd_accuracy_that_art_measures(digits) -> None:
    # PGD-AT (the engine's own PGD) against standard training, both graded by ART's PGD at 0.1.
    base = {"evaluation": {"epochs": 30, "lr": 0.05, "dsa": False}}
    subset = AttackSubset.draw(digits.test, 200, seed=0)
    pgd = {}
    for name, adversarial in (("standard", {}), ("pgd-at", {"epsilon": 0.1, "steps": 3})):
        config = Config.from_dict({"evaluation": {**base["evaluation"], "adversarial": adversarial}})
        net = fresh_network("mlp", digits.train.images.shape[1:], 10, device=CPU, seed=0)
        from fedcond.adversarial import AdversarialTraining, PixelSpace

        at = AdversarialTraining(PixelSpace(digits.train.mean, digits.train.std), 0.1, 3) if adversarial else None
        fit(net, digits.train.images, digits.train.labels, cfg=config.evaluation, dsa_strategy=None, device=CPU, seed=0, adversarial=at)
        pgd[name] = attacked_accuracies(net, subset, 10, _cfg(epsilons=None, autoattack=None), device=CPU, seed=1)["pgd"]["0.1"]
    assert pgd["pgd-at"] > pgd["standard"] + 15  # measured: 77.0 against 50.0


def test_the_attacked_subset_is_fixed_by_the_seed_and_in_pixel_space(digits) -> None:
    first, same, other = (AttackSubset.draw(digits.test, 50, seed=s) for s in (0, 0, 1))
    assert np.array_equal(first.labels, same.labels) and np.array_equal(first.pixels, same.pixels)
    assert not np.array_equal(first.pixels, other.pixels)
    assert len(first) == 50 and first.pixels.min() >= 0.0 and first.pixels.max() <= 1.0
    assert len(AttackSubset.draw(digits.test, None, seed=0)) == len(digits.test)


def test_default_radii_follow_the_images_channels() -> None:
    cfg = RobustEvaluationConfig()
    assert cfg.radii(1) == [0.05, 0.1] and cfg.radii(3) == pytest.approx([2 / 255, 8 / 255])
    assert RobustEvaluationConfig(epsilons=[0.2]).radii(3) == [0.2]


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("robust_evaluation.steps=0", "robust_evaluation.steps must be >= 1; got 0"),
        ("robust_evaluation.epsilons=[0.1,1.5]", r"robust_evaluation.epsilons must lie in \(0, 1\] \(pixel units\); got 1.5"),
        ("robust_evaluation.epsilons=[]", "robust_evaluation.epsilons must name at least one radius"),
        ("robust_evaluation.autoattack=strong", "robust_evaluation.autoattack must be one of standard, fast; got 'strong'"),
        ("robust_evaluation.autoattack_epsilon=0", r"robust_evaluation.autoattack_epsilon must lie in \(0, 1\]"),
        ("robust_evaluation.test_images=0", "robust_evaluation.test_images must be >= 1"),
        ("robust_evaluation.autoattack=off", "robust_evaluation.autoattack must be a string, got False"),
        ("robust_evaluation.method=pgd", "unknown config key robust_evaluation.'method'"),
    ],
)
def test_bad_settings_are_one_line_errors(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as err:
        Config.load(None, [override])
    assert "\n" not in str(err.value)


def test_evaluate_robust_attacks_every_run_network(digits, make_config) -> None:
    config = make_config(
        evaluation={"runs": 2, "epochs": 10, "model": "mlp"},
        robust_evaluation={"epsilons": [0.05, 0.3], "steps": 5, "test_images": 60, "autoattack": None},
    )
    images, labels = digits.train.images[:100], digits.train.labels[:100]
    synthetic = SyntheticSet(images.clone(), labels.clone(), 10)
    evaluation, robust = evaluate_robust(synthetic, digits.test, config, device=CPU)
    assert evaluation.runs == 2 and len(evaluation.measured) == 2 and "measured" not in evaluation.to_dict()
    assert robust["runs"] == 2 and robust["test_images"] == 60 and robust["autoattack"] is None
    assert robust["library"].startswith("adversarial-robustness-toolbox 1.")
    pgd = robust["pgd"]["accuracy"]
    assert set(pgd) == {"0.05", "0.3"} and len(pgd["0.3"]["accuracies"]) == 2
    assert pgd["0.3"]["mean"] <= pgd["0.05"]["mean"] <= robust["clean"]["mean"]
    assert robust["pgd"]["steps"] == 5 and robust["pgd"]["random_start"] is True


def test_cli_evaluate_robust_writes_the_robust_section(tmp_path, capsys) -> None:
    fast = ["--set", "device=cpu", "--set", "progress=false", "--set", "condense.ipc=2", "--set", "condense.iterations=3",
            "--set", "evaluation.runs=1", "--set", "evaluation.epochs=5"]  # fmt: skip
    out = tmp_path / "set"
    assert main(["condense", *fast, "--no-evaluate", "--out", str(out)]) == 0
    plain = tmp_path / "plain"
    assert main(["evaluate", *fast, "--synthetic", str(out / "synthetic.pt"), "--out", str(plain)]) == 0
    assert json.loads((plain / "results.json").read_text())["robust"] is None
    robust_out = tmp_path / "robust"
    attack = ["--set", "robust_evaluation.test_images=40", "--set", "robust_evaluation.steps=3"]
    assert main(["evaluate", *fast, *attack, "--robust", "--synthetic", str(out / "synthetic.pt"), "--out", str(robust_out)]) == 0
    robust = json.loads((robust_out / "results.json").read_text())["robust"]
    assert set(robust["pgd"]["accuracy"]) == {"0.05", "0.1"} and set(robust["autoattack"]["accuracy"]) == {"0.1"}
    assert robust["autoattack"]["version"] == "fast" and robust["test_images"] == 40
    printed = capsys.readouterr().out
    assert "attacked on 40 test images" in printed and "autoattack (fast)" in printed
    assert main(["evaluate", *fast, "--set", "robust_evaluation.steps=0", "--robust",
                 "--synthetic", str(out / "synthetic.pt"), "--out", str(robust_out)]) == 2  # fmt: skip
    assert json.loads((robust_out / "results.json").read_text())["robust"] is not None  # the earlier results stay
