"""The README blocks' shared header says where and how a benchmark ran."""

from __future__ import annotations

from simulations.reporting import measured_header


def _results(threads: int) -> dict:
    machine = {"cores": 2, "cpu": "x86_64", "torch": "2.x", "device": "cpu", "torch_threads": threads}
    return {"date": "2026-01-01", "machine": machine, "seeds": [0, 1], "peak_memory_mb": 900.0}


def test_header_names_machine_threads_seeds_memory_and_command() -> None:
    lines = measured_header(_results(2), "python -m simulations.x")
    assert lines[0] == (
        "Measured 2026-01-01 on 2 cores (x86_64, torch 2.x, cpu, 2 threads), seeds 0, 1; peak RSS 900 MB. Command:"
    )
    assert lines[2:5] == ["```", "python -m simulations.x", "```"]


def test_header_counts_one_thread_in_the_singular() -> None:
    assert "cpu, 1 thread)" in measured_header(_results(1), "a\nb")[0]
    assert measured_header(_results(1), "a\nb")[0].endswith("Commands (one report of their scenarios):")
