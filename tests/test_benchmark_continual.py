"""The continual benchmark: a real quick run end to end, targets from what was measured, README block."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from simulations.benchmark_continual import README_END, README_START, SCENARIOS, checks, main, scenario_config, table


def _method(accuracy: float) -> dict:
    return {"final_average_accuracy": accuracy, "final_average_accuracy_std": 0.5, "forgetting": 10.0, "forgetting_std": 1.0,
            "accuracy_per_experience": [99.0, accuracy], "memory_size": 100, "condense_seconds_per_experience": [3.0, 5.0],
            "train_seconds_per_experience": [1.0, 1.0]}  # fmt: skip


def test_checks_follow_the_measurements() -> None:
    methods = {"condensed": _method(70.0), "replay": _method(61.0), "herding": _method(66.0)}
    scenarios = {"fashion-mnist-mem100": {"methods": methods}}
    got = checks(scenarios)
    assert set(got) == {"condensed_vs_replay_mem100", "condensed_vs_herding_mem100"}
    assert got["condensed_vs_replay_mem100"]["gain_points"] == 9.0 and got["condensed_vs_replay_mem100"]["met"]
    assert got["condensed_vs_herding_mem100"]["gain_points"] == 4.0 and not got["condensed_vs_herding_mem100"]["met"]
    methods["condensed-gdumb"] = _method(71.5)
    gdumb = checks(scenarios)["condensed_gdumb_vs_herding_mem100"]
    assert gdumb["condensed-gdumb"] == 71.5 and gdumb["gain_points"] == 5.5 and gdumb["met"]
    assert checks({}) == {} and checks({"digits-mem100": scenarios["fashion-mnist-mem100"]}) == {}
    # Condensed replay against the best of Avalanche's DER and ER-ACE at the same memory.
    methods.update({"der": _method(72.0), "er-ace": _method(69.0)})
    strong = checks(scenarios)["condensed_vs_best_avalanche_mem100"]
    assert strong["best"] == "der" and strong["gain_points"] == -2.0 and not strong["met"]
    assert strong["baselines"] == {"der": 72.0, "er-ace": 69.0}
    methods["der"] = _method(68.0)
    assert checks(scenarios)["condensed_vs_best_avalanche_mem100"] | {"baselines": None} == {
        "condensed": 70.0, "baselines": None, "best": "er-ace", "gain_points": 1.0, "met": True}
    # The bias-corrected scenario's pairs are their own checks, condensed DER's too; GDumb's protocol
    # has no Avalanche replay strategy to beat.
    balanced = {"condensed-der": _method(80.0), "replay": _method(71.0), "der": _method(79.0)}
    got = checks({**scenarios, "fashion-mnist-mem100-balanced": {"methods": balanced}})
    assert got["condensed_der_vs_replay_mem100_balanced"] | {} == {
        "condensed-der": 80.0, "replay": 71.0, "gain_points": 9.0, "target_points": 8.0, "met": True}
    assert got["condensed_der_vs_best_avalanche_mem100_balanced"]["best"] == "der"
    assert got["condensed_vs_replay_mem100"]["condensed"] == 70.0 and "condensed_gdumb_vs_best_avalanche_mem100" not in got
    # Memories 20 and 200 get the same comparisons, once measured with 3 seeds: one seed is no result.
    small = {"condensed": _method(60.0), "replay": _method(50.0), "der": _method(61.0)}
    got = checks({"fashion-mnist-mem20": {"seeds": [0, 1, 2], "methods": small},
                  "fashion-mnist-mem200": {"seeds": [0], "methods": small}})  # fmt: skip
    assert set(got) == {"condensed_vs_replay_mem20", "condensed_vs_best_avalanche_mem20"}
    assert got["condensed_vs_replay_mem20"]["met"] and not got["condensed_vs_best_avalanche_mem20"]["met"]


def test_quick_run_writes_results_and_the_readme_block(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out, readme = tmp_path / "run", tmp_path / "README.md"
    readme.write_text(f"top\n{README_START}\nold\n{README_END}\nbottom\n")
    # --quick runs two seeds.
    args = ["--quick", "--scenarios", "digits-mem100", "--set", "continual.methods=[condensed, replay]",
            "--out", str(out), "--update-readme", str(readme)]  # fmt: skip
    assert main(args) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["benchmark"] == "continual" and results["complete"] and results["quick"]
    scenario = results["scenarios"]["digits-mem100"]
    assert set(scenario["methods"]) == {"condensed", "replay"} and scenario["mem_size"] == 100
    assert (out / "digits-mem100" / "results.json").is_file()
    text = readme.read_text()
    assert text.startswith("top\n") and text.endswith("bottom\n") and "old" not in text
    assert "| digits-mem100 | split-digits | 100 (2 seeds) | condensed |" in text and "--quick run on digits" in text
    printed = capsys.readouterr().out.strip()
    assert printed == table(results)
    # Reprinting an earlier run names the command that measured it.
    readme.write_text(f"{README_START}\n{README_END}\n")
    assert main(["--from-results", str(out / "results.json"), "--update-readme", str(readme)]) == 0
    assert results["command"] in readme.read_text() and "--from-results" not in readme.read_text()


def test_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--from-results", str(tmp_path / "missing.json")]) == 2
    assert main(["--out", str(tmp_path), "--scenarios", "cifar-mem1"]) == 2
    federated = tmp_path / "federated.json"
    federated.write_text(json.dumps({"benchmark": "federated"}))
    assert main(["--from-results", str(federated)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and "cannot read" in err[0] and "unknown scenario 'cifar-mem1'" in err[1]
    assert "is not a results.json of benchmark_continual" in err[2]


def test_scenarios_build_valid_configs() -> None:
    for scenario in SCENARIOS:
        quick = scenario_config(scenario, True, "configs/continual-fashion-mnist.yaml")
        full = scenario_config(scenario, False, "configs/continual-fashion-mnist.yaml", ["seed=3"])
        assert quick.dataset.name == "digits" and full.seed == 3
        assert full.dataset.name == ("digits" if scenario.digits else "fashion-mnist")
        assert full.continual.mem_size == int(re.search(r"mem(\d+)", scenario.name).group(1))
        assert (full.continual.balanced_finetune_epochs > 0) == scenario.name.endswith("-balanced")


def test_only_splits_a_scenario_and_from_results_unites_its_methods(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    common = ["--quick", "--scenarios", "digits-mem100", "--set", "continual.methods=[naive, replay]"]
    assert main([*common, "--only", "replay", "--out", str(tmp_path / "a")]) == 0
    assert main([*common, "--only", "naive,der", "--out", str(tmp_path / "b")]) == 0
    a, b = (json.loads((tmp_path / part / "results.json").read_text()) for part in ("a", "b"))
    assert set(a["scenarios"]["digits-mem100"]["methods"]) == {"replay"}
    assert set(b["scenarios"]["digits-mem100"]["methods"]) == {"naive"}  # der is not in the scenario
    assert a["scenarios"]["digits-mem100"]["settings"] == b["scenarios"]["digits-mem100"]["settings"]
    files = [str(tmp_path / part / "results.json") for part in ("a", "b")]
    assert main(["--from-results", *files, "--out", str(tmp_path / "ab")]) == 0
    united = json.loads((tmp_path / "ab" / "results.json").read_text())
    row = united["scenarios"]["digits-mem100"]
    assert list(row["methods"]) == ["replay", "naive"] and united["notes"] == []
    assert row["seconds"] == round(a["scenarios"]["digits-mem100"]["seconds"] + b["scenarios"]["digits-mem100"]["seconds"], 1)
    assert united["command"].count("--only") == 2
    # Runs under other settings (here: another seed) are not united; the report says what it left out.
    other = json.loads(json.dumps(b))
    other["scenarios"]["digits-mem100"]["settings"] = "0" * 16
    (tmp_path / "other.json").write_text(json.dumps(other))
    assert main(["--from-results", files[0], str(tmp_path / "other.json"), "--out", str(tmp_path / "ao")]) == 0
    kept = json.loads((tmp_path / "ao" / "results.json").read_text())
    assert set(kept["scenarios"]["digits-mem100"]["methods"]) == {"naive"}
    assert kept["notes"] == ["digits-mem100: replay of an earlier run left out (its settings differ)"]
    # An older row (other settings) replaced by one part, whose sibling part then measures the
    # methods again: nothing is left out, and the notes say nothing.
    older = json.loads(json.dumps(united))
    older["scenarios"]["digits-mem100"]["settings"] = "0" * 16
    (tmp_path / "older.json").write_text(json.dumps(older))
    assert main(["--from-results", str(tmp_path / "older.json"), files[1], files[0], "--out", str(tmp_path / "oba")]) == 0
    again = json.loads((tmp_path / "oba" / "results.json").read_text())
    assert set(again["scenarios"]["digits-mem100"]["methods"]) == {"naive", "replay"} and again["notes"] == []
    capsys.readouterr()
    # A scenario that runs none of the named methods is a one-line error before anything runs.
    assert main([*common, "--only", "der", "--out", str(tmp_path / "c")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["benchmark_continual: error: --only der: scenario digits-mem100 runs none of them (its methods: naive, replay)"]
    assert not (tmp_path / "c" / "results.json").exists()
