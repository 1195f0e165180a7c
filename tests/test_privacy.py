"""Differentially private condensation: the accountant's epsilon, clipping, noise, refusals."""

from __future__ import annotations

import math

import pytest
import torch
from scipy.stats import norm

from fedcond.condense import condense
from fedcond.config import Config
from fedcond.errors import ConfigError
from fedcond.privacy import calibrate_noise, epsilon_spent
from fedcond.privacy.release import clipped_class_sums, noised_means, sensitivity


def analytic_gaussian_epsilon(noise: float, delta: float) -> float:
    """The exact epsilon of one Gaussian mechanism (Balle & Wang 2018), by bisection: a lower bound for any accountant."""

    def delta_at(eps: float) -> float:
        return norm.cdf(0.5 / noise - eps * noise) - math.exp(eps) * norm.cdf(-0.5 / noise - eps * noise)

    low, high = 0.0, 100.0
    for _ in range(200):
        middle = (low + high) / 2
        low, high = (middle, high) if delta_at(middle) > delta else (low, middle)
    return high


def classic_rdp_epsilon(noise: float, delta: float) -> float:
    """Mironov's RDP bound for one Gaussian mechanism: min over orders of a/(2 s^2) + log(1/d)/(a-1)."""
    return min(a / (2 * noise**2) + math.log(1 / delta) / (a - 1) for a in [1 + k / 100 for k in range(1, 20000)])


@pytest.mark.parametrize("noise", [0.8, 1.0, 4.0])
def test_single_release_epsilon_lies_between_the_exact_value_and_the_classic_bound(noise: float) -> None:
    eps = epsilon_spent(noise, 1e-5, sample_size=1, population=1)
    assert analytic_gaussian_epsilon(noise, 1e-5) <= eps <= classic_rdp_epsilon(noise, 1e-5) + 1e-6


def test_epsilon_grows_with_releases_and_shrinks_with_noise_and_subsampling() -> None:
    one = epsilon_spent(2.0, 1e-5, releases=1, sample_size=1, population=1)
    many = epsilon_spent(2.0, 1e-5, releases=100, sample_size=1, population=1)
    sampled = epsilon_spent(2.0, 1e-5, releases=100, sample_size=10, population=1000)
    assert one < many and sampled < many
    assert epsilon_spent(4.0, 1e-5, sample_size=1, population=1) < one
    assert epsilon_spent(0.0, 1e-5, sample_size=1, population=1) == math.inf


@pytest.mark.parametrize("releases, sample_size, population", [(1, 1, 1), (300, 1_000, 100_000)])
def test_calibrated_noise_is_the_least_that_meets_the_target(releases: int, sample_size: int, population: int) -> None:
    kwargs = {"releases": releases, "sample_size": sample_size, "population": population}
    noise = calibrate_noise(1.0, 1e-5, **kwargs)
    assert epsilon_spent(noise, 1e-5, **kwargs) <= 1.0
    assert epsilon_spent(noise * 0.99, 1e-5, **kwargs) > 1.0
    with pytest.raises(ConfigError, match="epsilon"):
        calibrate_noise(0.0, 1e-5, **kwargs)


def test_clipping_bounds_every_samples_contribution() -> None:
    torch.manual_seed(0)
    big = [torch.randn(50, 16) * 100, torch.randn(50, 16) * 1e-3]  # two networks, one far above the bound
    labels = torch.arange(50) % 5
    sums, counts = clipped_class_sums(big, labels, list(range(5)), clip=2.0)
    assert sums.shape == (5, 2, 16) and counts.tolist() == [10.0] * 5
    single, _ = clipped_class_sums([e[:1] for e in big], labels[:1], [0], clip=2.0)
    per_network = single[0].norm(dim=1)
    assert float(per_network[0]) == pytest.approx(2.0 / math.sqrt(2))  # clipped down
    assert float(per_network[1]) < 0.01  # small embeddings pass unchanged
    assert float(single.norm()) <= 2.0 + 1e-5


