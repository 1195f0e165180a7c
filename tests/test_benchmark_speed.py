"""The speed benchmark: its reference loops do the work they claim, and its reporting is complete."""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import torch

from simulations import benchmark_speed
from simulations.benchmark_speed import (
    QUICK,
    README_END,
    README_START,
    amortised_per_iteration,
    checks,
    class_indices,
    main,
    merge_results,
    reference_condense,
    reference_dm_loss,
    reference_train_and_test,
    table,
    update_readme,
)
from simulations.speed_time_to_accuracy import summarise as time_summary
from simulations.speed_tuning import QUICK_TUNING_SETS, TUNING_SETS, spearman, summarise

CPU = torch.device("cpu")
CONDENSE_KEYS = {
    "reference_s_per_it", "engine_no_pool_s_per_it", "engine_pool_s_per_it", "engine_pool_amortised_s_per_it",
    "pool_seconds", "pool_networks", "speedup_no_pool", "speedup_pool", "speedup_pool_amortised", "iterations",
}  # fmt: skip
EVALUATION_KEYS = {
    "reference_per_image_dsa_s_per_network", "reference_vectorised_dsa_s_per_network", "engine_s_per_network",
    "speedup_vs_per_image", "speedup_vs_vectorised", "reference_accuracies", "engine_accuracies", "epochs", "runs",
}  # fmt: skip


@contextmanager
def single_thread() -> Iterator[None]:
    """The reference loops run many tiny ops: with two threads on a machine another process keeps
    busy, OpenMP's oversubscribed threads make them ~20x slower. These tests check work, not speed."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One ``--quick`` run on digits, shared by the tests that read its output."""
    out = tmp_path_factory.mktemp("benchmark-speed")
    with single_thread():
        assert main(["--quick", "--dataset", "digits", "--out", str(out)]) == 0
    return out / "results.json"


@single_thread()
def test_reference_condense_lowers_the_dm_loss(digits) -> None:
    settings = dataclasses.replace(QUICK, batch_real=64)
    result = reference_condense(digits.train, settings, 10, device=CPU)
    assert math.isfinite(result.seconds_per_iteration) and result.seconds_per_iteration > 0
    assert len(result.losses) == settings.warmup_iterations + 10
    assert not torch.equal(result.images, result.initial_images)
    # The same held-out draws (networks, real batches, DSA) before and after: a paired comparison.
    per_class = class_indices(digits.train)
    slices = [slice(10 * k, 10 * (k + 1)) for k in range(10)]
    with torch.no_grad():
        before = [float(reference_dm_loss(result.initial_images, slices, digits.train.images, per_class, settings, s))
                  for s in (101, 202, 303)]  # fmt: skip
        after = [float(reference_dm_loss(result.images, slices, digits.train.images, per_class, settings, s))
                 for s in (101, 202, 303)]  # fmt: skip
    assert sum(after) < sum(before)


@pytest.mark.parametrize("per_image_dsa", [True, False])
@single_thread()
def test_reference_evaluation_returns_an_accuracy(digits, per_image_dsa: bool) -> None:
    settings = dataclasses.replace(QUICK, eval_epochs=15, eval_batch=25)  # 60 SGD steps
    images, labels = digits.train.images[:100], digits.train.labels[:100]
    accuracy = reference_train_and_test(
        images, labels, digits.test, settings, seed=0, per_image_dsa=per_image_dsa, device=CPU
    )
    assert accuracy > 25.0  # the reference loop learns (chance is 10 %; it reaches about 37 %)


