"""The labels benchmark: a --quick run writes complete results; its checks, merge and README block
say only what was measured."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from simulations.benchmark_labels import (
    COLUMNS,
    README_END,
    README_START,
    TARGET_SEEDS,
    checks,
    main,
    merge,
    summarise,
    update_readme,
)


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("labels")
    assert main(["--quick", "--ipcs", "1,10", "--seeds", "0", "--out", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    results["_out"] = str(out)
    return results


def test_a_quick_run_measures_every_column_of_every_row_and_keeps_the_sets(quick_run) -> None:
    results = quick_run
    assert results["benchmark"] == "labels" and results["complete"] and results["quick"]
    assert results["planned"] == [[1, 0], [10, 0]] and [(r["ipc"], r["seed"]) for r in results["rows"]] == [(1, 0), (10, 0)]
    for row in results["rows"]:
        assert set(row["evaluations"]) == set(COLUMNS)
        assert row["evaluations"]["hard"]["loss"] == "ce" and row["evaluations"]["teacher"]["loss"] == "kd"
        assert row["evaluations"]["teacher"]["labels"] == "stored"
        assert row["labels"]["source"] == "teacher" and row["teacher"]["steps"] == 5
        assert row["teacher"]["test_accuracy"] is not None
        # The row's time holds the condensation, the teacher's training and the labelling.
        assert row["row_seconds"] >= row["condense_seconds"] + row["teacher_seconds"] - 0.01
        for column in COLUMNS:
            assert (Path(results["_out"]) / "sets" / f"ipc{row['ipc']}-{column}-seed0.pt").is_file()
    # A quick run on digits is never a result.
    assert not any(check["met"] or check["complete"] for check in results["checks"].values())


def _fake_rows(accuracies: dict[str, list[float]], seconds: float = 800.0) -> list[dict[str, Any]]:
    rows = []
    for seed in range(len(accuracies["teacher"])):
        evaluations = {c: {"accuracy_mean": accuracies[c][seed]} for c in COLUMNS}
        rows.append({
            "ipc": 10, "seed": seed, "evaluations": evaluations, "row_seconds": seconds, "teacher_seconds": 200.0,
            "teacher": {"test_accuracy": 90.0}, "images_per_class": 40, "protocol": "full", "peak_memory_mb": 1000.0,
        })  # fmt: skip
    return rows


def test_targets_need_three_full_seeds_and_are_judged_on_the_means() -> None:
    accuracies = {"hard": [83.0, 83.2, 82.8], "teacher": [89.5, 89.0, 88.9], "random_teacher": [85.0, 86.0, 85.5]}
    results = {"dataset": "fashion-mnist", "quick": False, "rows": _fake_rows(accuracies)}
    checked = checks(results)
    assert checked["fashion-mnist_ipc10_teacher_kd"]["value"] == pytest.approx(89.13, abs=0.01)
    assert checked["fashion-mnist_ipc10_teacher_kd"]["met"]
    assert checked["fashion-mnist_ipc10_over_random_real"]["value"] == pytest.approx(89.13 - 85.5, abs=0.02)
    assert checked["fashion-mnist_ipc10_over_random_real"]["met"] and checked["row_seconds"]["met"]
    assert summarise(results["rows"])[0]["hard"]["accuracy_mean"] == 83.0
    two = {**results, "rows": results["rows"][:2]}
    assert not any(c["met"] for c in checks(two).values()) and checks(two)["fashion-mnist_ipc10_teacher_kd"]["seeds"] == 2
    slow = {**results, "rows": _fake_rows(accuracies, seconds=901.0)}
    assert not checks(slow)["row_seconds"]["met"]
    quick_protocol = copy.deepcopy(results)
    quick_protocol["rows"][0]["protocol"] = "quick"
    assert not any(c["met"] for c in checks(quick_protocol).values())
    assert TARGET_SEEDS == 3


def test_merging_runs_unites_rows_and_completes_a_stopped_run(quick_run) -> None:
    stopped = copy.deepcopy(quick_run)
    stopped["complete"] = False
    stopped["rows"] = stopped["rows"][:1]
    later = copy.deepcopy(quick_run)
    later["rows"] = later["rows"][1:]
    later["planned"] = [[10, 0]]
    merged = merge([stopped, later])
    assert [(r["ipc"], r["seed"]) for r in merged["rows"]] == [(1, 0), (10, 0)] and merged["complete"]
    assert not merge([stopped])["complete"]
    other = copy.deepcopy(quick_run)
    other["label_overrides"] = ["condense.labels=teacher"]
    with pytest.raises(Exception, match="different label settings"):
        merge([quick_run, other])


def test_the_readme_block_is_replaced_and_nothing_else(quick_run, tmp_path: Path) -> None:
    page = tmp_path / "benchmarks.md"
    page.write_text(f"before\n{README_START}\nold\n{README_END}\nafter\n")
    update_readme(page, quick_run, quick_run["command"])
    text = page.read_text()
    assert text.startswith("before\n") and text.endswith("after\n") and "old" not in text
    assert "random real + teacher (KD)" in text and "A --quick run" in text
