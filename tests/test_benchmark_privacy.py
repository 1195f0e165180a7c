"""The privacy benchmark: a real quick scenario end to end, targets from what was measured."""

from __future__ import annotations

import json
from pathlib import Path

from simulations.benchmark_privacy import README_END, README_START, SCENARIOS, checks, main, scenario_config


def _scenario(dataset: str, accuracy: float, auc: float) -> dict:
    attack = {"auc": auc, "tpr_at_1pct_fpr": 0.01, "tpr_at_0.1pct_fpr": 0.0}
    return {"dataset": dataset, "accuracy_mean": accuracy,
            "attacks": {"loss-threshold": attack, "nearest-synthetic-neighbour": attack, "loss-threshold-real-data-model": attack}}  # fmt: skip


def test_checks_follow_the_measurements() -> None:
    got = checks({"dp-eps1": _scenario("fashion-mnist", 79.0, 0.53), "dp-eps10": _scenario("fashion-mnist", 81.0, 0.5)})
    assert got["accuracy_dp-eps1"]["met"] and not got["accuracy_dp-eps10"]["met"]
    assert not got["loss_attack_auc_dp_eps1"]["met"]
    assert "accuracy_dp-eps1" not in checks({"dp-eps1": _scenario("digits", 90.0, 0.5)})  # targets are Fashion-MNIST's


def test_quick_scenario_condenses_evaluates_and_audits(tmp_path: Path) -> None:
    out, readme = tmp_path / "run", tmp_path / "README.md"
    readme.write_text(f"{README_START}\n{README_END}\n")
    assert main(["--quick", "--scenarios", "dp-eps1", "--out", str(out), "--update-readme", str(readme)]) == 0
    results = json.loads((out / "results.json").read_text())
    s = results["scenarios"]["dp-eps1"]
    assert s["epsilon"] <= 1.0 and s["noise_multiplier"] > 0 and s["init"] == "noise"
    assert set(s["attacks"]) == {"loss-threshold", "nearest-synthetic-neighbour", "loss-threshold-real-data-model"}
    assert (out / "dp-eps1" / "synthetic.pt").is_file() and (out / "dp-eps1" / "results.json").is_file()
    assert "| dp-eps1 | digits | noise |" in readme.read_text()


def test_scenarios_build_valid_configs() -> None:
    for scenario in SCENARIOS:
        full = scenario_config(scenario, False, "configs/private-fashion-mnist.yaml")
        quick = scenario_config(scenario, True, "configs/private-fashion-mnist.yaml")
        assert full.dataset.name == "fashion-mnist" and quick.dataset.name == "digits"
    assert scenario_config(SCENARIOS[-1], False, "configs/private-fashion-mnist.yaml").condense.init == "real"
