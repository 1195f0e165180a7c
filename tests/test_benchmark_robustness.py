"""The robustness benchmark: a real quick run end to end, targets from what was measured."""

from __future__ import annotations

import json
from pathlib import Path

from simulations.benchmark_robustness import FULL_CONFIG, README_END, README_START, SCENARIOS, checks, main, scenario_config


def _training(clean: float, pgd: float) -> dict:
    return {"clean": {"mean": clean, "std": 0.5}, "pgd": {"0.05": {"mean": pgd + 10, "std": 1.0}, "0.1": {"mean": pgd, "std": 1.0}},
            "autoattack": {"0.1": {"mean": pgd - 2, "std": 1.0}}, "adversarial": None, "seconds_mean": 1.0}  # fmt: skip


def _scenario(seconds: float, standard: tuple[float, float], adversarial: tuple[float, float], seeds: int = 3) -> dict:
    return {"dataset": "fashion-mnist", "seeds": list(range(seeds)), "condense_seconds_mean": seconds,
            "training": {"standard": _training(*standard), "adversarial": _training(*adversarial)}}  # fmt: skip


def test_checks_follow_the_measurements() -> None:
    plain = _scenario(100.0, standard=(85.0, 10.0), adversarial=(80.0, 50.0))
    robust = _scenario(250.0, standard=(81.0, 26.0), adversarial=(78.5, 51.0))
    got = checks({"plain": plain, "robust": robust})
    assert got["robust_vs_plain_standard"]["met"] and got["robust_vs_plain_standard"]["pgd_gain_points"] == 16.0
    assert got["robust_vs_plain_adversarial"]["met"] and got["robust_vs_plain_adversarial"]["clean_drop_points"] == 1.5
    assert got["robust_condense_time"] == {"seeds": 3, "plain_seconds": 100.0, "robust_seconds": 250.0, "ratio": 2.5, "met": True}
    worse = _scenario(400.0, standard=(79.0, 26.0), adversarial=(76.0, 49.0))
    got = checks({"plain": plain, "robust": worse})
    assert not got["robust_vs_plain_standard"]["met"]  # clean fell by 6 > 5
    assert not got["robust_vs_plain_adversarial"]["met"] and not got["robust_condense_time"]["met"]
    two_seeds = checks({"plain": plain, "robust": _scenario(250.0, (81.0, 26.0), (78.5, 51.0), seeds=2)})
    assert not two_seeds["robust_vs_plain_standard"]["met"]  # the targets need 3 seeds
    assert checks({"plain": plain}) == {} and checks({"plain": plain | {"dataset": "digits"}, "robust": robust | {"dataset": "digits"}}) == {}


def test_scenarios_build_valid_configs() -> None:
    configs = {s.name: scenario_config(s, False, FULL_CONFIG) for s in SCENARIOS}
    assert configs["plain"].condense.robustness.method is None
    assert configs["robust"].condense.robustness.method == "adversarial-targets" and configs["robust"].condense.robustness.epsilon == 0.1
    assert configs["random"].condense.method == "random" and configs["plain"].dataset.name == "fashion-mnist"
    assert scenario_config(SCENARIOS[1], True, FULL_CONFIG).dataset.name == "digits"


def test_quick_run_condenses_trains_both_ways_and_attacks(tmp_path: Path) -> None:
    out, readme = tmp_path / "run", tmp_path / "README.md"
    readme.write_text(f"{README_START}\n{README_END}\n")
    assert main(["--quick", "--scenarios", "plain,robust", "--out", str(out), "--update-readme", str(readme)]) == 0
    results = json.loads((out / "results.json").read_text())
    robust = results["scenarios"]["robust"]
    assert robust["seeds"] == [0] and robust["robustness"]["method"] == "adversarial-targets"
    assert set(robust["training"]) == {"standard", "adversarial"}
    assert robust["training"]["adversarial"]["adversarial"]["method"] == "pgd-at"
    assert robust["training"]["standard"]["adversarial"] is None
    assert set(robust["training"]["standard"]["pgd"]) == {"0.05", "0.1"} and set(robust["training"]["standard"]["autoattack"]) == {"0.1"}
    assert robust["per_seed"][0]["standard"]["library"].startswith("adversarial-robustness-toolbox")
    assert (out / "robust" / "set-seed0.pt").is_file()
    assert results["checks"] == {}  # digits: the targets are Fashion-MNIST's
    text = readme.read_text()
    assert "| robust | adversarial | 1 |" in text and "AutoAttack 0.1 %" in text
