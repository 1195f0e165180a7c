"""Benchmark: the quality of this project's fast Fashion-MNIST configs at ipc 1, 10 and 50, next to
random and herding coresets of the same size and to the published numbers of the field.

    python -m simulations.benchmark_quality --out runs/benchmark-quality --update-readme

Each ipc condenses with ``configs/fashion-mnist-fast-ipc{ipc}.yaml`` and evaluates with the field's
protocol (the config's ``evaluation`` section: 3 fresh ConvNet-3, 300 epochs, DSA); the random and
herding rows use the same config with ``condense.method`` replaced, so all three are measured the
same way. Writes ``OUT/results.json`` after every row and prints two markdown tables (the measured
rows; the published numbers with this project's measurement beside them); with
``--update-readme [FILE]`` it replaces the block between the benchmark-quality markers of FILE
(default: ``docs/benchmarks.md``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

import fedcond
from fedcond.config import Config
from fedcond.data import DatasetSplits, dataset_availability
from fedcond.errors import FedcondError
from fedcond.io import atomic_write_json
from fedcond.report import peak_memory_mb
from simulations.reporting import (
    add_update_readme_argument,
    code_version,
    machine,
    measured_header,
    replace_readme_block,
)

ROOT = Path(__file__).resolve().parents[1]
PROG = "benchmark_quality"
README_START = "<!-- benchmark-quality:start -->"
README_END = "<!-- benchmark-quality:end -->"
DEFAULT_IPCS = (1, 10, 50)
DEFAULT_SEEDS = (0,)
#: One config per ipc, in ``--config-dir``.
CONFIG_PATTERN = "fashion-mnist-fast-ipc{ipc}.yaml"
#: The row of the config's own method, and the coresets measured beside it.
OWN_METHOD = "fedcond"
BASELINES = ("random", "herding")
INCOMPLETE_NOTE = "The run was stopped early: these are the rows it finished."
QUICK_NOTE = "A --quick run (digits, a few iterations and epochs): it checks the script and measures nothing."
#: ``--quick``: seconds on scikit-learn's digits; checks the script end to end, measures nothing.
QUICK = (
    "dataset.name=digits",
    "condense.factor=1",
    "condense.iterations=2",
    "condense.batch_real=16",
    "condense.pool_networks=2",
    "evaluation.epochs=2",
    "evaluation.runs=1",
)

#: Published Fashion-MNIST test accuracies (%, mean ± std) of a ConvNet-3 trained on sets of
#: ``ipc`` images per class; keys are ipcs as strings so the constant survives a JSON round trip.
#: None: no published figure.
PUBLISHED: dict[str, Any] = {
    "dataset": "fashion-mnist",
    "model": "ConvNet-3",
    "methods": {
        "random": {"1": [51.4, 3.8], "10": [73.8, 0.7], "50": [82.5, 0.7]},
        "herding": {"1": [67.0, 1.9], "10": [71.1, 0.7], "50": [71.9, 0.8]},
        "DC": {"1": [70.5, 0.6], "10": [82.3, 0.4], "50": [83.6, 0.4]},
        "DSA": {"1": [70.6, 0.6], "10": [84.6, 0.3], "50": [88.7, 0.2]},
        "DM": {"1": [70.7, 0.6], "10": [83.5, 0.3], "50": [88.1, 0.6]},
        "M3D": {"1": None, "10": None, "50": None},
    },
    "whole_dataset": [93.5, 0.1],
    "sources": {
        "random": "as cited from Zhao, Mopuri & Bilen, Dataset Condensation with Gradient Matching (ICLR 2021); not re-checked",
        "herding": "as cited from Zhao, Mopuri & Bilen (ICLR 2021); not re-checked",
        "DC": "Zhao, Mopuri & Bilen (ICLR 2021); means checked against the VICO-UoE/DatasetCondensation README",
        "DSA": "Zhao & Bilen, Differentiable Siamese Augmentation (ICML 2021); means checked against the "
        "VICO-UoE/DatasetCondensation README",
        "DM": "Zhao & Bilen, Distribution Matching (WACV 2023), as cited by the VICO-UoE/DatasetCondensation "
        "README; not re-checked",
        "M3D": "Zhang et al., M3D (AAAI 2024): no Fashion-MNIST figures found",
        "whole_dataset": "as cited from Zhao, Mopuri & Bilen (ICLR 2021); not re-checked",
    },
}
PUBLISHED_COLUMNS = ("random", "herding", "DC", "DSA", "DM", "M3D")
#: Printed under the published table, so a reader of docs/benchmarks.md knows where its numbers come from.
PUBLISHED_CAPTION = (
    "Published: Fashion-MNIST, ConvNet-3, as usually cited from the DC (Zhao et al., ICLR 2021) and DSA "
    "(Zhao & Bilen, ICML 2021) tables and the DM figures of the VICO-UoE/DatasetCondensation README; the DC "
    "and DSA means were checked against that README, the other figures were not re-checked here. M3D "
    "(AAAI 2024): no Fashion-MNIST figures found (n/a). Factorised rows of this project train on "
    "ipc·factor² images per class from the same stored budget (see the table above): compare them with "
    "factorised methods (IDC, M3D's factor & up-sampling) rather than with plain DM."
)


@dataclass(frozen=True)
class Variant:
    """One method at one ipc: its label, a description, and the file and overrides it runs with
    (``config`` is their result before the seed is set)."""

    ipc: int
    method: str
    description: str
    path: Path
    overrides: tuple[str, ...]
    config: Config


# ---------------------------------------------------------------------------------------------
# Configs


def config_path(config_dir: Path, ipc: int) -> Path:
    return config_dir / CONFIG_PATTERN.format(ipc=ipc)


def describe(config: Config) -> str:
    """A short description of the config's own method, for the table's method column."""
    c = config.condense
    if c.method != "matching":
        return c.method
    return f"{c.discrepancy}, pool {c.pool_networks}, factor {c.factor}"


def load_config(path: Path, ipc: int, overrides: Sequence[str]) -> Config:
    """Load ``path`` with ``overrides``; its ``condense.ipc`` must be the ipc its file name says,
    so a mislabelled file never reports one size under another's name."""
    config = Config.load(path, list(overrides))
    if config.condense.ipc != ipc:
        raise FedcondError(f"{path} sets condense.ipc={config.condense.ipc} but its name says ipc {ipc}")
    return config


