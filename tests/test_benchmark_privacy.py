"""The privacy benchmark: a real quick scenario end to end, targets from what was measured."""

from __future__ import annotations

import json
from pathlib import Path

from simulations.benchmark_privacy import (
    README_END,
    README_START,
    SCENARIOS,
    checks,
    main,
    release_label,
    scenario_config,
)


def _scenario(dataset: str, accuracy: float, auc: float) -> dict:
    attack = {"auc": auc, "tpr_at_1pct_fpr": 0.01, "tpr_at_0.1pct_fpr": 0.0}
    return {"dataset": dataset, "accuracy_mean": accuracy, "accuracy_std": 0.1, "init": "noise", "epsilon": 10.0,
            "noise_multiplier": 0.5, "condense_seconds": 1.0, "condensation": "once, 32 nets, 2000 it",
            "attacks": {"loss-threshold": attack, "nearest-synthetic-neighbour": attack, "loss-threshold-real-data-model": attack}}  # fmt: skip


def test_checks_follow_the_measurements() -> None:
    got = checks({"dp-eps1": _scenario("fashion-mnist", 79.0, 0.53), "dp-eps10": _scenario("fashion-mnist", 81.0, 0.5)})
    assert got["accuracy_dp-eps1"]["met"] and not got["accuracy_dp-eps10"]["met"]
    assert not got["loss_attack_auc_dp_eps1"]["met"]
    assert "accuracy_dp-eps1" not in checks({"dp-eps1": _scenario("digits", 90.0, 0.5)})  # targets are Fashion-MNIST's
    # Every way of spending epsilon 10 is held to the same target; non-private scenarios to none.
    other = checks(
        {"dp-eps10-per-iteration": _scenario("fashion-mnist", 82.5, 0.5), "eps-inf-noise-init": _scenario("fashion-mnist", 70.0, 0.5)}
    )
    assert other == {"accuracy_dp-eps10-per-iteration": {"accuracy": 82.5, "target": 82.0, "met": True}}


def test_release_label_says_how_each_scenario_condensed() -> None:
    labels = {s.name: release_label(scenario_config(s, False, "configs/private-fashion-mnist.yaml").to_dict()) for s in SCENARIOS}
    assert labels["dp-eps1"] == "once, 32 nets, 2000 it"
    assert labels["eps-inf-real-init"] == "not private, 32 nets, 2000 it"
    assert labels["dp-eps10-per-iteration"] == "per-iteration, q 0.05, fresh nets, 1000 it"
    assert labels["dp-eps10-per-iteration-factor2"].endswith(", 2x2 tiles")


def test_from_results_merges_runs_into_one_file(tmp_path: Path) -> None:
    machine = {"cores": 2, "cpu": "x86_64", "torch": "2.x", "device": "cpu", "torch_threads": 1}
    for name, scenario in (("a", "dp-eps10"), ("b", "dp-eps1")):
        run = {"benchmark": "privacy", "command": f"run {name}", "date": "2026-01-01", "machine": machine, "quick": False,
               "complete": True, "scenarios": {scenario: _scenario("fashion-mnist", 80.0, 0.5)}, "skipped": {}}  # fmt: skip
        (tmp_path / f"{name}.json").write_text(json.dumps(run))
    out = tmp_path / "merged"
    assert main(["--from-results", str(tmp_path / "a.json"), str(tmp_path / "b.json"), "--out", str(out)]) == 0
    merged = json.loads((out / "results.json").read_text())
    # The benchmark's scenario order, not the order the runs were given in.
    assert list(merged["scenarios"]) == ["dp-eps1", "dp-eps10"] and merged["command"] == "run a\nrun b"
    assert merged["checks"]["accuracy_dp-eps1"]["met"] and not merged["checks"]["accuracy_dp-eps10"]["met"]


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
        if scenario.name.startswith("dp-eps10-per-iteration"):
            # A fresh network per release, in quick runs too (the quick pool would contradict the mode).
            assert full.privacy.mode == quick.privacy.mode == "per-iteration"
            assert full.condense.pool_networks == quick.condense.pool_networks == 0
    by_name = {s.name: s for s in SCENARIOS}
    assert scenario_config(by_name["eps-inf-real-init"], False, "configs/private-fashion-mnist.yaml").condense.init == "real"
