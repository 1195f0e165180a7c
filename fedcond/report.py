"""What every command leaves behind: ``results.json`` (written atomically) and a short table."""

from __future__ import annotations

import resource
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

import torch

from fedcond import __version__
from fedcond.io import atomic_write_json

RESULTS_FILE = "results.json"


def peak_memory_mb(device: torch.device | None = None) -> float:
    """Peak resident memory (MB) since the process started or :func:`reset_peak_memory`, plus CUDA's peak allocation.

    Linux's ``VmHWM`` is read where it exists (it can be reset, so each benchmark row reports its
    own peak); elsewhere the process-lifetime ``ru_maxrss``.
    """
    rss_mb = _vm_hwm_mb()
    if rss_mb is None:
        rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB
    if device is not None and device.type == "cuda":
        rss_mb += torch.cuda.max_memory_allocated(device) / 2**20
    return round(rss_mb, 1)


def reset_peak_memory(device: torch.device | None = None) -> bool:
    """Start a new peak for :func:`peak_memory_mb` (Linux ``clear_refs`` 5); False where it cannot."""
    if device is not None and device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def _vm_hwm_mb() -> float | None:
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return None


def write_results(out_dir: Path, command: str, results: dict[str, Any]) -> Path:
    """Write ``out_dir/results.json``: ``command`` and the fedcond version first, then ``results``."""
    path = out_dir / RESULTS_FILE
    atomic_write_json(path, {"command": command, "fedcond_version": __version__, **results})
    return path


def format_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain aligned text table."""
    cells = [[str(h) for h in headers]] + [[_cell(v) for v in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def print_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], stream: TextIO | None = None) -> None:
    print(format_table(headers, rows), file=stream or sys.stdout)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.2f}"
    return "-" if value is None else str(value)