def variants(
    config_dir: Path, ipcs: Sequence[int], quick: bool, progress: bool, baseline_ipcs: Sequence[int] | None = None
) -> list[Variant]:
    """Every (ipc, method) to measure, baselines only at ``baseline_ipcs`` (None: at every ipc);
    loads and checks each config up front, so a bad file fails before hours of condensation."""
    common = (f"progress={str(progress).lower()}", *(QUICK if quick else ()))
    out = []
    for ipc in ipcs:
        path = config_path(config_dir, ipc)
        config = load_config(path, ipc, common)
        out.append(Variant(ipc, OWN_METHOD, describe(config), path, common, config))
        for baseline in BASELINES if baseline_ipcs is None or ipc in baseline_ipcs else ():
            overrides = (*common, f"condense.method={baseline}")
            out.append(Variant(ipc, baseline, baseline, path, overrides, load_config(path, ipc, overrides)))
    return out


# ---------------------------------------------------------------------------------------------
# Running


def measure(variant: Variant, seed: int, splits: DatasetSplits) -> dict[str, Any]:
    """Condense and evaluate one (ipc, method, seed); the row recorded in ``results.json``."""
    config = load_config(variant.path, variant.ipc, (*variant.overrides, f"seed={seed}"))
    synthetic = fedcond.condense(splits.train, config)
    result = fedcond.evaluate_synthetic(synthetic, splits.test, config)
    timings = synthetic.metadata["timings"]
    return {
        "ipc": variant.ipc,
        "method": variant.method,
        "description": variant.description,
        "seed": seed,
        "accuracies": list(result.accuracies),
        "accuracy_mean": result.accuracy_mean,
        "accuracy_std": result.accuracy_std,
        "condense_seconds": round(float(timings["condense_seconds"]), 2),
        "pool_seconds": round(float(timings.get("pool_seconds", 0.0)), 2),
        "iterations": config.condense.iterations if config.condense.method == "matching" else 0,
        "factor": synthetic.metadata.get("factor", 1),
        "images_per_class": len(synthetic.images) // synthetic.num_classes,
        "evaluate_seconds": result.seconds,
        "eval_runs": config.evaluation.runs,
        "eval_epochs": config.evaluation.epochs,
        "peak_memory_mb": peak_memory_mb(),
    }


