"""The tuning protocol's trust: rank correlation of ``evaluation.protocol: quick`` with ``full``.

A part of ``simulations/benchmark_speed.py``. Sets of different quality (random coresets, herding,
DM sets of several iteration counts, at ipc 1, 5 and 10) are each evaluated under both protocols
with the same evaluation seed, so both meet the same networks; Spearman's rho between the two
protocols' mean accuracies says how far a quick number can be trusted to rank sets, and the time
ratio what it saves.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from scipy.stats import spearmanr

from fedcond import Config, condense, evaluate_synthetic
from fedcond.data import ImageDataset
from fedcond.evaluation import EVALUATION_PROTOCOLS
from fedcond.report import peak_memory_mb, reset_peak_memory

#: The targets of the issue: rho at least this, at most this share of the full protocol's time.
RHO_TARGET = 0.9
TIME_SHARE_TARGET = 0.2


@dataclass(frozen=True)
class TuningSet:
    """One set of the correlation table: how it is made (``iterations`` only for ``matching``)."""

    name: str
    method: str
    ipc: int
    iterations: int = 0
    seed: int = 0


TUNING_SETS: tuple[TuningSet, ...] = (
    TuningSet("random ipc 1 (seed 0)", "random", 1),
    TuningSet("random ipc 1 (seed 1)", "random", 1, seed=1),
    TuningSet("random ipc 1 (seed 2)", "random", 1, seed=2),
    TuningSet("DM ipc 1, 100 iterations", "matching", 1, 100),
    TuningSet("DM ipc 1, 500 iterations", "matching", 1, 500),
    TuningSet("random ipc 5", "random", 5),
    TuningSet("herding ipc 5", "herding", 5),
    TuningSet("DM ipc 5, 100 iterations", "matching", 5, 100),
    TuningSet("DM ipc 5, 400 iterations", "matching", 5, 400),
    TuningSet("random ipc 10", "random", 10),
    TuningSet("DM ipc 10, 100 iterations", "matching", 10, 100),
    TuningSet("DM ipc 10, 400 iterations", "matching", 10, 400),
)
#: The --quick run's sets: the same kinds, few iterations (checks the code, measures nothing).
QUICK_TUNING_SETS: tuple[TuningSet, ...] = (
    TuningSet("random ipc 1", "random", 1),
    TuningSet("random ipc 2", "random", 2),
    TuningSet("DM ipc 2, 3 iterations", "matching", 2, 3),
)


def set_config(base: dict[str, Any], entry: TuningSet, *, pool_networks: int, batch_real: int) -> Config:
    """The config that makes ``entry``: DM's objective on a pool of random ConvNets, or a coreset."""
    condense_section = {
        **base["condense"],
        "method": entry.method,
        "ipc": entry.ipc,
        "iterations": max(1, entry.iterations),
        "pool_networks": pool_networks,
        "batch_real": batch_real,
    }
    return Config.from_dict({**base, "seed": entry.seed, "condense": condense_section})


def protocol_config(base: dict[str, Any], protocol: str) -> Config:
    """The evaluation config of every set under ``protocol``, always seeded 0 (same networks for all sets)."""
    return Config.from_dict({**base, "seed": 0, "evaluation": {**base["evaluation"], "protocol": protocol}})


def spearman(full: Sequence[float], quick: Sequence[float]) -> float | None:
    """Spearman's rank correlation (ties averaged), or None for fewer than 3 sets or a constant side."""
    if len(full) < 3 or np.ptp(full) == 0 or np.ptp(quick) == 0:
        return None
    return round(float(spearmanr(full, quick).statistic), 4)


def summarise(sets: list[dict[str, Any]]) -> dict[str, Any]:
    """rho and time share over the sets measured under both protocols, with the targets' checks."""
    done = [s for s in sets if s.get("full") and s.get("quick")]
    rho = spearman([s["full"]["accuracy_mean"] for s in done], [s["quick"]["accuracy_mean"] for s in done])
    full_s = sum(s["full"]["seconds"] for s in done)
    quick_s = sum(s["quick"]["seconds"] for s in done)
    share = round(quick_s / full_s, 4) if full_s > 0 else None
    return {
        "sets_measured": len(done),
        "spearman_rho": rho,
        "time_share": share,
        "full_seconds": round(full_s, 1),
        "quick_seconds": round(quick_s, 1),
        "checks": {
            "spearman_rho": {"target": f">= {RHO_TARGET} over >= 10 sets", "value": rho,
                             "met": rho is not None and len(done) >= 10 and rho >= RHO_TARGET},
            "time_share": {"target": f"<= {TIME_SHARE_TARGET}", "value": share,
                           "met": share is not None and share <= TIME_SHARE_TARGET},
        },
    }


