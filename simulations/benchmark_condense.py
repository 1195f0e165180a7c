"""Benchmark: fedcond's shipped digits recipe, plain DM (mmd-linear) and M3D-style MMD
(mmd-gaussian) against random and herding coresets of the same size, over several seeds, on
scikit-learn's digits at ipc 1 and 10.

    python -m simulations.benchmark_condense --out runs/benchmark-condense --update-readme
    python -m simulations.benchmark_condense --methods fedcond --set condense.iterations=1000 --out runs/it1000

Every seed of every row records ``command``: the ``fedcond condense`` command that reproduces it,
built from the same ``--set`` items the benchmark loads its config with (so a row and its command
cannot drift apart); ``code`` records the commit. Writes ``OUT/results.json`` after every row and
prints the table; with ``--update-readme [FILE]`` it replaces the table between the
benchmark-condense markers of FILE (default: ``docs/benchmarks.md``). Fashion-MNIST against
coresets is measured by ``simulations/benchmark_quality.py``.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import shlex
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fedcond import Config, condense, evaluate_synthetic, load_dataset
from fedcond.data import dataset_availability
from fedcond.device import resolve_device
from fedcond.errors import FedcondError
from fedcond.report import peak_memory_mb
from simulations.reporting import (
    add_update_readme_argument,
    code_version,
    machine,
    measured_header,
    read_results,
    replace_readme_block,
    results_writer,
    targets_line,
)

ROOT = Path(__file__).resolve().parents[1]
README_START = "<!-- benchmark-condense:start -->"
README_END = "<!-- benchmark-condense:end -->"


@dataclass(frozen=True)
class Experiment:
    """One dataset at some sizes, starting from a shipped config."""

    config: str
    ipcs: tuple[int, ...]
    overrides: tuple[str, ...] = ()
    #: ``--set`` items of the command line, applied last in every row.
    extra: tuple[str, ...] = ()


@dataclass(frozen=True)
class Method:
    """One row kind: ``overrides`` turn the experiment's config into this method."""

    label: str
    overrides: tuple[str, ...]


EXPERIMENTS = (Experiment("configs/default.yaml", (1, 10)),)
OWN_METHOD = "fedcond"
#: The published loops: a fresh random network and real batch every iteration, from random real images.
REFERENCE_LOOP = (
    "condense.real_target=fresh",
    "condense.pool_networks=0",
    "condense.real_target_params={}",
    "condense.init=real",
    "condense.discrepancy_params={}",
)
METHODS = (
    Method(OWN_METHOD, ()),  # the config as shipped
    Method("mmd-linear", ("condense.discrepancy=mmd-linear", *REFERENCE_LOOP)),
    Method("mmd-gaussian", ("condense.discrepancy=mmd-gaussian", *REFERENCE_LOOP)),
    Method("random", ("condense.method=random",)),
    Method("herding", ("condense.method=herding",)),
)
#: ``--quick``: seconds; checks the script (and the rows' commands), measures nothing. The trained
#: pool shrinks with it; the reference rows replace these pool settings with their own.
QUICK = (
    "condense.iterations=5",
    "evaluation.epochs=5",
    "evaluation.runs=1",
    "condense.batch_real=32",
    "condense.pool_networks=2",
    "condense.real_target_params={train_steps: 4, snapshots: 2}",
)


def seed_overrides(experiment: Experiment, ipc: int, method: Method, seed: int, quick: bool) -> list[str]:
    """The ``--set`` items of one seed of one row, in the order they apply."""
    return [
        *experiment.overrides,
        *(QUICK if quick else ()),
        f"condense.ipc={ipc}",
        *method.overrides,
        *experiment.extra,
        f"seed={seed}",
    ]


def reproduce_command(experiment: Experiment, overrides: list[str]) -> str:
    """The ``fedcond condense`` command that condenses and evaluates this seed as the benchmark did."""
    return shlex.join(["fedcond", "condense", "--config", experiment.config, *(f"--set={o}" for o in overrides)])