def summarise(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per (ipc, method), in first-seen order: mean ± std (population) over seeds of the per-seed means."""
    groups: dict[tuple[int, str], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault((row["ipc"], row["method"]), []).append(row)
    summary = []
    for (ipc, method), group in groups.items():
        means = [r["accuracy_mean"] for r in group]
        summary.append(
            {
                "ipc": ipc,
                "method": method,
                "description": group[0]["description"],
                "seeds": [r["seed"] for r in group],
                "accuracy_mean": round(float(np.mean(means)), 2),
                "accuracy_std": round(float(np.std(means)), 2),
                "condense_seconds_mean": round(float(np.mean([r["condense_seconds"] for r in group])), 2),
                "iterations": group[0]["iterations"],
                "images_per_class": group[0]["images_per_class"],
                "eval_runs": group[0]["eval_runs"],
            }
        )
    return summary


def new_results(seeds: Sequence[int], quick: bool, dataset: str, command: str) -> dict[str, Any]:
    return {
        "benchmark": "quality",
        "date": dt.date.today().isoformat(),
        "machine": machine(),
        "code": code_version(),
        "dataset": dataset,
        "command": command,
        "seeds": list(seeds),
        "quick": quick,
        "complete": False,
        "rows": [],
        "summary": [],
        "published": PUBLISHED,
        "peak_memory_mb": peak_memory_mb(),
        "total_seconds": 0.0,
        "skipped": {},
    }


def run(
    config_dir: Path,
    ipcs: Sequence[int],
    seeds: Sequence[int],
    quick: bool,
    progress: bool,
    command: str,
    save: Callable[[dict[str, Any]], None],
    baseline_ipcs: Sequence[int] | None = None,
) -> dict[str, Any]:
    """Measure every (ipc, method, seed); ``save`` receives the results after every row, so an
    interrupted run keeps what it measured."""
    todo = variants(config_dir, ipcs, quick, progress, baseline_ipcs)
    results = new_results(seeds, quick, todo[0].config.dataset.name, command)
    splits_by_dataset: dict[str, DatasetSplits] = {}
    for variant in todo:
        config = variant.config
        name = config.dataset.name
        if name in results["skipped"]:
            continue
        if name not in splits_by_dataset:
            available, why = dataset_availability(config.dataset)
            if not available:
                results["skipped"][name] = why
                print(f"{PROG}: skipping {name}: {why}", file=sys.stderr)
                save(results)
                continue
            splits_by_dataset[name] = fedcond.load_dataset(config)
        for seed in seeds:
            row = measure(variant, seed, splits_by_dataset[name])
            results["rows"].append(row)
            results["summary"] = summarise(results["rows"])
            results["peak_memory_mb"] = peak_memory_mb()
            print(
                f"ipc={row['ipc']} {row['method']} seed={seed}: {row['accuracy_mean']:.2f}% "
                f"(condense {row['condense_seconds']:.0f} s, evaluate {row['evaluate_seconds']:.0f} s)",
                flush=True,
            )
            save(results)
    results["complete"] = True
    return results


# ---------------------------------------------------------------------------------------------
# Reporting


def _pm(mean: float, std: float) -> str:
    return f"{mean:.1f} ± {std:.1f}"


def _method_label(entry: dict[str, Any]) -> str:
    if entry["method"] == OWN_METHOD:
        return f"{OWN_METHOD} ({entry['description']})"
    return entry["method"]


def _summary(results: dict[str, Any]) -> list[dict[str, Any]]:
    return results.get("summary") or summarise(results["rows"])


def _accuracy(results: dict[str, Any], entry: dict[str, Any]) -> str:
    """With one seed, mean ± std over the evaluation networks; with several, mean ± std over
    seeds of each seed's mean."""
    if len(results["seeds"]) > 1:
        return _pm(entry["accuracy_mean"], entry["accuracy_std"])
    row = next(r for r in results["rows"] if (r["ipc"], r["method"]) == (entry["ipc"], entry["method"]))
    return _pm(row["accuracy_mean"], row["accuracy_std"])


def table(results: dict[str, Any]) -> str:
    """The measured rows, one per (ipc, method)."""
    several = len(results["seeds"]) > 1
    nets = max((len(r["accuracies"]) for r in results["rows"]), default=0)
    accuracy = f"accuracy % ({nets} net{'s' if nets != 1 else ''}"
    accuracy += f", std over {len(results['seeds'])} seeds)" if several else ")"
    lines = [
        f"| ipc | method | images/class trained | {accuracy} | condense s | iterations |",
        "|---|---|---|---|---|---|",
    ]
    for s in _summary(results):
        lines.append(
            f"| {s['ipc']} | {_method_label(s)} | {s['images_per_class']} | {_accuracy(results, s)} | "
            f"{s['condense_seconds_mean']:.1f} | {s['iterations'] or '-'} |"
        )
    return "\n".join(lines)


def best_measured(results: dict[str, Any]) -> dict[int, dict[str, Any]]:
    """This project's best condensed set per ipc (its own method's rows, the coresets aside)."""
    best: dict[int, dict[str, Any]] = {}
    for s in _summary(results):
        if s["method"] != OWN_METHOD:
            continue
        if s["ipc"] not in best or s["accuracy_mean"] > best[s["ipc"]]["accuracy_mean"]:
            best[s["ipc"]] = s
    return best


def published_table(results: dict[str, Any]) -> str:
    """Published accuracies per ipc beside this project's best measured one ("-": not measured)."""
    methods = PUBLISHED["methods"]
    best = best_measured(results)
    ipcs = sorted({int(k) for k in methods["random"]} | set(best))
    lines = [
        f"| ipc | {' | '.join(PUBLISHED_COLUMNS)} | fedcond (measured) |",
        "|---|" + "---|" * (len(PUBLISHED_COLUMNS) + 1),
    ]
    for ipc in ipcs:
        cells = []
        for name in PUBLISHED_COLUMNS:
            value = methods[name].get(str(ipc))
            cells.append("n/a" if value is None else _pm(*value))
        measured = best.get(ipc)
        cells.append("-" if measured is None else _accuracy(results, measured))
        lines.append(f"| {ipc} | {' | '.join(cells)} |")
    whole = PUBLISHED["whole_dataset"]
    lines += ["", f"Whole training set (published): {_pm(*whole)}. {PUBLISHED_CAPTION}"]
    return "\n".join(lines)


def report(results: dict[str, Any]) -> str:
    return table(results) + "\n\n" + published_table(results)


def update_readme(path: Path, results: dict[str, Any], command: str) -> None:
    """Replace the text between the benchmark-quality markers (markers kept) and nothing else."""
    lines = [
        *measured_header(results, command),
        table(results),
        "",
        published_table(results),
        *(f"\n{name} skipped: {why}" for name, why in results["skipped"].items()),
        *(() if results.get("complete", True) else (f"\n{INCOMPLETE_NOTE}",)),
        *((f"\n{QUICK_NOTE}",) if results.get("quick") else ()),
    ]
    replace_readme_block(path, README_START, README_END, lines)


# ---------------------------------------------------------------------------------------------
# Command line


def _ints(text: str, name: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise FedcondError(f"{name} must be comma-separated integers, got {text!r}") from None
    if not values:
        raise FedcondError(f"{name} is empty")
    return values


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=f"python -m simulations.{PROG}", description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/benchmark-quality", help="output folder")
    parser.add_argument("--ipcs", default=",".join(map(str, DEFAULT_IPCS)), help="default: %(default)s")
    parser.add_argument("--seeds", default=",".join(map(str, DEFAULT_SEEDS)), help="default: %(default)s")
    parser.add_argument("--config-dir", default=str(ROOT / "configs"), help=f"folder of {CONFIG_PATTERN}")
    parser.add_argument(
        "--baseline-ipcs",
        help="measure the random/herding coresets only at these ipcs (default: every ipc); a 3-network "
        "evaluation of a 500-image set takes ~20 minutes on 2 cores",
    )
    parser.add_argument("--quick", action="store_true", help="tiny settings on digits: checks the script only")
    parser.add_argument("--progress", action="store_true", help="show progress bars")
    add_update_readme_argument(parser, "tables")
    parser.add_argument(
        "--from-results", metavar="results.json", help="do not run: report (and --update-readme) an earlier run"
    )
    args = parser.parse_args(argv)
    arguments = sys.argv[1:] if argv is None else argv
    command = f"python -m simulations.{PROG} {shlex.join(arguments)}".strip()
    started = time.perf_counter()
    out = Path(args.out)

    def save(results: dict[str, Any]) -> None:
        results["total_seconds"] = round(time.perf_counter() - started, 1)
        atomic_write_json(out / "results.json", results)

    try:
        if args.from_results:
            try:
                results = json.loads(Path(args.from_results).read_text())
            except (OSError, ValueError) as exc:
                raise FedcondError(f"cannot read {args.from_results}: {exc}") from None
            command = results.get("command", command)
        else:
            ipcs, seeds = _ints(args.ipcs, "--ipcs"), _ints(args.seeds, "--seeds")
            out.mkdir(parents=True, exist_ok=True)
            baseline_ipcs = _ints(args.baseline_ipcs, "--baseline-ipcs") if args.baseline_ipcs else None
            results = run(Path(args.config_dir), ipcs, seeds, args.quick, args.progress, command, save, baseline_ipcs)
            results["peak_memory_mb"] = peak_memory_mb()
            save(results)
        if not results["rows"] and results["skipped"]:
            for name, why in results["skipped"].items():
                print(f"{PROG}: {name} unavailable, nothing measured: {why}")
            return 0
        print(report(results))
        if args.update_readme:
            update_readme(Path(args.update_readme), results, command)
    except FedcondError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
