"""Accuracy against cumulative upload bytes, one line per strategy (matplotlib, written atomically)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fedcond.plotting import new_figure, write_figure


def plot_accuracy_vs_upload(results: dict[str, Any], path: Path) -> None:
    """One point per round: (total bytes uploaded so far, test accuracy after the round)."""
    fig, ax = new_figure()
    for name, strategy in results["strategies"].items():
        xs, ys, total = [], [], 0
        for entry in strategy["rounds"]:
            total += entry["upload_bytes"]
            if entry["accuracy"] is not None:
                xs.append(max(total, 1) / 2**20)
                ys.append(entry["accuracy"])
        ax.plot(xs, ys, marker="o", markersize=3, label=name)
    ax.set_xscale("log")
    ax.set_xlabel("cumulative upload (MiB, log scale)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(f"{results['dataset']}, {results['num_clients']} clients")
    ax.grid(True, alpha=0.3)
    ax.legend()
    write_figure(fig, path)
