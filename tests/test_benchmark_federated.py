"""The federated benchmark's bookkeeping: targets computed from what was measured, README block, errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from simulations.benchmark_federated import (
    README_END,
    README_START,
    SCENARIOS,
    checks,
    main,
    scenario_config,
    scenario_key,
    seed_of,
    summarise,
    table,
)


def _strategy(accuracy: float, upload: int, rounds: int = 1) -> dict:
    return {"final_accuracy": accuracy, "rounds": rounds, "accuracy_per_round": [accuracy] * rounds, "total_upload_bytes": upload,
            "total_download_bytes": 0, "rejected_partitions": [], "failed_clients": 0, "seconds": 1.0}  # fmt: skip


def _scenario(**strategies: dict) -> dict:
    return {"dataset": "fashion-mnist", "num_clients": 10, "alpha": 0.1, "partitioner": "dirichlet", "ipc": 10,
            "label_flip_clients": [], "defence": True, "seconds": 5.0, "peak_memory_mb_process_tree": 900.0,
            "strategies": strategies}  # fmt: skip


def _results() -> dict:
    scenarios = {
        "dirichlet-0.1": _scenario(fedcondense=_strategy(70.0, 1_000), fedavg=_strategy(60.0, 100_000)),
        "dirichlet-0.1-hybrid": _scenario(hybrid=_strategy(66.0, 50_000)),
        "dirichlet-0.5": _scenario(fedcondense=_strategy(80.0, 1_000), fedavg=_strategy(85.0, 100_000)),
        "label-flip-defence-on": _scenario(fedcondense=_strategy(78.0, 1_000)),
        "label-flip-defence-off": _scenario(fedcondense=_strategy(60.0, 1_000)),
    }
    return {"benchmark": "federated", "command": "python -m simulations.benchmark_federated --out X", "date": "2026-11-22",
            "machine": {"cpu": "x", "cores": 2, "torch": "2", "device": "cpu"}, "quick": False, "complete": True,
            "scenarios": scenarios, "skipped": {}, "checks": checks(scenarios), "peak_memory_mb": 900.0}  # fmt: skip


def test_checks_follow_the_measurements() -> None:
    got = _results()["checks"]
    assert got["oneshot_vs_fedavg_alpha_0.1"] == {"seeds": [0], "fedcondense": 70.0, "fedavg": 60.0, "upload_ratio": 0.01, "met": True}
    assert got["hybrid_vs_fedavg_alpha_0.1"] == {"seeds": [0], "rounds": 1, "all_rounds_run": True, "gain_points": 6.0, "met": True}
    assert "corrected_vs_fedavg_alpha_0.1" not in got  # not measured: no check, not a failed one
    assert got["label_flip_cost_with_defence"]["cost_points"] == 2.0 and got["label_flip_cost_with_defence"]["met"]
    assert got["label_flip_cost_with_defence"]["defence_off"] == 60.0
    worse = _results()["scenarios"]
    worse["dirichlet-0.1"]["strategies"]["fedcondense"]["final_accuracy"] = 59.0
    assert not checks(worse)["oneshot_vs_fedavg_alpha_0.1"]["met"]
    assert checks({}) == {}
    # The targets are stated on Fashion-MNIST: the same rows measured on digits check nothing.
    on_digits = {name: row | {"dataset": "digits"} for name, row in _results()["scenarios"].items()}
    assert checks(on_digits) == {}


def test_teacher_labels_are_compared_with_the_hard_one_shot_and_fedavg() -> None:
    scenarios = _results()["scenarios"]
    assert "teacher_labels_alpha_0.1" not in checks(scenarios)  # not measured: no check
    scenarios["dirichlet-0.1-teacher"] = _scenario(fedcondense=_strategy(72.5, 1_400))
    got = checks(scenarios)["teacher_labels_alpha_0.1"]
    assert got == {"seeds": [0], "teacher": 72.5, "hard": 70.0, "fedavg": 60.0, "gain_points": 2.5,
                   "extra_upload_bytes": 400.0, "upload_ratio": 0.014, "met": True}  # fmt: skip
    scenarios["dirichlet-0.1-teacher"]["strategies"]["fedcondense"]["final_accuracy"] = 59.0
    assert checks(scenarios)["teacher_labels_alpha_0.1"]["met"] is False
    by_name = {s.name: s for s in SCENARIOS}
    config = scenario_config(by_name["dirichlet-0.1-teacher"], False, "configs/federated-fashion-mnist.yaml")
    assert config.condense.label_source == "teacher" and config.evaluation.loss == "kd"
    assert config.federated.strategies == ["fedcondense"] and config.federated.alpha == 0.1


def test_a_oneshot_run_again_replaces_the_one_beside_fedavg_in_the_checks() -> None:
    scenarios = _results()["scenarios"]
    scenarios["dirichlet-0.1-teacher"] = _scenario(fedcondense=_strategy(72.5, 1_400))
    scenarios["dirichlet-0.1-oneshot"] = _scenario(fedcondense=_strategy(66.0, 800))
    got = checks(scenarios)
    assert got["oneshot_vs_fedavg_alpha_0.1"] == {"seeds": [0], "fedcondense": 66.0, "fedavg": 60.0, "upload_ratio": 0.008, "met": True}
    assert got["teacher_labels_alpha_0.1"]["hard"] == 66.0 and got["teacher_labels_alpha_0.1"]["extra_upload_bytes"] == 600.0
    assert got["oneshot_vs_fedavg_alpha_0.5"]["fedcondense"] == 80.0  # no oneshot row at 0.5: the one beside FedAvg
    by_name = {s.name: s for s in SCENARIOS}
    config = scenario_config(by_name["dirichlet-0.1-oneshot"], False, "configs/federated-fashion-mnist.yaml")
    assert config.federated.strategies == ["fedcondense"] and config.federated.alpha == 0.1


def test_from_results_updates_only_the_readme_block(tmp_path: Path, capsys) -> None:
    results = tmp_path / "results.json"
    results.write_text(json.dumps(_results()))
    readme = tmp_path / "README.md"
    readme.write_text(f"top\n{README_START}\nold\n{README_END}\nbottom\n")
    assert main(["--from-results", str(results), "--update-readme", str(readme)]) == 0
    text = readme.read_text()
    assert text.startswith("top\n") and text.endswith("bottom\n") and "old" not in text
    assert "| dirichlet-0.1-hybrid | fashion-mnist | 10 | hybrid | 1 | 66.0 |" in text
    assert "python -m simulations.benchmark_federated --out X" in text and "--from-results" not in text
    assert "hybrid_vs_fedavg_alpha_0.1: met" in text
    assert capsys.readouterr().out.strip() == table(_results())


def test_errors_are_one_line(tmp_path: Path, capsys) -> None:
    assert main(["--from-results", str(tmp_path / "missing.json")]) == 2
    assert main(["--out", str(tmp_path), "--scenarios", "dirichlet-9"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "cannot read" in err[0] and "unknown scenario 'dirichlet-9'" in err[1]
    with pytest.raises(SystemExit):
        main([])


def test_scenarios_build_valid_configs() -> None:
    for scenario in SCENARIOS:
        quick = scenario_config(scenario, True, "configs/federated-fashion-mnist.yaml")
        full = scenario_config(scenario, False, "configs/federated-fashion-mnist.yaml", ["seed=3"])
        assert quick.dataset.name == "digits" and full.seed == 3
        assert full.dataset.name == ("digits" if scenario.digits else "fashion-mnist")
    by_name = {s.name: s for s in SCENARIOS}
    assert scenario_config(by_name["clients-100"], False, "x.yaml").federated.num_clients == 100
    scale = scenario_config(by_name["clients-1000"], False, "configs/federated-fashion-mnist.yaml")
    assert scale.federated.num_clients == 1000 and scale.dataset.name == "fashion-mnist" and scale.condense.ipc == 1


def test_seeds_are_keyed_merged_and_averaged() -> None:
    config = scenario_config(SCENARIOS[0], False, "configs/federated-fashion-mnist.yaml", ["seed=2"])
    assert scenario_key("dirichlet-0.1", config) == "dirichlet-0.1@seed2" and seed_of("dirichlet-0.1@seed2") == 2
    assert seed_of("dirichlet-0.1") == 0
    scenarios = {
        "dirichlet-0.1": _scenario(fedcondense=_strategy(70.0, 1_000), fedavg=_strategy(60.0, 100_000, rounds=3)),
        "dirichlet-0.1@seed1": _scenario(fedcondense=_strategy(50.0, 1_000), fedavg=_strategy(64.0, 100_000, rounds=3)),
        "dirichlet-0.1-corrected": _scenario(**{"fedavg-corrected": _strategy(67.0, 120_000, rounds=3)}),
        "dirichlet-0.1-corrected@seed1": _scenario(**{"fedavg-corrected": _strategy(68.0, 120_000, rounds=3)}),
    }
    got = checks(scenarios)
    assert got["oneshot_vs_fedavg_alpha_0.1"]["seeds"] == [0, 1] and got["oneshot_vs_fedavg_alpha_0.1"]["fedcondense"] == 60.0
    assert not got["oneshot_vs_fedavg_alpha_0.1"]["met"]
    corrected = got["corrected_vs_fedavg_alpha_0.1"]
    assert corrected == {"seeds": [0, 1], "rounds": 3, "all_rounds_run": True, "gain_points": 5.5, "met": True}
    # A corrected run stopped early is not a result: the gain at its last round does not meet the target.
    scenarios["dirichlet-0.1-corrected"]["strategies"]["fedavg-corrected"] = _strategy(90.0, 1, rounds=2)
    assert checks(scenarios)["corrected_vs_fedavg_alpha_0.1"]["met"] is False


def test_scale_check_needs_completion_time_and_memory() -> None:
    row = _scenario(fedcondense=_strategy(70.0, 1_000)) | {"complete": True, "seconds": 3000.0, "peak_memory_mb_process_tree": 7000.0}
    assert checks({"clients-1000": row})["clients_1000"]["met"]
    assert not checks({"clients-1000": row | {"seconds": 3700.0}})["clients_1000"]["met"]
    assert not checks({"clients-1000": row | {"peak_memory_mb_process_tree": None}})["clients_1000"]["met"]


def test_summary_reports_what_the_clients_condensation_cost() -> None:
    clients = [{"node_id": 1, "condense-seconds": 12.5, "label-bytes": 528, "time-budget-hit": 1},
               {"node_id": 2, "condense-seconds": 7.0, "label-bytes": 528, "time-budget-hit": 0}]  # fmt: skip
    run = {"rounds": [{"accuracy": 80.0}], "final_accuracy": 80.0, "total_upload_bytes": 10, "total_download_bytes": 0,
           "rejected_clients": [{"round": 1, "node_id": 3, "partition_id": None, "reason": "invalid weights"}],
           "failed_clients": [], "seconds": 3.0, "condense_rounds": {"1": {"accepted": 2, "clients": clients}}}  # fmt: skip
    results = {"dataset": "digits", "num_clients": 3, "ipc": 1, "complete": True, "strategies": {"fedavg-corrected": run},
               "config": {"seed": 1, "condense": {"max_seconds": 60.0},
                          "federated": {"alpha": 0.5, "partitioner": "dirichlet", "defence": True}}}  # fmt: skip
    row = summarise(results, [], 5.0, None, noise_clients=[2])
    assert row["seed"] == 1 and row["client_condense_budget_seconds"] == 60.0 and row["noise_clients"] == [2]
    cost = row["strategies"]["fedavg-corrected"]
    assert cost["client_condense_seconds_max"] == 12.5 and cost["label_bytes"] == 1056 and cost["time_budget_hits"] == 1
    assert cost["rejected_replies"] == 1 and cost["rejected_partitions"] == []


def test_several_runs_merge_into_one_report(tmp_path: Path) -> None:
    first, second = _results(), _results()
    first["scenarios"] = {k: v for k, v in first["scenarios"].items() if k == "dirichlet-0.1"}
    first["command"], first["peak_memory_mb"] = "python -m simulations.benchmark_federated --out A", 500.0
    second["scenarios"].pop("dirichlet-0.1")
    second["skipped"] = {"dirichlet-0.1": "fashion-mnist not found"}
    second["command"] = "python -m simulations.benchmark_federated --out B"
    paths = [tmp_path / "a.json", tmp_path / "b.json"]
    for path, run in zip(paths, (first, second)):
        path.write_text(json.dumps(run))
    readme = tmp_path / "README.md"
    readme.write_text(f"{README_START}\n{README_END}\n")
    assert main(["--from-results", *map(str, paths), "--update-readme", str(readme)]) == 0
    text = readme.read_text()
    assert "--out A" in text and "--out B" in text and "Commands" in text and "skipped" not in text
    assert "| dirichlet-0.1-hybrid | fashion-mnist | 10 | hybrid |" in text and "| label-flip-defence-on |" in text
    assert "hybrid_vs_fedavg_alpha_0.1: met" in text and "label_flip_cost_with_defence: met" in text
    assert "peak RSS 900 MB" in text


def test_a_hybrid_that_ran_fewer_rounds_is_compared_at_its_last_round_and_not_met() -> None:
    fedavg = _strategy(60.0, 100_000) | {"rounds": 4, "accuracy_per_round": [20.0, 40.0, 50.0, 60.0]}
    hybrid = _strategy(48.0, 50_000) | {"rounds": 2, "accuracy_per_round": [45.0, 48.0]}
    got = checks({"dirichlet-0.1": _scenario(fedavg=fedavg), "dirichlet-0.1-hybrid": _scenario(hybrid=hybrid)})
    # The target asks for every round to run: a gain after 2 of FedAvg's 4 rounds is reported, not met.
    assert got["hybrid_vs_fedavg_alpha_0.1"] == {"seeds": [0], "rounds": 2, "all_rounds_run": False, "gain_points": 8.0, "met": False}


def test_a_stopped_scenario_is_rebuilt_from_its_folder() -> None:
    from simulations.benchmark_federated import summarise

    run = {"final_accuracy": 50.0, "rounds": [{"accuracy": 50.0}], "total_upload_bytes": 10, "total_download_bytes": 0,
           "rejected_clients": [{"partition_id": 2}, {"partition_id": None}], "failed_clients": [], "seconds": 3.0}  # fmt: skip
    federate = {"dataset": "digits", "num_clients": 5, "ipc": 10, "strategies": {"fedcondense": run},
                "config": {"federated": {"alpha": 0.1, "partitioner": "dirichlet", "defence": True}}}  # fmt: skip
    row = summarise(federate, [], 3.0, None)
    assert row["peak_memory_mb_process_tree"] is None and row["alpha"] == 0.1
    assert row["strategies"]["fedcondense"]["rejected_partitions"] == [2]
    assert "| - |" in table({"scenarios": {"x": row}})