def test_quick_run_writes_every_measurement(quick_run: Path) -> None:
    results = json.loads(quick_run.read_text())
    assert {"date", "machine", "dataset", "settings", "condense", "evaluation", "peak_memory_mb"} <= set(results)
    assert results["complete"] and results["dataset"] == "digits"
    assert set(results["machine"]) >= {"cpu", "cores", "torch_threads", "torch", "device"}
    c, e = results["condense"], results["evaluation"]
    assert CONDENSE_KEYS <= set(c) and EVALUATION_KEYS <= set(e)
    # Every measurement was taken, the pool's included: nothing is left at None.
    assert all(c[k] is not None for k in CONDENSE_KEYS), c
    assert all(e[k] is not None for k in EVALUATION_KEYS), e
    assert c["iterations"] == QUICK.iterations and c["pool_networks"] == QUICK.pool_networks
    assert c["speedup_no_pool"] == pytest.approx(c["reference_s_per_it"] / c["engine_no_pool_s_per_it"], rel=0.01)
    assert len(e["reference_accuracies"]) == len(e["engine_accuracies"]) == QUICK.eval_runs
    # Test-set accuracies in percent: whole numbers of digits' 450 test images.
    assert all(abs(a * 450 / 100 - round(a * 450 / 100)) < 1e-3 for a in e["reference_accuracies"] + e["engine_accuracies"])
    assert results["peak_memory_mb"] > 0
    # --quick skips the compiled rows (a minute of compiling measures nothing on digits).
    assert e["engine_compiled_s_per_network"] is None and c["engine_compiled_no_pool_s_per_it"] is None
    assert e["gflops"]["engine"] > 0 and results["peak_gflops"]["value"] > 0 and 0 < e["share_of_peak"]
    assert set(c["row_peak_memory_mb"]) == {"reference", "engine_no_pool", "engine_pool"}
    tuning = results["tuning"]
    assert [row["name"] for row in tuning["sets"]] == [s.name for s in QUICK_TUNING_SETS]
    assert all(row["full"]["accuracies"] and len(row["quick"]["accuracies"]) == 1 for row in tuning["sets"])
    assert tuning["protocols"]["quick"] == {"runs": 1, "epochs": 100}
    assert len(results["time_to_accuracy"]["runs"]) == len(QUICK.time_to_accuracy_seeds)
    assert set(results["checks"]) == {"evaluation_speedup", "condense_speedup_exact", "tuning_spearman_rho",
                                      "tuning_time_share", "time_to_dm_accuracy", "row_peak_memory"}
    assert all(isinstance(check["met"], bool) for check in results["checks"].values())


def test_spearman_ranks_and_the_tuning_checks() -> None:
    assert spearman([1, 2, 3, 4], [10, 20, 30, 45]) == 1.0
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == -1.0
    assert spearman([1, 2], [1, 2]) is None and spearman([1, 1, 1], [1, 2, 3]) is None

    def row(i: int, quick: float) -> dict[str, Any]:
        return {"name": f"set {i}", "full": {"accuracy_mean": float(i), "seconds": 10.0},
                "quick": {"accuracy_mean": quick, "seconds": 1.5}}  # fmt: skip

    ten = summarise([row(i, float(i)) for i in range(10)])
    assert ten["spearman_rho"] == 1.0 and ten["time_share"] == 0.15
    assert ten["checks"]["spearman_rho"]["met"] and ten["checks"]["time_share"]["met"]
    assert not summarise([row(i, float(i)) for i in range(9)])["checks"]["spearman_rho"]["met"]  # fewer than 10 sets
    swapped = summarise([row(i, float(9 - i if i in (0, 9) else i)) for i in range(10)])
    assert swapped["spearman_rho"] < 0.9 and not swapped["checks"]["spearman_rho"]["met"]


def test_checks_follow_the_figures() -> None:
    out = checks(_results())
    assert out["evaluation_speedup"]["met"] and out["evaluation_speedup"]["value"] == 3.0
    assert not out["condense_speedup_exact"]["met"] and out["condense_speedup_exact"]["value"] == 2.0
    compiled = _results()
    compiled["condense"]["speedup_compiled_no_pool"] = 4.5
    assert checks(compiled)["condense_speedup_exact"] == {**out["condense_speedup_exact"], "value": 4.5, "met": True}