def test_noise_is_really_added_with_the_calibrated_scale() -> None:
    sums, counts = torch.zeros(4, 1, 20_000), torch.full((4,), 100.0)
    means = noised_means(sums, counts, clip=1.0, noise_multiplier=3.0, generator=torch.Generator().manual_seed(0))
    # The released sums are noise of std 3 * sqrt(2); divided by the (noised, ~100) counts.
    empirical = float((means * 100).std())
    assert empirical == pytest.approx(3.0 * sensitivity(1.0), rel=0.05)
    quiet = noised_means(sums, counts, clip=1.0, noise_multiplier=0.0, generator=torch.Generator().manual_seed(0))
    assert torch.count_nonzero(quiet) == 0


def private_config(**privacy: object) -> Config:
    return Config.from_dict({
        "device": "cpu", "progress": False,
        "condense": {"init": "noise", "discrepancy": "mmd-linear", "iterations": 5, "ipc": 2, "batch_real": 32,
                     "pool_networks": 2, "optimizer": "adam", "lr_images": 0.1},
        "privacy": {"epsilon": 1.0, "delta": 1e-5, **privacy},
    })  # fmt: skip


def test_privacy_mode_refuses_real_initialisation_and_other_leaks() -> None:
    data = private_config().to_dict()
    data["condense"]["init"] = "real"
    with pytest.raises(ConfigError, match="refuses condense.init: real"):
        Config.from_dict(data)
    data["condense"].update(init="noise", discrepancy="mmd-gaussian")
    with pytest.raises(ConfigError, match="mmd-linear"):
        Config.from_dict(data)
    data["condense"].update(discrepancy="mmd-linear", feature_map="mixed-embedding")
    with pytest.raises(ConfigError, match="data-independent"):
        Config.from_dict(data)
    with pytest.raises(ConfigError, match="pool_networks 0"):
        private_config(mode="per-iteration")
    with pytest.raises(ConfigError, match="epsilon"):
        private_config(epsilon=-1.0)


@pytest.mark.parametrize("mode", ["once", "per-iteration"])
def test_private_condensation_records_its_guarantee_and_hides_class_presence(digits, mode: str) -> None:
    data = private_config().to_dict()
    data["privacy"]["mode"] = mode
    if mode == "per-iteration":
        data["condense"]["pool_networks"] = 0
        data["privacy"]["sample_rate"] = 0.1
    config = Config.from_dict(data)
    without_three = digits.train.subset(torch.nonzero(digits.train.labels != 3).squeeze(1))
    synthetic = condense(without_three, config)
    privacy = synthetic.metadata["privacy"]
    assert privacy["epsilon"] <= 1.0 and privacy["delta"] == 1e-5 and privacy["noise_multiplier"] > 0
    assert privacy["mode"] == mode and privacy["releases"] == (1 if mode == "once" else 5)
    # Every class gets ipc images: whether a class is present is private too.
    assert synthetic.class_counts().tolist() == [2] * 10
    assert torch.isfinite(synthetic.images).all()


def test_non_private_sets_say_so(digits) -> None:
    config = Config.from_dict({"device": "cpu", "progress": False, "condense": {"iterations": 2, "ipc": 1, "batch_real": 16}})
    synthetic = condense(digits.train, config)
    assert synthetic.metadata["privacy"] == {"epsilon": None, "delta": None}


def test_condense_command_reports_the_guarantee_next_to_non_private_baselines(tmp_path) -> None:
    import json

    from fedcond.apps.cli import main

    args = ["condense", "--out", str(tmp_path), "--baselines", "random", "--set", "progress=false", "--set", "device=cpu",
            "--set", "privacy.epsilon=5", "--set", "condense.init=noise", "--set", "condense.discrepancy=mmd-linear",
            "--set", "condense.pool_networks=2", "--set", "condense.iterations=3", "--set", "condense.ipc=1",
            "--set", "evaluation.runs=1", "--set", "evaluation.epochs=2"]  # fmt: skip
    assert main(args) == 0
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["privacy"]["epsilon"] <= 5 and results["privacy"]["delta"] == 1e-5
    assert "random" in results["baselines"]


# ---------------------------------------------------------------------------- fedcond audit
def test_roc_summary_reads_separable_and_identical_scores() -> None:
    import numpy as np

    from fedcond.privacy.audit import roc_summary

    separable = roc_summary(np.arange(100.0) + 1000, np.arange(100.0))
    assert separable == {"auc": 1.0, "tpr_at_1pct_fpr": 1.0, "tpr_at_0.1pct_fpr": 1.0}
    rng = np.random.default_rng(0)
    same = roc_summary(rng.normal(size=5000), rng.normal(size=5000))
    assert abs(same["auc"] - 0.5) < 0.03 and same["tpr_at_1pct_fpr"] < 0.03


