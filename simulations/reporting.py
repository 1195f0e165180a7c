"""What every benchmark under ``simulations/`` shares: the machine it ran on, its README block."""

from __future__ import annotations

import os
import platform
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from fedcond.errors import FedcondError
from fedcond.io import atomic_write_text


def machine() -> dict[str, Any]:
    """The facts a timing needs next to it."""
    return {
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "device": "cuda" if torch.cuda.is_available() else "cpu",
    }


def replace_readme_block(path: Path, start: str, end: str, lines: Sequence[str]) -> None:
    """Replace the text between the ``start`` and ``end`` markers of ``path`` (markers kept), atomically."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise FedcondError(f"cannot read {path}: {exc.strerror or exc}") from None
    if start not in text or end not in text:
        raise FedcondError(f"{path} has no {start} ... {end} markers")
    before, rest = text.split(start, 1)
    _, after = rest.split(end, 1)
    atomic_write_text(path, before + "\n".join([start, *lines, end]) + after)


def measured_header(results: dict[str, Any], command: str) -> list[str]:
    """The opening lines of a README block: when, where, how much memory, and the exact command."""
    m = results["machine"]
    seeds = results.get("seeds")
    memory = results.get("peak_memory_mb")
    line = (
        f"Measured {results['date']} on {m['cores']} cores ({m['cpu']}, torch {m['torch']}, {m['device']}"
        + (f", {m['torch_threads']} threads)" if "torch_threads" in m else ")")
        + (f", seeds {', '.join(map(str, seeds))}" if seeds else "")
        + (f"; peak RSS {memory:.0f} MB" if memory is not None else "")
        + ". Command:"
    )
    return [line, "", "```", command, "```", ""]