def test_time_to_accuracy_needs_both_the_accuracy_and_the_budget() -> None:
    def run(seconds: float, accuracies: list[float]) -> dict[str, Any]:
        return {"condense_seconds": seconds, "accuracies": accuracies, "accuracy_mean": sum(accuracies) / 3}

    assert time_summary([run(170, [83.6, 83.5, 83.7])] * 3)["check"]["met"]
    assert not time_summary([run(190, [83.6, 83.5, 83.7])] * 3)["check"]["met"]
    assert not time_summary([run(100, [83.4, 83.5, 83.5])] * 3)["check"]["met"]
    # A row with fewer seeds than planned is not a result, whatever it measured.
    short = time_summary([run(170, [83.6, 83.5, 83.7])], planned=3)["check"]
    assert not short["met"] and not short["complete"] and short["value"]["seeds"] == 1


def test_from_results_merges_parts_and_pools_tuning_sets(tmp_path: Path, capsys) -> None:
    def tuning_run(names: list[str], command: str) -> dict[str, Any]:
        results = {k: v for k, v in _results().items() if k not in ("condense", "evaluation")}
        sets = [{"name": n, "full": {"accuracy_mean": 50.0 + i, "seconds": 10.0, "accuracy_std": 0.0},
                 "quick": {"accuracy_mean": 40.0 + i, "seconds": 1.0}} for i, n in enumerate(names)]  # fmt: skip
        part = {"protocols": {"full": {"runs": 3, "epochs": 300}, "quick": {"runs": 1, "epochs": 100}}, "sets": sets}
        return {**results, "parts": ["tuning"], "tuning": part, "command": command}

    names = [s.name for s in TUNING_SETS]
    paths = []
    for i, run in enumerate((_results(), tuning_run(names[0::2], "shard 0"), tuning_run(names[1::2], "shard 1"))):
        paths.append(tmp_path / f"{i}.json")
        paths[-1].write_text(json.dumps({"command": f"run {i}", **run} if i == 0 else run))
    out = tmp_path / "merged"
    assert main(["--from-results", *map(str, paths), "--out", str(out)]) == 0
    merged = json.loads((out / "results.json").read_text())
    assert merged == json.loads(json.dumps(merge_results([json.loads(p.read_text()) for p in paths])))
    assert [r["name"] for r in merged["tuning"]["sets"]] == names  # the benchmark's order, both shards
    assert merged["condense"] == _results()["condense"] and merged["tuning"]["sets_measured"] == len(names)
    assert "tuning_spearman_rho" in merged["checks"] and merged["command"].splitlines() == ["run 0", "shard 0", "shard 1"]
    assert "Spearman's rho over 12 sets" in capsys.readouterr().out


@pytest.mark.parametrize("argv", [["--parts", "speed", "--out", "x"], ["--tuning-shard", "2/2", "--out", "x"],
                                  ["--tuning-shard", "a/b", "--out", "x"]])  # fmt: skip
