"""The condensation benchmark's reporting: its table lands between the README markers."""

from __future__ import annotations

import pytest
import torch

from fedcond.errors import FedcondError
from simulations.benchmark_condense import README_END, README_START, table, update_readme

RESULTS = {
    "date": "2026-01-01",
    "machine": {"cores": 2, "cpu": "x86_64", "torch": "2.x", "device": "cpu"},
    "seeds": [0, 1, 2],
    "peak_memory_mb": 812.0,
    "skipped": {"fashion-mnist": "not installed"},
    "rows": [
        {"dataset": "digits", "ipc": 1, "method": "mmd-linear", "discrepancy": "mmd-linear", "real_target": "fresh",
         "init": "real", "iterations": 300, "accuracy_mean": 83.11, "accuracy_std": 0.67, "condense_seconds_mean": 54.2},
        {"dataset": "digits", "ipc": 1, "method": "random", "iterations": 0, "accuracy_mean": 62.0,
         "accuracy_std": 2.2, "condense_seconds_mean": 0.0},
    ],
}  # fmt: skip


def test_table_rows() -> None:
    lines = table(RESULTS).splitlines()
    assert lines[2] == "| digits | 1 | mmd-linear | mmd-linear, fresh target, real init | 300 | 83.1 ± 0.7 | 54.2 |"
    assert lines[3] == "| digits | 1 | random | - | - | 62.0 ± 2.2 | 0.0 |"


def test_update_readme_replaces_only_the_marked_block(tmp_path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(f"# title\n\n{README_START}\nold\n{README_END}\n\n## after\n")
    update_readme(readme, RESULTS, "python -m simulations.benchmark_condense")
    text = readme.read_text()
    assert text.startswith("# title\n") and text.endswith("\n## after\n")
    assert "old" not in text and "83.1 ± 0.7" in text and "fashion-mnist skipped: not installed" in text
    assert "python -m simulations.benchmark_condense" in text


def test_update_readme_needs_markers(tmp_path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text("# no markers\n")
    with pytest.raises(FedcondError, match="markers"):
        update_readme(readme, RESULTS, "cmd")


def test_from_results_of_a_missing_or_foreign_file_is_one_line(tmp_path, capsys) -> None:
    from simulations.benchmark_condense import main

    out = tmp_path / "never-made"
    assert main(["--from-results", str(tmp_path / "missing.json"), "--out", str(out)]) == 2
    assert "cannot read" in capsys.readouterr().err
    foreign = tmp_path / "results.json"
    foreign.write_text('{"strategies": {}}')
    assert main(["--from-results", str(foreign), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "no 'rows'" in err
    assert not out.exists()  # reprinting never creates the output folder


def test_a_row_is_what_its_recorded_command_gives(tmp_path) -> None:
    """The figure a row reports for a seed is what a user gets from the command it records.

    A row measured through another path than the CLI (other overrides, other defaults, state
    left by earlier rows) would differ here; the machine and the commit it ran on are recorded
    beside it, since a set can also differ from one CPU to another.
    """
    import json
    import shlex

    from fedcond.apps.cli import main as cli_main
    from simulations.benchmark_condense import METHODS, run

    fedcond_row, dm_row = METHODS[0], METHODS[1]
    results = run([1], True, False, {"digits"}, lambda r: None, methods=[dm_row, fedcond_row])
    assert results["code"]["commit"] is None or len(results["code"]["commit"]) == 40
    for row in results["rows"][:2]:  # ipc 1: the DM row first, so the fedcond row runs after another method
        seed = row["seeds"][0]
        argv = shlex.split(seed["command"])
        assert argv[:2] == ["fedcond", "condense"] and "--set=seed=1" in argv
        out = tmp_path / row["method"]
        assert cli_main([*argv[1:], "--out", str(out)]) == 0
        reproduced = json.loads((out / "results.json").read_text())
        assert reproduced["evaluation"]["accuracies"] == seed["accuracies"], row["method"]


def _row(ipc: int, method: str, accuracy: float, seeds: int = 3) -> dict:
    return {"dataset": "digits", "ipc": ipc, "method": method, "accuracy_mean": accuracy, "seeds": [{}] * seeds}


def test_checks_compare_the_shipped_recipe_with_each_baseline() -> None:
    from simulations.benchmark_condense import checks

    rows = [_row(10, "fedcond", 96.0), _row(10, "random", 92.5), _row(10, "herding", 95.0),
            _row(1, "fedcond", 88.0), _row(1, "herding", 84.5)]  # fmt: skip
    result = checks({"rows": rows})
    assert result["digits_ipc10_vs_random"]["met"] and result["digits_ipc10_vs_random"]["value"] == 3.5
    assert not result["digits_ipc10_vs_herding"]["met"]  # +1.0 < +1.5
    assert result["digits_ipc1_vs_herding"]["met"] and result["digits_ipc10_not_below_herding"]["met"]


def test_checks_with_fewer_seeds_or_a_missing_row_are_never_met() -> None:
    from simulations.benchmark_condense import checks

    result = checks({"rows": [_row(1, "fedcond", 99.0, seeds=1), _row(1, "herding", 50.0)]})
    assert result["digits_ipc1_vs_herding"] == {
        "target": "fedcond - herding >= +3.0 points at ipc 1", "value": 49.0, "seeds": 1, "complete": False, "met": False,
    }  # fmt: skip
    assert result["digits_ipc10_vs_random"]["value"] is None and not result["digits_ipc10_vs_random"]["met"]


def test_rounding_sensitivity_perturbs_a_copy_and_measures_every_draw(digits, tmp_path) -> None:
    from simulations.rounding_sensitivity import RECIPES, main, perturbed, run, table

    before = digits.train.images.clone()
    moved = perturbed(digits.train, 1e-6, seed=1)
    assert torch.equal(digits.train.images, before)  # the loaded split is never touched
    assert 0 < (moved.images - before).abs().max().item() < 1e-5
    results = run(1, 1, 1e-6, True, lambda r: None, recipes=[RECIPES[1]])
    (row,) = results["recipes"]
    assert len(row["accuracy_perturbed"]) == 1 and row["range"] >= 0 and results["code"]
    assert "| mmd-linear, fresh networks, real init |" in table(results)
    foreign = tmp_path / "results.json"
    foreign.write_text('{"rows": []}')
    assert main(["--from-results", str(foreign)]) == 2
    assert main(["--copies", "0"]) == 2


def test_unknown_method_rows_are_a_one_line_error(tmp_path, capsys) -> None:
    from simulations.benchmark_condense import main

    assert main(["--methods", "fedcond,dm", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "unknown dm" in err and "mmd-linear" in err