def test_audit_finds_real_samples_in_a_coreset_but_not_in_a_private_set(digits) -> None:
    from fedcond.privacy.audit import audit, real_data_reference

    base = {"device": "cpu", "progress": False, "evaluation": {"epochs": 3, "runs": 1},
            "privacy": {"audit_samples": 400, "audit_reference_epochs": 2}}  # fmt: skip
    coreset_config = Config.from_dict({**base, "condense": {"method": "random", "ipc": 20}})
    coreset = condense(digits.train, coreset_config)
    leaky = audit(coreset, digits, coreset_config, torch.device("cpu"))
    private = condense(digits.train, private_config(epsilon=1.0))
    private_config_audit = Config.from_dict({**private_config().to_dict(), **base})
    # One reference serves every set audited with the same dataset, evaluation and audit settings.
    reference = real_data_reference(digits, private_config_audit, torch.device("cpu"))
    sealed = audit(private, digits, private_config_audit, torch.device("cpu"), reference=reference)
    assert sealed["attacks"]["loss-threshold-real-data-model"] == leaky["attacks"]["loss-threshold-real-data-model"]
    assert sealed["model_accuracy"]["real"] == leaky["model_accuracy"]["real"]
    assert leaky["members"] == leaky["nonmembers"] == 400 and leaky["privacy"] == {"epsilon": None, "delta": None}
    assert set(leaky["attacks"]) == {"loss-threshold", "nearest-synthetic-neighbour", "loss-threshold-real-data-model"}
    # Members that are coreset images sit at distance 0: found with no false positive at all.
    assert leaky["attacks"]["nearest-synthetic-neighbour"]["tpr_at_0.1pct_fpr"] > 0.05
    assert sealed["attacks"]["nearest-synthetic-neighbour"]["tpr_at_0.1pct_fpr"] < 0.02
    assert sealed["privacy"]["epsilon"] <= 1.0 and sealed["synthetic_set"]["init"] == "noise"


def test_audit_refuses_a_reference_computed_for_other_settings(digits) -> None:
    from fedcond.privacy.audit import audit, real_data_reference

    config = Config.from_dict({"device": "cpu", "progress": False, "evaluation": {"epochs": 1, "runs": 1},
                               "privacy": {"audit_samples": 50, "audit_reference_epochs": 1}})  # fmt: skip
    reference = real_data_reference(digits, config, torch.device("cpu"))
    other = Config.from_dict({**config.to_dict(), "privacy": {"audit_samples": 60, "audit_reference_epochs": 1}})
    coreset = condense(digits.train, Config.from_dict({**config.to_dict(), "condense": {"method": "random", "ipc": 1}}))
    with pytest.raises(ValueError, match="real-data reference"):
        audit(coreset, digits, other, torch.device("cpu"), reference=reference)


def test_audit_command_writes_results_and_refuses_a_mismatched_set(tmp_path, capsys) -> None:
    import json

    from fedcond.apps.cli import main
    from fedcond.synthetic import SyntheticSet

    fast = ["--set", "progress=false", "--set", "device=cpu", "--set", "evaluation.epochs=2",
            "--set", "privacy.audit_samples=50", "--set", "privacy.audit_reference_epochs=1"]  # fmt: skip
    assert main(["condense", "--out", str(tmp_path / "set"), "--no-evaluate", "--set", "condense.iterations=2", *fast]) == 0
    assert main(["audit", "--synthetic", str(tmp_path / "set" / "synthetic.pt"), "--out", str(tmp_path / "audit"), *fast]) == 0
    results = json.loads((tmp_path / "audit" / "results.json").read_text())
    assert results["members"] == 50 and "auc" in results["attacks"]["loss-threshold"]
    assert results["privacy"] == {"epsilon": None, "delta": None}
    wrong = SyntheticSet(torch.zeros(10, 1, 4, 4), torch.arange(10), 10)
    wrong.save(tmp_path / "wrong.pt")
    capsys.readouterr()
    assert main(["audit", "--synthetic", str(tmp_path / "wrong.pt"), "--out", str(tmp_path / "bad"), *fast]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "1x4x4 but 1x8x8 expected" in err