def run(
    seeds: list[int],
    quick: bool,
    progress: bool,
    datasets: set[str] | None,
    save: Callable[[dict[str, Any]], None],
    methods: Sequence[Method] = METHODS,
    experiments: Sequence[Experiment] = EXPERIMENTS,
) -> dict[str, Any]:
    """Run the grid; ``save`` receives the results after every finished row, so a long run that
    is interrupted keeps what it measured."""
    results: dict[str, Any] = {
        "benchmark": "condense",
        "date": dt.date.today().isoformat(),
        "machine": machine(),
        "code": code_version(),
        "seeds": seeds,
        "quick": quick,
        "complete": False,
        "rows": [],
        "skipped": {},
    }
    for experiment in experiments:
        base = Config.load(ROOT / experiment.config, [*experiment.overrides, *(QUICK if quick else ())])
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
            for method in methods:
                per_seed = []
                for seed in seeds:
                    overrides = seed_overrides(experiment, ipc, method, seed, quick)
                    # Loaded from the very items the command records, so the row is what the command gives.
                    config = Config.load(ROOT / experiment.config, [*overrides, f"progress={str(progress).lower()}"])
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
                            "command": reproduce_command(experiment, overrides),
                        }
                    )
                    print(
                        f"{base.dataset.name} ipc={ipc} {method.label} seed={seed}: {evaluation.accuracy_mean:.2f}% "
                        f"(condense {seconds:.0f} s, evaluate {evaluation.seconds:.0f} s)",
                        flush=True,
                    )
                c = config.condense
                accuracies = [s["accuracy_mean"] for s in per_seed]
                results["rows"].append(
                    {
                        "dataset": base.dataset.name,
                        "ipc": ipc,
                        "method": method.label,
                        "condense_method": c.method,
                        "discrepancy": c.discrepancy if c.method == "matching" else None,
                        "real_target": c.real_target if c.method == "matching" else None,
                        "init": c.init if c.method == "matching" else None,
                        "overrides": [*method.overrides, *experiment.extra],
                        "iterations": c.iterations if c.method == "matching" else 0,
                        "batch_real": c.batch_real,
                        "accuracy_mean": round(float(np.mean(accuracies)), 2),
                        "accuracy_std": round(float(np.std(accuracies)), 2),
                        "condense_seconds_mean": round(float(np.mean([s["condense_seconds"] for s in per_seed])), 2),
                        "eval_runs_per_seed": config.evaluation.runs,
                        "eval_epochs": config.evaluation.epochs,
                        "seeds": per_seed,
                    }
                )
                results["peak_memory_mb"] = peak_memory_mb()
                save(results)
    results["complete"] = True
    results["peak_memory_mb"] = peak_memory_mb()
    results["checks"] = checks(results)
    return results


