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
    class_indices,
    main,
    reference_condense,
    reference_dm_loss,
    reference_train_and_test,
    table,
    update_readme,
)

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
