"""The figures fedcond writes: a headless matplotlib figure, saved as a PNG atomically."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from fedcond.io import atomic_write_bytes


def new_figure(figsize: tuple[float, float] = (6, 4)) -> tuple[Any, Any]:
    """A figure and its axes on matplotlib's Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=figsize)


def write_figure(fig: Any, path: Path, *, dpi: int = 120) -> None:
    """Save ``fig`` to ``path`` as a PNG (a reader never sees half a file) and free it."""
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png", dpi=dpi)
    plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())
