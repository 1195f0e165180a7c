"""The quality benchmark: a --quick run writes complete results, and its tables and README block
are exactly what they claim to be."""

from __future__ import annotations

import copy
import json
import statistics
from pathlib import Path
from typing import Any

import pytest
import torch

import simulations.benchmark_quality as bq
from fedcond.errors import FedcondError
from simulations.benchmark_quality import (
    PUBLISHED,
    PUBLISHED_CAPTION,
    README_END,
    README_START,
    load_config,
    main,
    published_table,
    table,
    update_readme,
)

RESULT_KEYS = {
    "benchmark", "date", "machine", "code", "dataset", "command", "seeds", "quick", "complete", "rows", "summary",
    "ablation_rows", "ablation", "checks", "published", "peak_memory_mb", "total_seconds", "skipped", "planned",
}  # fmt: skip
ROW_KEYS = {
    "ipc", "method", "description", "seed", "accuracies", "accuracy_mean", "accuracy_std", "condense_seconds",
    "pool_seconds", "iterations", "factor", "images_per_class", "evaluate_seconds", "eval_runs", "eval_epochs",
    "peak_memory_mb", "set", "cross",
}  # fmt: skip
CONFIG = """\
seed: 0
device: cpu
dataset:
  name: digits
condense:
  method: matching
  feature_map: random-embedding
  discrepancy: mmd-gaussian
  ipc: {ipc}
  iterations: 100
  batch_real: 64
  pool_networks: 4
evaluation:
  runs: 3
  epochs: 300
"""


def write_configs(folder: Path, ipcs: dict[int, int]) -> Path:
    """``fashion-mnist-ipc{name}.yaml`` files on digits; ``ipcs`` maps the ipc in the file
    name to the ipc written inside."""
    folder.mkdir(parents=True, exist_ok=True)
    for named, inside in ipcs.items():
        (folder / f"fashion-mnist-ipc{named}.yaml").write_text(CONFIG.format(ipc=inside))
    return folder


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], str]:
    """One ``--quick`` run at ipc 1 and 2, shared by the tests that read it."""
    root = tmp_path_factory.mktemp("benchmark-quality")
    configs = write_configs(root / "configs", {1: 1, 2: 2})
    out = root / "out"
    # One thread: on two cores another process keeps busy, oversubscribed OpenMP threads make the
    # many tiny ops of a --quick run several times slower. This checks the script, not its speed.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        args = ["--quick", "--ipcs", "1,2", "--seeds", "0", "--config-dir", str(configs), "--out", str(out)]
        assert main([*args, "--cross-models", "mlp", "--cross-runs", "1"]) == 0
    finally:
        torch.set_num_threads(threads)
    return json.loads((out / "results.json").read_text()), str(out)


def test_quick_run_writes_every_row(quick_run: tuple[dict[str, Any], str]) -> None:
    results, out = quick_run
    assert set(results) == RESULT_KEYS
    assert results["benchmark"] == "quality" and results["quick"] is True and results["complete"] is True
    assert results["dataset"] == "digits" and results["seeds"] == [0] and results["skipped"] == {}
    assert results["planned"] == [[r["ipc"], r["method"], None, 0] for r in results["rows"]]
    assert results["published"] == PUBLISHED
    rows = results["rows"]
    assert [(r["ipc"], r["method"]) for r in rows] == [
        (1, "fedcond"), (1, "random"), (1, "herding"), (2, "fedcond"), (2, "random"), (2, "herding"),
    ]  # fmt: skip
    for row in rows:
        assert set(row) == ROW_KEYS
        assert row["images_per_class"] == row["ipc"] and row["factor"] == 1
        assert len(row["accuracies"]) == row["eval_runs"] == 1 and row["eval_epochs"] == 2
        assert row["accuracy_mean"] == pytest.approx(statistics.fmean(row["accuracies"]), abs=0.01)
        assert (row["condense_seconds"] > 0) if row["method"] == "fedcond" else (row["condense_seconds"] >= 0)
        assert row["iterations"] == (2 if row["method"] == "fedcond" else 0)
        assert (Path(out) / "sets" / row["set"]).is_file()  # kept for later cross-architecture runs
        assert set(row["cross"]) == {"mlp"} and len(row["cross"]["mlp"]["accuracies"]) == 1
    assert rows[0]["description"] == "mmd-gaussian, pool 2, factor 1"
    assert [(s["ipc"], s["method"]) for s in results["summary"]] == [(r["ipc"], r["method"]) for r in rows]