def table(results: dict[str, Any]) -> str:
    """Markdown table: accuracy mean ± std over seeds (each seed's value: mean over its eval runs)."""
    lines = [
        "| dataset | ipc | method | recipe | iterations | accuracy % (mean ± std over seeds) | condense s |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results["rows"]:
        lines.append(
            f"| {r['dataset']} | {r['ipc']} | {r['method']} | {_recipe(r)} | {r['iterations'] or '-'} | "
            f"{r['accuracy_mean']:.1f} ± {r['accuracy_std']:.1f} | {r['condense_seconds_mean']:.1f} |"
        )
    return "\n".join(lines)


def _recipe(row: dict[str, Any]) -> str:
    """What a matching row matched, against what, from which images; ``-`` for coresets (and old results)."""
    if not row.get("discrepancy"):
        return "-"
    return f"{row['discrepancy']}, {row['real_target']} target, {row['init']} init"


#: The Quality issue's digits targets: (name, ipc, baseline, points the shipped recipe must be above it).
TARGETS = (
    ("digits_ipc10_vs_random", 10, "random", 3.0),
    ("digits_ipc10_vs_herding", 10, "herding", 1.5),
    ("digits_ipc1_vs_herding", 1, "herding", 3.0),
    # The shipped default must never lose to herding.
    ("digits_ipc1_not_below_herding", 1, "herding", 0.0),
    ("digits_ipc10_not_below_herding", 10, "herding", 0.0),
)
#: Fewer seeds than this and a check is incomplete, hence not met.
TARGET_SEEDS = 3


def checks(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each target: the ``fedcond`` row's mean minus the baseline's, over seeds both rows ran.

    A check needs both rows with at least :data:`TARGET_SEEDS` seeds; otherwise it is reported
    with ``complete: false`` and ``met: false``, never as met.
    """
    rows = {(r["dataset"], r["ipc"], r["method"]): r for r in results["rows"]}
    out: dict[str, dict[str, Any]] = {}
    for name, ipc, baseline, margin in TARGETS:
        own, other = rows.get(("digits", ipc, OWN_METHOD)), rows.get(("digits", ipc, baseline))
        target = f"fedcond - {baseline} >= {margin:+.1f} points at ipc {ipc}"
        if own is None or other is None:
            out[name] = {"target": target, "value": None, "complete": False, "met": False}
            continue
        seeds = min(len(own["seeds"]), len(other["seeds"]))
        gap = round(own["accuracy_mean"] - other["accuracy_mean"], 2)
        complete = seeds >= TARGET_SEEDS and not results.get("quick")
        out[name] = {"target": target, "value": gap, "seeds": seeds, "complete": complete, "met": complete and gap >= margin}
    return out


def _brief(check: dict[str, Any]) -> str:
    if check["value"] is None:
        return "not measured"
    return f"{check['value']:+.2f}" + ("" if check["complete"] else f", {check.get('seeds', 0)} seeds: not a result")


def update_readme(path: Path, results: dict[str, Any], command: str) -> None:
    checked = checks(results)
    lines = [
        *measured_header(results, command),
        table(results),
        "",
        targets_line(checked, _brief),
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
        "--methods", help=f"only these rows, comma-separated (default: all of {', '.join(m.label for m in METHODS)})"
    )
    parser.add_argument(
        "--set",
        metavar="KEY=VALUE",
        action="append",
        default=[],
        dest="overrides",
        help="override a config key in every row, after the row's own (repeatable; recorded in each command)",
    )
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
    command, save = results_writer(out, "simulations.benchmark_condense", argv)

    try:
        if args.from_results:
            results = _read_results(Path(args.from_results))
        else:
            out.mkdir(parents=True, exist_ok=True)  # only a run writes: reprinting touches nothing
            methods = _chosen_methods(args.methods)
            experiments = [dataclasses.replace(e, extra=tuple(args.overrides)) for e in EXPERIMENTS]
            results = run(seeds, args.quick, args.progress, datasets, save, methods=methods, experiments=experiments)
            save(results)
        results["checks"] = checks(results)  # recomputed: an earlier run's file may predate a target
        print(table(results))
        print(targets_line(results["checks"], _brief))
        if args.update_readme:
            # The command that measured the figures: an earlier run's own, not this reprint's.
            update_readme(Path(args.update_readme), results, results.get("command") or command)
    except FedcondError as exc:
        print(f"benchmark: error: {exc}", file=sys.stderr)
        return 2
    return 0


def _chosen_methods(names: str | None) -> list[Method]:
    """The rows ``--methods`` names, in the benchmark's order; an unknown name is a one-line error."""
    if not names:
        return list(METHODS)
    wanted = {n.strip() for n in names.split(",") if n.strip()}
    unknown = sorted(wanted - {m.label for m in METHODS})
    if unknown:
        raise FedcondError(f"--methods: unknown {', '.join(unknown)}; choose from {', '.join(m.label for m in METHODS)}")
    return [m for m in METHODS if m.label in wanted]


def _read_results(path: Path) -> dict[str, Any]:
    return read_results(path, lambda r: "rows" in r, "benchmark_condense (no 'rows')")


if __name__ == "__main__":
    sys.exit(main())
