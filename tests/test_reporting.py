"""The benchmark blocks: their shared header, and the page they live on (docs/benchmarks.md)."""

from __future__ import annotations

import importlib
import json
import shutil
from pathlib import Path

import pytest

from fedcond.errors import FedcondError
from simulations import reporting
from simulations.reporting import BENCHMARKS_PAGE, measured_header, replace_readme_block, run_machines

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = ("condense", "quality", "speed", "federated", "continual", "privacy", "labels")
#: Benchmarks whose committed block `--from-results simulations/results/benchmark-NAME.json` rewrites
#: byte for byte (benchmark_condense's results.json does not record the command that measured it).
REPRODUCIBLE = ("quality", "speed", "federated", "continual", "privacy", "labels")


def _results(threads: int) -> dict:
    machine = {"cores": 2, "cpu": "x86_64", "torch": "2.x", "device": "cpu", "torch_threads": threads}
    return {"date": "2026-01-01", "machine": machine, "seeds": [0, 1], "peak_memory_mb": 900.0}


def test_header_names_machine_threads_seeds_memory_and_command() -> None:
    lines = measured_header(_results(2), "python -m simulations.x")
    assert lines[0] == (
        "Measured 2026-01-01 on 2 cores (x86_64, torch 2.x, cpu, 2 threads), seeds 0, 1; peak RSS 900 MB. Command:"
    )
    assert lines[2:5] == ["```", "python -m simulations.x", "```"]


def test_header_names_the_commit_of_every_merged_run() -> None:
    one = {**_results(2), "code": {"commit": "a" * 40, "dirty": False}}
    assert measured_header(one, "x")[0].endswith("900 MB; commit aaaaaaa. Command:")
    merged = {**one, "codes": [{"commit": "a" * 40, "dirty": False}, {"commit": "b" * 40, "dirty": True}]}
    assert "900 MB; commits aaaaaaa, bbbbbbb with uncommitted changes. Commands" in measured_header(merged, "x\ny")[0]


def test_a_merge_of_runs_from_two_machines_names_both() -> None:
    fast, slow = ({**_results(2)["machine"], "cpu_capability": isa} for isa in ("AVX512", "AVX2"))
    first, second = {**_results(2), "machine": fast}, {**_results(2), "machine": slow}
    assert run_machines([first, {**first}]) == [fast]  # one machine named once
    machines = run_machines([first, second])
    assert machines == [fast, slow]
    assert run_machines([{**first, "machines": machines}], fast) == [fast, slow]  # a merged run's own list
    line = measured_header({**first, "machines": machines}, "x\ny")[0]
    assert line.startswith(
        "Measured 2026-01-01 on 2 cores (x86_64 AVX512, torch 2.x, cpu, 2 threads) "
        "and on 2 cores (x86_64 AVX2, torch 2.x, cpu, 2 threads), seeds 0, 1"
    )


def test_header_counts_one_thread_in_the_singular() -> None:
    assert "cpu, 1 thread)" in measured_header(_results(1), "a\nb")[0]
    assert measured_header(_results(1), "a\nb")[0].endswith("Commands (one report of their scenarios):")


def test_the_benchmarks_page_holds_every_benchmarks_markers() -> None:
    assert BENCHMARKS_PAGE == ROOT / "docs" / "benchmarks.md"
    text = BENCHMARKS_PAGE.read_text(encoding="utf-8")
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for name in BENCHMARKS:
        module = importlib.import_module(f"simulations.benchmark_{name}")
        start, end = module.README_START, module.README_END
        assert start == f"<!-- benchmark-{name}:start -->" and end == f"<!-- benchmark-{name}:end -->"
        assert text.count(start) == 1 and text.count(end) == 1 and text.index(start) < text.index(end), name
        assert start not in readme and end not in readme, f"{name}: the block lives in docs/benchmarks.md only"
    from simulations.benchmark_quality import ABLATION_END, ABLATION_START

    assert text.count(ABLATION_START) == 1 and text.index(ABLATION_START) < text.index(ABLATION_END)


