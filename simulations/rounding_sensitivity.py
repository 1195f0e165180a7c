"""Benchmark: how far a condensed set's accuracy moves when the real images move by rounding-sized noise.

    python -m simulations.rounding_sensitivity --out runs/rounding-sensitivity --update-readme

Two machines that differ only in their floating-point kernels (another CPU, another vector ISA)
compute each step of a condensation with different rounding. This benchmark stands in for them:
for each recipe it condenses digits at ``--ipc`` once from the training images as loaded and once
from each of ``--copies`` copies with independent Gaussian noise of standard deviation
``--noise`` (1e-6, about the rounding of a float32 pixel) added, and evaluates every set with the
config's protocol. A recipe whose figure moves by points here has a figure that no other machine
will reproduce seed for seed. Writes ``OUT/results.json`` after every recipe; with
``--update-readme [FILE]`` it replaces the block between the rounding-sensitivity markers of
FILE (default: ``docs/benchmarks.md``).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fedcond import Config, condense, evaluate_synthetic, load_dataset
from fedcond.data import ImageDataset
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
)

ROOT = Path(__file__).resolve().parents[1]
CONFIG = "configs/default.yaml"
README_START = "<!-- rounding-sensitivity:start -->"
README_END = "<!-- rounding-sensitivity:end -->"
QUICK = ("condense.iterations=3", "evaluation.epochs=3", "evaluation.runs=1", "condense.batch_real=16",
         "condense.pool_networks=2", "condense.real_target_params={train_steps: 2, snapshots: 1}")  # fmt: skip


@dataclass(frozen=True)
class Recipe:
    """A name and the ``--set`` items that make it from :data:`CONFIG`."""

    name: str
    overrides: tuple[str, ...]


#: The fresh-network loops the default used before, and the shipped recipe.
_FRESH = ("condense.real_target=fresh", "condense.pool_networks=0", "condense.real_target_params={}",
          "condense.init=real")  # fmt: skip
RECIPES = (
    Recipe("mmd-gaussian, fresh networks, real init", ("condense.discrepancy=mmd-gaussian", *_FRESH)),
    Recipe("mmd-linear, fresh networks, real init", ("condense.discrepancy=mmd-linear", *_FRESH)),
    Recipe("configs/default.yaml as shipped", ()),
)


def perturbed(data: ImageDataset, noise: float, seed: int) -> ImageDataset:
    """``data`` with independent ``N(0, noise²)`` added to every pixel, from generator seed ``seed``."""
    generator = torch.Generator().manual_seed(seed)
    return dataclasses.replace(data, images=data.images + noise * torch.randn(data.images.shape, generator=generator))


def run(
    ipc: int,
    copies: int,
    noise: float,
    quick: bool,
    save: Callable[[dict[str, Any]], None],
    recipes: Sequence[Recipe] = RECIPES,
) -> dict[str, Any]:
    results: dict[str, Any] = {
        "benchmark": "rounding-sensitivity",
        "date": dt.date.today().isoformat(),
        "machine": machine(),
        "code": code_version(),
        "config": CONFIG,
        "ipc": ipc,
        "copies": copies,
        "noise": noise,
        "quick": quick,
        "complete": False,
        "recipes": [],
    }
    for recipe in recipes:
        overrides = [*(QUICK if quick else ()), f"condense.ipc={ipc}", *recipe.overrides, "progress=false"]
        config = Config.load(ROOT / CONFIG, overrides)
        splits = load_dataset(config.dataset)
        device = resolve_device(config.device)
        accuracies = []
        for copy in range(copies + 1):  # copy 0: the images as loaded
            train = splits.train if copy == 0 else perturbed(splits.train, noise, seed=copy)
            synthetic = condense(train, config, device=device)
            accuracies.append(round(evaluate_synthetic(synthetic, splits.test, config, device=device).accuracy_mean, 2))
        results["recipes"].append(
            {
                "recipe": recipe.name,
                "overrides": [o for o in overrides if o != "progress=false"],
                "seed": config.seed,
                "accuracy_as_loaded": accuracies[0],
                "accuracy_perturbed": accuracies[1:],
                "range": round(max(accuracies) - min(accuracies), 2),
                "std": round(float(np.std(accuracies)), 2),
            }
        )
        print(f"{recipe.name}: {accuracies[0]:.2f} as loaded, perturbed {accuracies[1:]}", flush=True)
        results["peak_memory_mb"] = peak_memory_mb()
        save(results)
    results["complete"] = True
    return results


def table(results: dict[str, Any]) -> str:
    lines = [
        f"| recipe (digits ipc {results['ipc']}, seed {results['recipes'][0]['seed'] if results['recipes'] else '-'}) "
        f"| accuracy %, images as loaded | with {results['copies']} noise draws of σ = {results['noise']:g} | range | std |",
        "|---|---|---|---|---|",
    ]
    for r in results["recipes"]:
        perturbed_text = ", ".join(f"{a:.2f}" for a in r["accuracy_perturbed"])
        lines.append(f"| {r['recipe']} | {r['accuracy_as_loaded']:.2f} | {perturbed_text} | {r['range']:.2f} | {r['std']:.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/rounding-sensitivity", help="output folder")
    parser.add_argument("--ipc", type=int, default=1, help="images per class (default: %(default)s)")
    parser.add_argument("--copies", type=int, default=3, help="perturbed copies per recipe (default: %(default)s)")
    parser.add_argument("--noise", type=float, default=1e-6, help="noise standard deviation (default: %(default)s)")
    parser.add_argument("--quick", action="store_true", help="tiny settings: checks the script, measures nothing")
    add_update_readme_argument(parser)
    parser.add_argument("--from-results", metavar="results.json", help="do not run: report an earlier run")
    args = parser.parse_args(argv)
    if args.ipc < 1 or args.copies < 1 or not args.noise > 0:
        print("rounding_sensitivity: error: --ipc and --copies must be >= 1 and --noise > 0", file=sys.stderr)
        return 2
    out = Path(args.out)
    command, save = results_writer(out, "simulations.rounding_sensitivity", argv)

    try:
        if args.from_results:
            results = _read_results(Path(args.from_results))
        else:
            out.mkdir(parents=True, exist_ok=True)
            results = run(args.ipc, args.copies, args.noise, args.quick, save)
            save(results)
        print(table(results))
        if args.update_readme:
            lines = [*measured_header(results, results.get("command") or command), table(results)]
            if not results.get("complete", True):
                lines.append("\nThe run was stopped early: these are the recipes it finished.")
            replace_readme_block(Path(args.update_readme), README_START, README_END, lines)
    except FedcondError as exc:
        print(f"rounding_sensitivity: error: {exc}", file=sys.stderr)
        return 2
    return 0


def _read_results(path: Path) -> dict[str, Any]:
    return read_results(path, lambda r: r.get("benchmark") == "rounding-sensitivity", "rounding_sensitivity")


if __name__ == "__main__":
    sys.exit(main())