def test_quick_run_prints_both_tables(quick_run: tuple[dict[str, Any], str], capsys: pytest.CaptureFixture) -> None:
    results, out = quick_run
    assert main(["--from-results", str(Path(out) / "results.json")]) == 0
    printed = capsys.readouterr().out
    assert "| 2 | fedcond (mmd-gaussian, pool 2, factor 1) | 2 |" in printed
    assert "| 2 | n/a | n/a | n/a | n/a | n/a | n/a | n/a | n/a | n/a |" in printed  # ipc 2 has no published numbers


def hand_results(seeds: list[int] | None = None) -> dict[str, Any]:
    """A results dict written by hand: ipc 10, the own method and random, one seed."""

    def row(method: str, description: str, seed: int, accs: list[float], iterations: int) -> dict[str, Any]:
        mean = sum(accs) / len(accs)
        return {
            "ipc": 10, "method": method, "description": description, "seed": seed, "accuracies": accs,
            "accuracy_mean": mean, "accuracy_std": 0.5, "condense_seconds": 120.04, "pool_seconds": 3.0,
            "iterations": iterations, "factor": 2, "images_per_class": 40, "evaluate_seconds": 99.0,
            "eval_runs": 3, "eval_epochs": 300, "peak_memory_mb": 900.0,
        }  # fmt: skip

    return {
        "benchmark": "quality",
        "date": "2026-01-02",
        "machine": {"cpu": "x86_64", "cores": 2, "torch": "2.14.1", "device": "cpu"},
        "dataset": "fashion-mnist",
        "seeds": seeds or [0],
        "quick": False,
        "complete": True,
        "rows": [
            row("fedcond", "mmd-gaussian, pool 32, factor 2", 0, [84.0, 85.0, 86.0], 200),
            row("random", "random", 0, [70.0, 71.0, 72.0], 0),
        ],
        "published": PUBLISHED,
        "peak_memory_mb": 1234.4,
        "total_seconds": 10.0,
        "skipped": {},
    }


def test_table_lines() -> None:
    results = hand_results()
    assert table(results).splitlines() == [
        "| ipc | method | images/class trained | accuracy % (3 nets) | condense s | iterations |",
        "|---|---|---|---|---|---|",
        "| 10 | fedcond (mmd-gaussian, pool 32, factor 2) | 40 | 85.0 ± 0.5 | 120.0 | 200 |",
        "| 10 | random | 40 | 71.0 ± 0.5 | 120.0 | - |",
    ]
    assert published_table(results).splitlines() == [
        "| ipc | random | herding | DC | DSA | DM | M3D | IDC | DREAM | DANCE | fedcond (measured) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
        "| 1 | 51.4 ± 3.8 | 67.0 ± 1.9 | 70.5 ± 0.6 | 70.6 ± 0.6 | 70.7 ± 0.6 | n/a | 81.0 | 81.3 | 81.5 | - |",
        "| 10 | 73.8 ± 0.7 | 71.1 ± 0.7 | 82.3 ± 0.4 | 84.6 ± 0.3 | 83.5 ± 0.3 | n/a | 86.0 | 86.4 | 86.3 | 85.0 ± 0.5 |",
        "| 50 | 82.5 ± 0.7 | 71.9 ± 0.8 | 83.6 ± 0.4 | 88.7 ± 0.2 | 88.1 ± 0.6 | n/a | 86.2 | 86.8 | 86.9 | - |",
        "",
        f"Whole training set (published): 93.5 ± 0.1. {PUBLISHED_CAPTION}",
    ]