def test_bad_parts_and_shards_are_argparse_errors(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2


def test_amortised_cost_spreads_the_pool_over_a_run() -> None:
    # 600 s budget, 60 s pool, 1 s/it: 540 iterations share the pool's 60 s.
    assert amortised_per_iteration(1.0, 60.0, 600.0) == pytest.approx(1.0 + 60.0 / 540)
    assert amortised_per_iteration(1.0, 0.0, 600.0) == 1.0
    # A pool that eats the whole budget is charged to a single iteration.
    assert amortised_per_iteration(1.0, 900.0, 600.0) == pytest.approx(901.0)


def _results() -> dict[str, Any]:
    return {
        "benchmark": "speed",
        "date": "2026-01-01",
        "machine": {"cores": 2, "cpu": "x86_64", "torch": "2.x", "device": "cpu", "torch_threads": 2},
        "dataset": "digits",
        "settings": dataclasses.asdict(QUICK),
        "complete": True,
        "peak_memory_mb": 900.0,
        "condense": {
            "iterations": 2, "pool_networks": 4, "reference_s_per_it": 1.0, "engine_no_pool_s_per_it": 0.5,
            "engine_pool_s_per_it": 0.1, "engine_pool_amortised_s_per_it": 0.2, "pool_seconds": 3.0,
            "speedup_no_pool": 2.0, "speedup_pool": 10.0, "speedup_pool_amortised": 5.0,
        },
        "evaluation": {
            "epochs": 2, "runs": 1, "reference_per_image_dsa_s_per_network": 3.0,
            "reference_vectorised_dsa_s_per_network": 1.5, "engine_s_per_network": 1.0, "speedup_vs_per_image": 3.0,
            "speedup_vs_vectorised": 1.5, "reference_accuracies": [90.0], "engine_accuracies": [91.0],
        },
    }  # fmt: skip


def test_table_reports_every_ratio() -> None:
    text = table(_results())
    for cell in ("2.00×", "10.00×", "5.00×", "3.00×", "1.50×", "90.0 ± 0.0", "91.0 ± 0.0", "pool of 4 networks"):
        assert cell in text, cell
    # A run stopped before the pool and the evaluation still renders what it has.
    partial = _results()
    partial["condense"].update(engine_pool_s_per_it=None, speedup_pool=None)
    partial["evaluation"] = None
    assert "pool" not in table(partial) and "evaluation" not in table(partial)


def test_update_readme_replaces_only_the_marked_block(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    other = "<!-- benchmark-condense:start -->\nkeep me\n<!-- benchmark-condense:end -->\n"
    readme.write_text(f"# title\n\n{other}\n{README_START}\nold\n{README_END}\n\n## after\n")
    update_readme(readme, _results(), "python -m simulations.benchmark_speed --quick")
    text = readme.read_text()
    assert text.startswith(f"# title\n\n{other}\n{README_START}\n") and text.endswith(f"{README_END}\n\n## after\n")
    assert "old" not in text and "10.00×" in text and "python -m simulations.benchmark_speed --quick" in text


def test_from_results_renders_and_updates_the_readme(quick_run: Path, tmp_path: Path, capsys) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{README_START}\n{README_END}\n")
    assert main(["--from-results", str(quick_run), "--update-readme", str(readme)]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("| measurement | reference | engine | speed-up |")
    text = readme.read_text()
    assert printed.strip() in text
    # The README names the run that measured the figures, not the reprint.
    assert json.loads(quick_run.read_text())["command"].startswith("python -m simulations.benchmark_speed --quick")
    assert "--quick --dataset digits --out" in text and "--from-results" not in text


def test_errors_are_one_line(tmp_path: Path, capsys) -> None:
    missing = tmp_path / "nope.json"
    assert main(["--from-results", str(missing)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("benchmark_speed: error: cannot read") and err.count("\n") == 1
    readme = tmp_path / "README.md"
    readme.write_text("no markers\n")
    (tmp_path / "results.json").write_text(json.dumps(_results()))
    assert main(["--from-results", str(tmp_path / "results.json"), "--update-readme", str(readme)]) == 2
    assert "markers" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["--dataset", "cifar10", "--out", "x"], ["--pool-networks", "-1", "--out", "x"], []])
def test_bad_arguments_are_argparse_errors(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2


def test_an_unavailable_dataset_is_skipped_and_the_readme_kept(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setattr(benchmark_speed, "dataset_availability", lambda cfg: (False, "not on this machine"))
    readme = tmp_path / "README.md"
    readme.write_text(f"{README_START}\nold\n{README_END}\n")
    assert main(["--quick", "--out", str(tmp_path / "out"), "--update-readme", str(readme)]) == 0
    assert "skipping digits: not on this machine" in capsys.readouterr().err
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert results["skipped"] == {"digits": "not on this machine"} and results["condense"] is None
    assert "old" in readme.read_text()


def test_from_results_refuses_a_foreign_or_broken_file(tmp_path: Path, capsys) -> None:
    foreign, broken = tmp_path / "quality.json", tmp_path / "broken.json"
    foreign.write_text(json.dumps({"benchmark": "quality"}))
    broken.write_text("{not json")
    assert benchmark_speed.main(["--from-results", str(foreign)]) == 2
    assert benchmark_speed.main(["--from-results", str(broken)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0].endswith("quality.json is not a results.json of benchmark_speed")
    assert "broken.json is not a results.json file:" in err[1] and len(err) == 2
