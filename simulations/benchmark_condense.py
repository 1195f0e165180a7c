"""Benchmark: condensed sets (mmd-linear = DM, mmd-gaussian = M3D-style) against random and herding
coresets of the same size, over several seeds, on digits (ipc 1 and 10) and, when it is installed,
Fashion-MNIST (ipc 10 under the CPU budget set in its config).

    python -m simulations.benchmark_condense --out runs/benchmark-condense --update-readme

Writes ``OUT/results.json`` (every seed's accuracy and timing) and prints the table; with
``--update-readme [FILE]`` it replaces the table between the benchmark-condense markers of FILE
(default: ``docs/benchmarks.md``).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fedcond import Config, condense, evaluate_synthetic, load_dataset
from fedcond.data import dataset_availability
from fedcond.device import resolve_device
from fedcond.errors import FedcondError
from fedcond.io import atomic_write_json
from fedcond.report import peak_memory_mb
from simulations.reporting import add_update_readme_argument, machine, measured_header, replace_readme_block

ROOT = Path(__file__).resolve().parents[1]
README_START = "<!-- benchmark-condense:start -->"
README_END = "<!-- benchmark-condense:end -->"


@dataclass(frozen=True)
class Experiment:
    """One dataset at some sizes, starting from a shipped config."""

    config: str
    ipcs: tuple[int, ...]
    overrides: tuple[str, ...] = ()


EXPERIMENTS = (
    Experiment("configs/default.yaml", (1, 10)),
    # One network per seed: a 300-epoch ConvNet on 28x28 images takes ~1.5 minutes on 2 cores.
    Experiment("configs/fashion-mnist-ipc10.yaml", (10,), ("evaluation.runs=1",)),
)
DISCREPANCIES = ("mmd-linear", "mmd-gaussian")
BASELINES = ("random", "herding")
QUICK = ("condense.iterations=5", "evaluation.epochs=5", "evaluation.runs=1", "condense.batch_real=32")


def _variants(config: Config, ipc: int) -> list[tuple[str, Config]]:
    """The condensed methods and the baselines, all at ``ipc`` images per class."""
    c = dataclasses.replace(config.condense, ipc=ipc)
    out = [(d, dataclasses.replace(config, condense=dataclasses.replace(c, discrepancy=d))) for d in DISCREPANCIES]
    out += [(b, dataclasses.replace(config, condense=dataclasses.replace(c, method=b))) for b in BASELINES]
    return out


def run(
    seeds: list[int],
    quick: bool,
    progress: bool,
    datasets: set[str] | None,
    save: Callable[[dict[str, Any]], None],
) -> dict[str, Any]:
    """Run the grid; ``save`` receives the results after every finished row, so a long run that
    is interrupted keeps what it measured."""
    results: dict[str, Any] = {
        "benchmark": "condense",
        "date": dt.date.today().isoformat(),
        "machine": machine(),
        "seeds": seeds,
        "quick": quick,
        "complete": False,
        "rows": [],
        "skipped": {},
    }
    for experiment in EXPERIMENTS:
        overrides = [*experiment.overrides, f"progress={str(progress).lower()}", *(QUICK if quick else ())]
        base = Config.load(ROOT / experiment.config, overrides)
        if datasets is not None and base.dataset.name not in datasets:
            continue
        available, detail = dataset_availability(base.dataset)
        if not available:
            results["skipped"][base.dataset.name] = detail
            print(f"skipping {base.dataset.name}: {detail}", file=sys.stderr)
            continue
        splits = load_dataset(base.dataset)
        device = resolve_device(base.device)
        for ipc in experiment.ipcs:
            for label, variant in _variants(base, ipc):
                per_seed = []
                for seed in seeds:
                    config = dataclasses.replace(variant, seed=seed)
                    synthetic = condense(splits.train, config, device=device)
                    evaluation = evaluate_synthetic(synthetic, splits.test, config, device=device)
                    seconds = round(synthetic.metadata["timings"]["condense_seconds"], 2)
                    per_seed.append(
                        {
                            "seed": seed,
                            "accuracy_mean": evaluation.accuracy_mean,
                            "accuracies": evaluation.accuracies,
                            "condense_seconds": seconds,
                            "evaluate_seconds": evaluation.seconds,
                        }
                    )
                    print(
                        f"{base.dataset.name} ipc={ipc} {label} seed={seed}: {evaluation.accuracy_mean:.2f}% "
                        f"(condense {seconds:.0f} s, evaluate {evaluation.seconds:.0f} s)",
                        flush=True,
                    )
                accuracies = [s["accuracy_mean"] for s in per_seed]
                results["rows"].append(
                    {
                        "dataset": base.dataset.name,
                        "ipc": ipc,
                        "method": label,
                        "iterations": variant.condense.iterations if variant.condense.method == "matching" else 0,
                        "batch_real": variant.condense.batch_real,
                        "accuracy_mean": round(float(np.mean(accuracies)), 2),
                        "accuracy_std": round(float(np.std(accuracies)), 2),
                        "condense_seconds_mean": round(float(np.mean([s["condense_seconds"] for s in per_seed])), 2),
                        "eval_runs_per_seed": variant.evaluation.runs,
                        "eval_epochs": variant.evaluation.epochs,
                        "seeds": per_seed,
                    }
                )
                results["peak_memory_mb"] = peak_memory_mb()
                save(results)
    results["complete"] = True
    results["peak_memory_mb"] = peak_memory_mb()
    return results


def table(results: dict[str, Any]) -> str:
    """Markdown table: accuracy mean ± std over seeds (each seed's value: mean over its eval runs)."""
    lines = [
        "| dataset | ipc | method | iterations | accuracy % (mean ± std over seeds) | condense s |",
        "|---|---|---|---|---|---|",
    ]
    for r in results["rows"]:
        lines.append(
            f"| {r['dataset']} | {r['ipc']} | {r['method']} | {r['iterations'] or '-'} | "
            f"{r['accuracy_mean']:.1f} ± {r['accuracy_std']:.1f} | {r['condense_seconds_mean']:.1f} |"
        )
    return "\n".join(lines)


def update_readme(path: Path, results: dict[str, Any], command: str) -> None:
    lines = [
        *measured_header(results, command),
        table(results),
        *(f"\n{name} skipped: {why}" for name, why in results["skipped"].items()),
        *(() if results.get("complete", True) else ("\nThe run was stopped early: these are the rows it finished.",)),
    ]
    replace_readme_block(path, README_START, README_END, lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/benchmark-condense", help="output folder")
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds (default: %(default)s)")
    parser.add_argument("--quick", action="store_true", help="tiny settings: checks the script, measures nothing")
    add_update_readme_argument(parser)
    parser.add_argument("--progress", action="store_true", help="show progress bars")
    parser.add_argument("--datasets", help="only these datasets, comma-separated (default: all)")
    parser.add_argument(
        "--from-results", metavar="results.json", help="do not run: report (and --update-readme) an earlier run"
    )
    args = parser.parse_args(argv)
    try:
        seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    except ValueError:
        print(f"benchmark: error: --seeds must be integers, got {args.seeds!r}", file=sys.stderr)
        return 2
    datasets = {d.strip() for d in args.datasets.split(",") if d.strip()} if args.datasets else None
    out = Path(args.out)
    started = time.perf_counter()

    def save(results: dict[str, Any]) -> None:
        results["total_seconds"] = round(time.perf_counter() - started, 1)
        atomic_write_json(out / "results.json", results)

    try:
        if args.from_results:
            results = _read_results(Path(args.from_results))
        else:
            out.mkdir(parents=True, exist_ok=True)  # only a run writes: reprinting touches nothing
            results = run(seeds, args.quick, args.progress, datasets, save)
            save(results)
        print(table(results))
        if args.update_readme:
            command = "python -m simulations.benchmark_condense " + " ".join(
                a for a in (argv if argv is not None else sys.argv[1:])
            )
            update_readme(Path(args.update_readme), results, command.strip())
    except FedcondError as exc:
        print(f"benchmark: error: {exc}", file=sys.stderr)
        return 2
    return 0


def _read_results(path: Path) -> dict[str, Any]:
    """An earlier run's results.json; a missing or malformed file is a one-line error."""
    try:
        results = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise FedcondError(f"cannot read {path}: {exc.strerror or exc}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise FedcondError(f"{path} is not a results.json file: {str(exc).splitlines()[0]}") from None
    if not isinstance(results, dict) or "rows" not in results:
        raise FedcondError(f"{path} is not a results.json of benchmark_condense (no 'rows')")
    return results


if __name__ == "__main__":
    sys.exit(main())