def run_tuning(
    train: ImageDataset,
    test: ImageDataset,
    base: dict[str, Any],
    sets: Sequence[TuningSet],
    *,
    pool_networks: int,
    batch_real: int,
    device: torch.device,
    save: Callable[[dict[str, Any]], None],
) -> dict[str, Any]:
    """Make every set, evaluate it under both protocols, and ``save`` the part after each one.

    Parameters
    ----------
    train, test
        The splits the sets are made from and tested on.
    base
        The plain-data config both protocols share (``evaluation`` as the full protocol).
    sets
        What to make.
    pool_networks, batch_real
        The DM sets' pool and real batch.
    device
        Where to condense and train.
    save
        Receives the part after every set.
    """
    protocols = {name: protocol_config(base, name) for name in ("full", "quick")}
    part: dict[str, Any] = {
        "protocols": {
            name: {"runs": EVALUATION_PROTOCOLS[name].runs or cfg.evaluation.runs,
                   "epochs": EVALUATION_PROTOCOLS[name].epochs or cfg.evaluation.epochs}
            for name, cfg in protocols.items()
        },
        "pool_networks": pool_networks,
        "batch_real": batch_real,
        "sets": [],
    }
    for entry in sets:
        reset_peak_memory()
        started = time.perf_counter()
        synthetic = condense(train, set_config(base, entry, pool_networks=pool_networks, batch_real=batch_real),
                             device=device)
        row: dict[str, Any] = {**asdict(entry), "condense_seconds": round(time.perf_counter() - started, 2)}
        part["sets"].append(row)
        for name, config in protocols.items():
            result = evaluate_synthetic(synthetic, test, config, device=device)
            row[name] = {k: v for k, v in result.to_dict().items() if k in ("accuracies", "accuracy_mean",
                                                                             "accuracy_std", "seconds")}
        row["peak_memory_mb"] = peak_memory_mb(device)
        part.update(summarise(part["sets"]))
        save(part)
    return part


def merge_parts(parts: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """One tuning part from several runs' (for example two processes' shares of the sets), in set order."""
    order = {s.name: i for i, s in enumerate(TUNING_SETS)}
    by_name: dict[str, dict[str, Any]] = {}
    for part in parts:
        for row in part["sets"]:
            by_name[row["name"]] = row
    merged = {k: v for k, v in parts[0].items() if k not in ("sets",)}
    merged["sets"] = sorted(by_name.values(), key=lambda r: order.get(r["name"], len(order)))
    merged.update(summarise(merged["sets"]))
    return merged


def table(part: dict[str, Any]) -> str:
    """Markdown: each set's accuracy under both protocols, then rho and the time share."""
    full, quick = part["protocols"]["full"], part["protocols"]["quick"]
    lines = [
        f"| set | full ({full['runs']} × {full['epochs']} epochs) % | quick ({quick['runs']} × {quick['epochs']} "
        "epochs) % | full s | quick s | peak RSS MB |",
        "|---|---|---|---|---|---|",
    ]
    for row in part["sets"]:
        if not (row.get("full") and row.get("quick")):
            continue
        f, q = row["full"], row["quick"]
        lines.append(
            f"| {row['name']} | {f['accuracy_mean']:.2f} ± {f['accuracy_std']:.2f} | {q['accuracy_mean']:.2f} | "
            f"{f['seconds']:.0f} | {q['seconds']:.0f} | {row.get('peak_memory_mb') or 0:.0f} |"
        )
    rho = part.get("spearman_rho")
    share = part.get("time_share")
    lines += [
        "",
        f"Spearman's rho over {part.get('sets_measured', 0)} sets: "
        f"**{'-' if rho is None else f'{rho:.3f}'}** (target ≥ {RHO_TARGET}); the quick protocol took "
        f"**{'-' if share is None else f'{100 * share:.1f} %'}** of the full protocol's time "
        f"(target ≤ {100 * TIME_SHARE_TARGET:.0f} %).",
    ]
    return "\n".join(lines)