@pytest.mark.parametrize("name", REPRODUCIBLE)
def test_update_readme_without_a_file_rewrites_the_block_in_docs_benchmarks_md(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    page = tmp_path / "benchmarks.md"
    shutil.copy(BENCHMARKS_PAGE, page)
    monkeypatch.setattr(reporting, "BENCHMARKS_PAGE", page)  # the default, read when the parser is built
    module = importlib.import_module(f"simulations.benchmark_{name}")
    results = ROOT / "simulations" / "results" / f"benchmark-{name}.json"
    assert module.main(["--from-results", str(results), "--update-readme"]) == 0
    # The committed page is what the writers write from the committed results.
    assert page.read_text(encoding="utf-8") == BENCHMARKS_PAGE.read_text(encoding="utf-8")


def test_the_condense_block_keeps_its_table(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from simulations import benchmark_condense

    page = tmp_path / "benchmarks.md"
    shutil.copy(BENCHMARKS_PAGE, page)
    monkeypatch.setattr(reporting, "BENCHMARKS_PAGE", page)
    results = ROOT / "simulations" / "results" / "benchmark-condense.json"
    # --out: benchmark_condense creates its output folder even when it only reprints.
    assert benchmark_condense.main(["--from-results", str(results), "--update-readme", "--out", str(tmp_path / "out")]) == 0
    before, after = BENCHMARKS_PAGE.read_text(encoding="utf-8"), page.read_text(encoding="utf-8")
    start, end = benchmark_condense.README_START, benchmark_condense.README_END
    assert after.split(start)[0] == before.split(start)[0] and after.split(end)[1] == before.split(end)[1]
    table = [line for line in before.split(start)[1].split(end)[0].splitlines() if line.startswith("| digits")]
    rows = json.loads(results.read_text(encoding="utf-8"))["rows"]
    assert len(table) == sum(r["dataset"] == "digits" for r in rows) > 0 and all(line in after for line in table)


def test_a_file_without_the_markers_is_a_one_line_error(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text("# an old README\n<!-- benchmark-speed:start -->\nold\n")
    with pytest.raises(FedcondError) as error:
        replace_readme_block(readme, "<!-- benchmark-speed:start -->", "<!-- benchmark-speed:end -->", ["new"])
    message = str(error.value)
    assert "\n" not in message and str(readme) in message and "docs/benchmarks.md" in message
    assert "has no <!-- benchmark-speed:end --> marker" in message
    assert readme.read_text() == "# an old README\n<!-- benchmark-speed:start -->\nold\n"  # untouched
    readme.write_text("<!-- benchmark-speed:end -->\n<!-- benchmark-speed:start -->\n")
    with pytest.raises(FedcondError, match="end --> marker before <!-- benchmark-speed:start -->"):
        replace_readme_block(readme, "<!-- benchmark-speed:start -->", "<!-- benchmark-speed:end -->", ["new"])


@pytest.mark.parametrize("name", BENCHMARKS)
def test_an_old_readme_target_exits_2_naming_the_page(name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    readme = tmp_path / "README.md"
    readme.write_text("# fedcond\n")
    module = importlib.import_module(f"simulations.benchmark_{name}")
    results = ROOT / "simulations" / "results" / f"benchmark-{name}.json"
    extra = ["--out", str(tmp_path / "out")] if name == "condense" else []  # it creates --out even to reprint
    assert module.main(["--from-results", str(results), "--update-readme", str(readme), *extra]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and f"has no <!-- benchmark-{name}:start --> and no" in err[0] and "docs/benchmarks.md" in err[0]
    assert readme.read_text() == "# fedcond\n"


def test_results_writer_records_the_command_and_the_seconds(tmp_path: Path) -> None:
    command, save = reporting.results_writer(tmp_path, "simulations.benchmark_condense", ["--seeds", "0,1", "--set", "a=b c"])
    assert command == "python -m simulations.benchmark_condense --seeds 0,1 --set 'a=b c'"
    save({"rows": [1]})
    written = json.loads((tmp_path / "results.json").read_text())
    assert written["rows"] == [1] and written["command"] == command and written["total_seconds"] >= 0