def test_table_over_several_seeds_reports_the_spread_of_seed_means() -> None:
    results = hand_results(seeds=[0, 1])
    second = copy.deepcopy(results["rows"][0])
    second.update(seed=1, accuracies=[86.0, 87.0, 88.0], accuracy_mean=87.0)
    results["rows"].insert(1, second)
    lines = table(results).splitlines()
    assert lines[0].startswith("| ipc | method | images/class trained | accuracy % (3 nets, std over 2 seeds) |")
    assert lines[2] == "| 10 | fedcond (mmd-gaussian, pool 32, factor 2) | 40 | 86.0 ± 1.0 | 120.0 | 200 |"
    assert published_table(results).splitlines()[3].endswith("| 86.3 | 86.0 ± 1.0 |")


def test_update_readme_replaces_only_the_marked_block(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    before, after = "# Title\n\nintro\n\n", "\n\n## Next\n\n<!-- benchmark-condense:start -->\nkeep\n"
    readme.write_text(f"{before}{README_START}\nold table\n{README_END}{after}")
    update_readme(readme, hand_results(), "python -m simulations.benchmark_quality --out x")
    text = readme.read_text()
    assert text.startswith(before + README_START + "\n") and text.endswith(README_END + after)
    block = text[len(before) : -len(after)]
    assert "old table" not in block
    assert block.splitlines()[1] == (
        "Measured 2026-01-02 on 2 cores (x86_64, torch 2.14.1, cpu), seeds 0; peak RSS 1234 MB. Command:"
    )
    assert "```\npython -m simulations.benchmark_quality --out x\n```" in block
    assert table(hand_results()) in block and published_table(hand_results()) in block


def test_update_readme_needs_both_markers(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(f"# Title\n{README_START}\nno end marker\n")
    with pytest.raises(FedcondError, match="markers"):
        update_readme(readme, hand_results(), "cmd")
    assert readme.read_text() == f"# Title\n{README_START}\nno end marker\n"


def test_ipc_must_match_the_file_name(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    configs = write_configs(tmp_path / "configs", {1: 1, 2: 5})
    with pytest.raises(FedcondError, match="condense.ipc=5 but its name says ipc 2"):
        load_config(configs / "fashion-mnist-ipc2.yaml", 2, [])
    # Checked before anything runs: the error comes first and nothing is written.
    out = tmp_path / "out"
    assert main(["--quick", "--ipcs", "1,2", "--config-dir", str(configs), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("benchmark_quality: error: ") and "name says ipc 2" in err
    assert not (out / "results.json").exists()


def test_fedcond_errors_exit_with_status_2(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    readme = tmp_path / "README.md"
    readme.write_text("no markers\n")
    results = tmp_path / "results.json"
    results.write_text(json.dumps(hand_results()))
    assert main(["--from-results", str(results), "--update-readme", str(readme)]) == 2
    assert main(["--config-dir", str(tmp_path / "missing"), "--ipcs", "1", "--out", str(tmp_path / "o")]) == 2
    assert main(["--ipcs", "one", "--out", str(tmp_path / "o")]) == 2
    assert main(["--methods", "fedcond,dm", "--out", str(tmp_path / "o")]) == 2
    assert main(["--methods", "random", "--ablation", "--out", str(tmp_path / "o")]) == 2
    assert main(["--steps", "added-factor-2", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 6 and all(line.startswith("benchmark_quality: error: ") for line in err)


def test_unavailable_dataset_is_skipped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bq, "dataset_availability", lambda cfg: (False, "no IDX files here"))
    configs = write_configs(tmp_path / "configs", {1: 1})
    out = tmp_path / "out"
    assert main(["--quick", "--ipcs", "1", "--seeds", "0", "--config-dir", str(configs), "--out", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["skipped"] == {"digits": "no IDX files here"} and results["rows"] == []


def test_baselines_only_at_the_asked_ipcs(tmp_path: Path) -> None:
    from simulations.benchmark_quality import variants

    configs = write_configs(tmp_path / "configs", {1: 1, 2: 2})
    todo = variants(configs, [1, 2], quick=True, progress=False, baseline_ipcs=[1])
    assert [(v.ipc, v.method) for v in todo] == [(1, "fedcond"), (1, "random"), (1, "herding"), (2, "fedcond")]


def test_methods_chooses_the_rows(tmp_path: Path) -> None:
    from simulations.benchmark_quality import variants

    configs = write_configs(tmp_path / "configs", {1: 1, 2: 2})
    todo = variants(configs, [1, 2], quick=True, progress=False, methods=("random", "herding"))
    assert [(v.ipc, v.method) for v in todo] == [(1, "random"), (1, "herding"), (2, "random"), (2, "herding")]
    assert bq._chosen_methods("herding, fedcond") == ("fedcond", "herding")


# ---------------------------------------------------------------------- the targets
def seeded_results(accuracies: dict[int, list[float]], seconds: float = 500.0) -> dict[str, Any]:
    """Full Fashion-MNIST results by hand: per ipc, the ``fedcond`` row's mean for each seed."""
    results = hand_results(seeds=[0, 1, 2])
    template = results["rows"][0]
    results["rows"] = [
        {**template, "ipc": ipc, "seed": seed, "accuracy_mean": mean, "condense_seconds": seconds + seed}
        for ipc, means in accuracies.items()
        for seed, mean in enumerate(means)
    ]
    return results


def test_a_target_is_met_only_with_three_seeds_within_budget_and_memory() -> None:
    checked = bq.checks(seeded_results({1: [82.0, 83.0, 84.0], 10: [86.0, 86.5, 87.5], 50: [90.0, 89.0]}))
    assert checked["fashion-mnist_ipc1_accuracy"] == {
        "target": ">= 82.0 % (mean over 3 condensation seeds)", "value": 83.0, "seeds": 3, "complete": True, "met": True,
    }  # fmt: skip
    assert checked["fashion-mnist_ipc10_accuracy"]["met"] is True  # 86.67 >= 86.5
    assert checked["fashion-mnist_ipc1_condense_budget"]["value"] == 502.0  # the slowest seed
    assert checked["fashion-mnist_ipc1_condense_budget"]["met"] is True
    # Two seeds are not a result, whatever their mean.
    assert checked["fashion-mnist_ipc50_accuracy"]["complete"] is False
    assert checked["fashion-mnist_ipc50_accuracy"]["met"] is False
    assert checked["peak_memory_per_row"]["value"] == 900.0 and checked["peak_memory_per_row"]["met"] is True

    slow = bq.checks(seeded_results({1: [90.0, 90.0, 90.0]}, seconds=599.5))
    assert slow["fashion-mnist_ipc1_accuracy"]["met"] is True
    assert slow["fashion-mnist_ipc1_condense_budget"] == {
        "target": "<= 600 s of condensation per set (slowest seed)", "value": 601.5, "seeds": 3, "complete": True,
        "met": False,
    }  # fmt: skip
    assert slow["fashion-mnist_ipc10_accuracy"] == {
        "target": ">= 86.5 % (mean over 3 condensation seeds)", "value": None, "seeds": 0, "complete": False,
        "met": False,
    }  # fmt: skip

    heavy = seeded_results({1: [90.0, 90.0, 90.0]})
    heavy["rows"][1]["peak_memory_mb"] = 4097.0
    assert bq.checks(heavy)["peak_memory_per_row"]["met"] is False
    for change in ({"quick": True}, {"dataset": "digits"}):  # a quick or digits run measures nothing
        assert not any(c["met"] for c in bq.checks({**seeded_results({1: [90.0] * 3}), **change}).values())


def test_from_results_merges_runs_later_files_winning(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    first = seeded_results({1: [80.0, 80.0, 80.0], 10: [85.0, 85.0, 85.0]})
    second = seeded_results({10: [86.0, 87.0, 88.0]})
    first["command"] = "python -m simulations.benchmark_quality --ipcs 1,10"
    second["command"], second["date"] = "python -m simulations.benchmark_quality --ipcs 10", "2026-01-05"
    paths = [tmp_path / "a.json", tmp_path / "b.json"]
    for path, results in zip(paths, (first, second)):
        path.write_text(json.dumps(results))
    out = tmp_path / "merged"
    assert main(["--from-results", *map(str, paths), "--out", str(out)]) == 0
    merged = json.loads((out / "results.json").read_text())
    assert [(r["ipc"], r["seed"], r["accuracy_mean"]) for r in merged["rows"]] == [
        (1, 0, 80.0), (1, 1, 80.0), (1, 2, 80.0), (10, 0, 86.0), (10, 1, 87.0), (10, 2, 88.0),
    ]  # fmt: skip
    assert merged["date"] == "2026-01-05" and merged["command"] == f"{first['command']}\n{second['command']}"
    assert merged["checks"]["fashion-mnist_ipc10_accuracy"]["met"] is True
    assert [s["accuracy_mean"] for s in merged["summary"]] == [80.0, 87.0]
    printed = capsys.readouterr().out
    assert "fashion-mnist_ipc10_accuracy >= 86.5 % (mean over 3 condensation seeds): met (87)" in printed
    (tmp_path / "foreign.json").write_text(json.dumps({"benchmark": "speed"}))
    assert main(["--from-results", str(tmp_path / "foreign.json")]) == 2
    assert "is not a results.json of benchmark_quality" in capsys.readouterr().err


# ---------------------------------------------------------------------- the ablation
ABLATION_CONFIG = CONFIG.replace("  ipc: {ipc}\n", "  ipc: {ipc}\n  factor: 2\n  init: herding\n").replace(
    "discrepancy: mmd-gaussian", "discrepancy: mmd-linear"
)


def test_ablation_plan_adds_and_removes_the_recipes_techniques(tmp_path: Path) -> None:
    configs = tmp_path / "configs"
    configs.mkdir()
    (configs / "fashion-mnist-ipc10.yaml").write_text(ABLATION_CONFIG.format(ipc=10))
    plan = bq.ablation_plan(configs, quick=False, progress=False)
    assert plan.kept == ["factor 2", "herding init"]
    assert plan.order == [
        ("plain DM (no technique)", "base"), ("+ factor 2", "added"), ("+ herding init", "added"),
        ("- factor 2", "removed"), ("- herding init", "removed"),
        ("+ mmd-gaussian-linear (not kept)", "tried"), ("+ trained pool (not kept)", "tried"),
    ]  # fmt: skip
    # The last addition is the recipe, and removing the last technique is the row before it: neither runs twice.
    assert plan.same_as == {"+ herding init": "fedcond", "- herding init": "+ factor 2"}
    runs = {v.step: v.config.condense for v in plan.steps}
    assert list(runs) == [
        "plain DM (no technique)", "+ factor 2", "- factor 2", "+ mmd-gaussian-linear (not kept)",
        "+ trained pool (not kept)",
    ]  # fmt: skip
    assert (runs["plain DM (no technique)"].factor, runs["plain DM (no technique)"].init) == (1, "real")
    assert (runs["- factor 2"].factor, runs["- factor 2"].init) == (1, "herding")
    tried = runs["+ trained pool (not kept)"]
    assert (tried.real_target, tried.pool_networks, tried.factor, tried.init) == ("trained-pool", 8, 2, "herding")
    names = [bq.step_name(v) for v in plan.steps]
    assert names == [
        "base-plain-dm-no-technique", "added-factor-2", "removed-factor-2", "tried-mmd-gaussian-linear-not-kept",
        "tried-trained-pool-not-kept",
    ]  # fmt: skip
    # "+ factor 2" and "- factor 2" keep their sets in different files.
    assert len({bq.set_name(v, 0) for v in plan.steps}) == len(plan.steps)
    chosen = bq.chosen_steps(plan, ["removed-factor-2", "base-plain-dm-no-technique"])
    assert [v.step for v in chosen] == ["plain DM (no technique)", "- factor 2"]
    with pytest.raises(FedcondError, match="unknown factor-2; this plan's steps: base-plain-dm-no-technique"):
        bq.chosen_steps(plan, ["factor-2"])
    with pytest.raises(FedcondError, match="--steps is empty"):
        bq.chosen_steps(plan, [])


def test_ablation_table_compares_each_step_with_what_it_changes() -> None:
    results = seeded_results({10: [85.0, 86.0, 87.0]})
    plan = {
        "kept": ["factor 2"],
        "order": [["plain DM (no technique)", "base"], ["+ factor 2", "added"], ["- factor 2", "removed"],
                  ["+ herding init (not kept)", "tried"]],
        "same_as": {"+ factor 2": "fedcond", "- factor 2": "plain DM (no technique)"},
    }  # fmt: skip
    template = {**results["rows"][0], "method": "ablation", "images_per_class": 10}
    results["ablation_plan"] = plan
    results["ablation_rows"] = [
        {**template, "step": step, "kind": kind, "seed": seed, "accuracy_mean": mean, "description": step}
        for step, kind, means in (("plain DM (no technique)", "base", [82.0, 83.0, 84.0]),
                                  ("+ herding init (not kept)", "tried", [85.5, 86.5, 87.5]))
        for seed, mean in enumerate(means)
    ]  # fmt: skip
    results["summary"] = []
    lines = bq.ablation_table(results).splitlines()
    assert lines[2:6] == [
        "| plain DM (no technique) | 83.0 ± 0.8 (3) | - | 500.0 | 10 |",
        "| + factor 2 (= the recipe) | 86.0 ± 0.8 (3) | +3.0 | 501.0 | 40 |",
        "| - factor 2 (= plain DM (no technique)) | 83.0 ± 0.8 (3) | -3.0 | 500.0 | 10 |",
        "| + herding init (not kept) | 86.5 ± 0.8 (3) | +0.5 | 500.0 | 10 |",
    ]
    assert "keeps: factor 2" in lines[-1]


def test_quick_ablation_runs_every_distinct_step(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The trained pool's 8 networks x 60 steps would be most of the time; its config is checked above.
    monkeypatch.setattr(bq, "TECHNIQUES", tuple(t for t in bq.TECHNIQUES if t.name != "trained pool"))
    configs = tmp_path / "configs"
    configs.mkdir()
    (configs / "fashion-mnist-ipc10.yaml").write_text(ABLATION_CONFIG.format(ipc=10).replace("  factor: 2\n", ""))
    out = tmp_path / "out"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert main(["--quick", "--ablation", "--seeds", "0", "--config-dir", str(configs), "--out", str(out)]) == 0
    finally:
        torch.set_num_threads(threads)
    results = json.loads((out / "results.json").read_text())
    assert results["rows"] == [] and results["complete"] is True
    steps = [r["step"] for r in results["ablation_rows"]]
    assert steps == [s for s, _ in results["ablation_plan"]["order"] if s not in results["ablation_plan"]["same_as"]]
    assert [s["step"] for s in results["ablation"]] == steps
    assert all((out / "sets" / r["set"]).is_file() for r in results["ablation_rows"])


def test_cross_from_evaluates_the_sets_an_earlier_run_kept(
    quick_run: tuple[dict[str, Any], str], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    results, out = quick_run
    configs = Path(out).parent / "configs"
    merged = tmp_path / "cross"
    args = ["--cross-from", str(Path(out) / "results.json"), "--config-dir", str(configs), "--out", str(merged)]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert main([*args, "--cross-models", "lenet", "--cross-runs", "1"]) == 0
    finally:
        torch.set_num_threads(threads)
    crossed = json.loads((merged / "results.json").read_text())
    for before, after in zip(results["rows"], crossed["rows"]):
        assert after["cross"]["mlp"] == before["cross"]["mlp"]  # kept, not re-measured
        assert len(after["cross"]["lenet"]["accuracies"]) == 1
    assert crossed["command"].splitlines()[0] == results["command"]
    assert crossed["codes"][0] == results["code"] and crossed["codes"][-1] == bq.code_version()
    assert "| mlp % (1 net) | lenet % (1 net) |" in capsys.readouterr().out
    assert main([*args]) == 2
    assert "--cross-from needs --cross-models" in capsys.readouterr().err


def test_run_codes_lists_every_version_once_in_order() -> None:
    a, b, c = ({"commit": x * 40, "dirty": False} for x in "abc")
    assert bq.run_codes([{"code": a}], b) == [a, b]  # a --cross-from run: the sets' code, then its own
    assert bq.run_codes([{"code": a, "codes": [a, c]}, {"code": b}], a) == [a, c, b]  # nested lists kept
    assert bq.run_codes([{"code": a}], a) == [a]


def test_merge_lists_each_command_line_once() -> None:
    first = seeded_results({10: [86.0, 87.0, 88.0]})
    first["command"] = "python -m simulations.benchmark_quality --ipcs 10"
    crossed = copy.deepcopy(first)
    crossed["command"] = f"{first['command']}\npython -m simulations.benchmark_quality --cross-from r.json"
    assert bq.merge([first, crossed])["command"].splitlines() == crossed["command"].splitlines()


def readme_block(tmp_path: Path, results: dict[str, Any]) -> str:
    readme = tmp_path / "README.md"
    readme.write_text(f"{README_START}\n{README_END}\n")
    update_readme(readme, results, results["command"])
    return readme.read_text()


def test_a_run_stopped_early_is_complete_once_later_runs_measured_what_it_missed(tmp_path: Path) -> None:
    stopped = seeded_results({10: [85.0]})  # planned three seeds, measured one
    stopped.update(complete=False, planned=[[10, "fedcond", None, s] for s in (0, 1, 2)])
    rest = seeded_results({10: [85.0, 86.0, 87.0]})
    rest["rows"] = rest["rows"][1:]
    rest["planned"] = [[10, "fedcond", None, s] for s in (1, 2)]
    assert bq.merge([stopped])["complete"] is False
    stopped["command"] = rest["command"] = "python -m simulations.benchmark_quality --ipcs 10"
    assert bq.INCOMPLETE_NOTE in readme_block(tmp_path, bq.merge([stopped]))
    merged = bq.merge([stopped, rest])
    assert merged["complete"] is True and bq.INCOMPLETE_NOTE not in readme_block(tmp_path, merged)
    assert merged["planned"] == stopped["planned"]
    rest["rows"] = rest["rows"][1:]  # seed 1 is still missing
    assert bq.merge([stopped, rest])["complete"] is False


def test_a_run_without_a_recorded_plan_is_planned_from_its_command(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    configs = write_configs(tmp_path / "configs", {1: 1, 2: 2})
    command = f"python -m simulations.benchmark_quality --ipcs 1,2 --baseline-ipcs 1 --seeds 0,1 --config-dir {configs}"
    old = {"command": f"{command}\npython -m simulations.benchmark_quality --cross-from r.json"}
    assert bq.planned_rows(old) == {
        (ipc, method, None, seed) for ipc, method in [(1, "fedcond"), (1, "random"), (1, "herding"), (2, "fedcond")]
        for seed in (0, 1)
    }  # fmt: skip
    assert bq.planned_rows({"command": "python -m simulations.benchmark_quality --ipcs x"}) is None
    assert bq.planned_rows({"command": "python train.py"}) is None
    assert bq.planned_rows({"command": "python -m simulations.benchmark_quality --no-such-option"}) is None
    assert capsys.readouterr().err == ""  # a merge does not print argparse's complaint about an old line
    assert bq.planned_rows({"command": f"{command} --config-dir {tmp_path / 'gone'}"}) is None
