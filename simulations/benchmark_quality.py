"""Benchmark: the quality of this project's shipped Fashion-MNIST recipes at ipc 1, 10 and 50, next to
random and herding coresets of the same size and to the published numbers of the field.

    python -m simulations.benchmark_quality --seeds 0,1,2 --out runs/benchmark-quality --update-readme
    python -m simulations.benchmark_quality --ablation --seeds 0,1,2 --out runs/quality-ablation

Each ipc condenses with ``configs/fashion-mnist-ipc{ipc}.yaml`` and evaluates with the field's
protocol (the config's ``evaluation`` section: 3 fresh ConvNet-3, 300 epochs, DSA); the random and
herding rows use the same config with ``condense.method`` replaced, so all three are measured the
same way. ``--ablation`` measures, at ipc 10, the recipe's techniques one at a time (added to plain
DM, removed from the recipe, and the techniques tried but not kept); ``--steps`` runs some of them, so
the ablation can be split across runs, and ``--methods`` chooses the rows at ``--ipcs``. Writes ``OUT/results.json``
after every row, each condensed set to ``OUT/sets/``, and prints the tables and the targets' checks;
``--from-results A B ...`` merges earlier runs (later files win per row); with
``--update-readme [FILE]`` it replaces the blocks between the benchmark-quality markers of FILE
(default: ``docs/benchmarks.md``).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import dataclasses
import datetime as dt
import io
import shlex
import sys
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
from fedcond.models import MODELS
from fedcond.report import peak_memory_mb
from simulations.reporting import (
    add_update_readme_argument,
    code_version,
    machine,
    measured_header,
    read_results,
    replace_readme_block,
    results_writer,
    run_codes,
    run_machines,
    targets_line,
)

ROOT = Path(__file__).resolve().parents[1]
PROG = "benchmark_quality"
README_START = "<!-- benchmark-quality:start -->"
README_END = "<!-- benchmark-quality:end -->"
ABLATION_START = "<!-- benchmark-quality-ablation:start -->"
ABLATION_END = "<!-- benchmark-quality-ablation:end -->"
DEFAULT_IPCS = (1, 10, 50)
DEFAULT_SEEDS = (0, 1, 2)
#: One config per ipc, in ``--config-dir``.
CONFIG_PATTERN = "fashion-mnist-ipc{ipc}.yaml"
#: The row of the config's own method, and the coresets measured beside it.
OWN_METHOD = "fedcond"
BASELINES = ("random", "herding")
#: Every row a run can measure at one ipc, in table order (``--methods`` chooses among them).
METHODS = (OWN_METHOD, *BASELINES)
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

#: The quality issue's targets: ipc -> the least mean accuracy (%) over condensation seeds.
ACCURACY_TARGETS = {1: 82.0, 10: 86.5, 50: 89.5}
#: Condensation per set, all preparation included (pool, trained networks, initial selection).
BUDGET_SECONDS = 600.0
#: Peak resident memory of the process per row.
MEMORY_LIMIT_MB = 4096.0
#: Fewer condensation seeds than this and a check is incomplete, hence not met.
TARGET_SEEDS = 3
TARGET_DATASET = "fashion-mnist"
ABLATION_IPC = 10
#: Extra architectures of ``--cross-models`` (the issue's cross-architecture rows).
CROSS_MODELS_HELP = "e.g. mlp,lenet,resnet18"

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
        # Means only: as the quality issue cites them from the DANCE paper's comparison table.
        "IDC": {"1": [81.0, None], "10": [86.0, None], "50": [86.2, None]},
        "DREAM": {"1": [81.3, None], "10": [86.4, None], "50": [86.8, None]},
        "DANCE": {"1": [81.5, None], "10": [86.3, None], "50": [86.9, None]},
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
        "IDC": "Kim et al., Dataset Condensation via Efficient Synthetic-Data Parameterization (ICML 2022), "
        "factorised, as cited by DANCE (Zhang et al., IJCAI 2024); means only, not re-checked",
        "DREAM": "Liu et al., DREAM (ICCV 2023), as cited by DANCE (IJCAI 2024); means only, not re-checked",
        "DANCE": "Zhang et al., DANCE: Dual-View Distribution Alignment for Dataset Condensation (IJCAI 2024), "
        "factorised images and a pool of trained networks; means only, not re-checked",
        "whole_dataset": "as cited from Zhao, Mopuri & Bilen (ICLR 2021); not re-checked",
    },
}
PUBLISHED_COLUMNS = ("random", "herding", "DC", "DSA", "DM", "M3D", "IDC", "DREAM", "DANCE")
#: Printed under the published table, so a reader of docs/benchmarks.md knows where its numbers come from.
PUBLISHED_CAPTION = (
    "Published: Fashion-MNIST, ConvNet-3, as usually cited from the DC (Zhao et al., ICLR 2021) and DSA "
    "(Zhao & Bilen, ICML 2021) tables and the DM figures of the VICO-UoE/DatasetCondensation README; the DC "
    "and DSA means were checked against that README, the other figures were not re-checked here. M3D "
    "(AAAI 2024): no Fashion-MNIST figures found (n/a). IDC (ICML 2022), DREAM (ICCV 2023) and DANCE "
    "(IJCAI 2024): means as the DANCE paper's table gives them, not re-checked here. Factorised rows of this project train on "
    "ipc·factor² images per class from the same stored budget (see the table above): compare them with "
    "factorised methods (IDC, M3D's factor & up-sampling) rather than with plain DM."
)


@dataclass(frozen=True)
class Technique:
    """One technique of the ablation: the overrides that turn it on and off in an ipc-10 config.

    A technique is part of the shipped recipe when turning it on leaves the recipe unchanged."""

    name: str
    description: str
    on: tuple[str, ...]
    off: tuple[str, ...]


#: The ablation's techniques, in the order they are added to plain DM.
TECHNIQUES = (
    Technique("factor 2", "2x2 tiles per stored image (IDC's factorisation)", ("condense.factor=2",), ("condense.factor=1",)),
    Technique("herding init", "start from the herding coreset", ("condense.init=herding",), ("condense.init=real",)),
    Technique(
        "mmd-gaussian-linear",
        "M3D's Gaussian kernels plus DM's linear term",
        ("condense.discrepancy=mmd-gaussian-linear",),
        ("condense.discrepancy=mmd-linear",),
    ),
    Technique(
        "trained pool",
        "statistics of 8 briefly trained networks (60 steps, 4 snapshots) instead of 32 random ones",
        ("condense.real_target=trained-pool", "condense.pool_networks=8",
         "condense.real_target_params={train_steps: 60, snapshots: 4}"),
        ("condense.real_target=auto", "condense.pool_networks=32", "condense.real_target_params={}"),
    ),  # fmt: skip
)


@dataclass(frozen=True)
class Variant:
    """One method at one ipc: its label, a description, and the file and overrides it runs with
    (``config`` is their result before the seed is set). Ablation steps also carry their ``step``
    label and ``kind`` (``base``, ``added``, ``removed`` or ``tried``)."""

    ipc: int
    method: str
    description: str
    path: Path
    overrides: tuple[str, ...]
    config: Config
    step: str | None = None
    kind: str | None = None


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
    config_dir: Path,
    ipcs: Sequence[int],
    quick: bool,
    progress: bool,
    baseline_ipcs: Sequence[int] | None = None,
    methods: Sequence[str] = METHODS,
) -> list[Variant]:
    """Every (ipc, method) to measure among ``methods``, baselines only at ``baseline_ipcs`` (None:
    at every ipc); loads and checks each config up front, so a bad file fails before hours of
    condensation."""
    common = (f"progress={str(progress).lower()}", *(QUICK if quick else ()))
    out = []
    for ipc in ipcs:
        path = config_path(config_dir, ipc)
        config = load_config(path, ipc, common)
        if OWN_METHOD in methods:
            out.append(Variant(ipc, OWN_METHOD, describe(config), path, common, config))
        for baseline in BASELINES if baseline_ipcs is None or ipc in baseline_ipcs else ():
            if baseline not in methods:
                continue
            overrides = (*common, f"condense.method={baseline}")
            out.append(Variant(ipc, baseline, baseline, path, overrides, load_config(path, ipc, overrides)))
    return out


@dataclass(frozen=True)
class AblationPlan:
    """The ablation's steps to measure and, for the table, which steps are the same set."""

    steps: list[Variant]
    #: Step label -> the label of the earlier step (or ``OWN_METHOD``: the recipe) with its config.
    same_as: dict[str, str]
    #: Labels in table order, with their kind.
    order: list[tuple[str, str]]
    kept: list[str]


def ablation_plan(config_dir: Path, quick: bool, progress: bool) -> AblationPlan:
    """The recipe's techniques added one at a time to plain DM (every kept technique off), each
    removed from the recipe, and each technique not kept added to the recipe. A step whose config
    equals an earlier one's (or the recipe's, measured by the ipc-10 ``fedcond`` row) is not run twice."""
    common = (f"progress={str(progress).lower()}", *(QUICK if quick else ()))
    path = config_path(config_dir, ABLATION_IPC)
    recipe = load_config(path, ABLATION_IPC, common)

    def load(overrides: Sequence[str]) -> Config:
        return load_config(path, ABLATION_IPC, (*common, *overrides))

    kept = [t for t in TECHNIQUES if load(t.on) == recipe]
    wanted: list[tuple[str, str, tuple[str, ...]]] = []
    base = tuple(o for t in kept for o in t.off)
    wanted.append(("plain DM (no technique)" if kept else "recipe", "base", base))
    for i, technique in enumerate(kept):
        later = tuple(o for t in kept[i + 1 :] for o in t.off)
        wanted.append((f"+ {technique.name}", "added", later))
    wanted += [(f"- {t.name}", "removed", t.off) for t in kept]
    wanted += [(f"+ {t.name} (not kept)", "tried", t.on) for t in TECHNIQUES if t not in kept]
    steps: list[Variant] = []
    seen: list[tuple[Config, str]] = [(recipe, OWN_METHOD)]
    same_as: dict[str, str] = {}
    for label, kind, overrides in wanted:
        config = load(overrides)
        earlier = next((name for other, name in seen if other == config), None)
        if earlier is not None:
            same_as[label] = earlier
            continue
        seen.append((config, label))
        variant = Variant(ABLATION_IPC, "ablation", label, path, (*common, *overrides), config, label, kind)
        steps.append(variant)
    return AblationPlan(steps, same_as, [(label, kind) for label, kind, _ in wanted], [t.name for t in kept])


# ---------------------------------------------------------------------------------------------
# Running


def _slug(text: str) -> str:
    slug = "".join(ch if ch.isalnum() else "-" for ch in text.lower()).strip("-")
    while "--" in slug:
        slug = slug.replace("--", "-")
    return slug


def step_name(variant: Variant) -> str:
    """An ablation step's name for ``--steps`` and file names: its kind and label, e.g.
    ``added-factor-2`` (the kind tells ``+ factor 2`` from ``- factor 2``)."""
    return f"{variant.kind}-{_slug(variant.step or '')}"


def set_name(variant: Variant, seed: int) -> str:
    """The file (in ``OUT/sets/``) that keeps a row's condensed set, for later cross-architecture runs."""
    name = step_name(variant) if variant.step is not None else _slug(variant.method)
    return f"ipc{variant.ipc}-{name}-seed{seed}.pt"


def chosen_steps(plan: AblationPlan, names: Sequence[str] | None) -> list[Variant]:
    """The plan's steps that ``names`` (see :func:`step_name`) choose, in plan order; all with None.
    An unknown name is an error listing the plan's steps."""
    if names is None:
        return list(plan.steps)
    known = {step_name(v): v for v in plan.steps}
    if not names:
        raise FedcondError(f"--steps is empty; this plan's steps: {', '.join(known)}")
    unknown = [n for n in names if n not in known]
    if unknown:
        raise FedcondError(f"--steps: unknown {', '.join(unknown)}; this plan's steps: {', '.join(known)}")
    return [v for name, v in known.items() if name in names]


def cross_evaluate(
    synthetic: fedcond.SyntheticSet, splits: DatasetSplits, config: Config, models: Sequence[str], runs: int | None
) -> dict[str, dict[str, Any]]:
    """The set's accuracy under other architectures (same protocol, ``runs`` networks each)."""
    if runs is not None:
        config = dataclasses.replace(config, evaluation=dataclasses.replace(config.evaluation, runs=runs))
    out = {}
    for model in models:
        result = fedcond.evaluate_synthetic(synthetic, splits.test, config, model=model)
        out[model] = {
            "accuracies": list(result.accuracies),
            "accuracy_mean": result.accuracy_mean,
            "seconds": result.seconds,
        }
    return out


def measure(
    variant: Variant,
    seed: int,
    splits: DatasetSplits,
    sets_dir: Path | None = None,
    cross_models: Sequence[str] = (),
    cross_runs: int | None = None,
) -> dict[str, Any]:
    """Condense and evaluate one (ipc, method, seed); the row recorded in ``results.json``.

    Parameters
    ----------
    sets_dir
        Save the condensed set there (the row's ``set`` names the file).
    cross_models
        Also evaluate the set with these architectures (the row's ``cross``).
    cross_runs
        Networks per cross architecture (default: the config's ``evaluation.runs``).
    """
    config = load_config(variant.path, variant.ipc, (*variant.overrides, f"seed={seed}"))
    synthetic = fedcond.condense(splits.train, config)
    extra: dict[str, Any] = {}
    if variant.step is not None:
        extra.update(step=variant.step, kind=variant.kind)
    if sets_dir is not None:
        # Saved before the evaluation, so a run stopped while evaluating keeps the set.
        sets_dir.mkdir(parents=True, exist_ok=True)
        extra["set"] = set_name(variant, seed)
        synthetic.save(sets_dir / extra["set"])
    result = fedcond.evaluate_synthetic(synthetic, splits.test, config)
    timings = synthetic.metadata["timings"]
    if cross_models:
        extra["cross"] = cross_evaluate(synthetic, splits, config, cross_models, cross_runs)
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
        **extra,
    }


def summarise(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per (ipc, method) (ablation rows: per step), in first-seen order: mean ± std (population)
    over seeds of the per-seed means, the mean and slowest condensation, and each cross
    architecture's mean over seeds."""
    groups: dict[tuple[int, str], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault((row["ipc"], row.get("step") or row["method"]), []).append(row)
    summary = []
    for (ipc, _), group in groups.items():
        means = [r["accuracy_mean"] for r in group]
        seconds = [r["condense_seconds"] for r in group]
        entry = {
            "ipc": ipc,
            "method": group[0]["method"],
            "description": group[0]["description"],
            "seeds": [r["seed"] for r in group],
            "accuracy_mean": round(float(np.mean(means)), 2),
            "accuracy_std": round(float(np.std(means)), 2),
            "condense_seconds_mean": round(float(np.mean(seconds)), 2),
            "condense_seconds_max": round(float(np.max(seconds)), 2),
            "iterations": group[0]["iterations"],
            "images_per_class": group[0]["images_per_class"],
            "eval_runs": group[0]["eval_runs"],
            "peak_memory_mb": max(r["peak_memory_mb"] for r in group),
        }
        if "step" in group[0]:
            entry.update(step=group[0]["step"], kind=group[0]["kind"])
        models = [m for m in group[0].get("cross", {}) if all(m in r.get("cross", {}) for r in group)]
        if models:
            entry["cross"] = {
                m: round(float(np.mean([r["cross"][m]["accuracy_mean"] for r in group])), 2) for m in models
            }
        summary.append(entry)
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
        "ablation_rows": [],
        "ablation": [],
        "checks": {},
        "published": PUBLISHED,
        "peak_memory_mb": peak_memory_mb(),
        "total_seconds": 0.0,
        "skipped": {},
    }


@dataclass(frozen=True)
class RunOptions:
    """How ``run`` measures: seeds, settings, where sets go, and the cross architectures."""

    seeds: Sequence[int]
    quick: bool = False
    progress: bool = False
    baseline_ipcs: Sequence[int] | None = None
    methods: Sequence[str] = METHODS
    ablation: bool = False
    #: Ablation steps to run (:func:`step_name`); None: every step.
    steps: Sequence[str] | None = None
    sets_dir: Path | None = None
    cross_models: Sequence[str] = ()
    cross_runs: int | None = None


def planned_variants(
    config_dir: Path, ipcs: Sequence[int], options: RunOptions
) -> tuple[list[Variant], AblationPlan | None]:
    """What a run measures, in order: the ablation's chosen steps (and their plan) with
    ``options.ablation``, else every chosen (ipc, method)."""
    if options.ablation:
        plan = ablation_plan(config_dir, options.quick, options.progress)
        return chosen_steps(plan, options.steps), plan
    todo = variants(config_dir, ipcs, options.quick, options.progress, options.baseline_ipcs, options.methods)
    return todo, None


RowKey = tuple[int, str, str | None, int]


def row_key(row: dict[str, Any]) -> RowKey:
    """What identifies a row across runs: its ipc, method, ablation step and seed."""
    return (row["ipc"], row["method"], row.get("step"), row["seed"])


def planned_rows(results: dict[str, Any]) -> set[RowKey] | None:
    """The rows a run set out to measure: its recorded ``planned`` list, else (results written
    before runs recorded it) what its command lines plan with today's configs; None if unknown."""
    if "planned" in results:
        return {(ipc, method, step, seed) for ipc, method, step, seed in results["planned"]}
    keys: set[RowKey] = set()
    for line in results.get("command", "").splitlines():
        planned = _planned_by_command(line)
        if planned is None:
            return None
        keys |= planned
    return keys


def _planned_by_command(line: str) -> set[RowKey] | None:
    """The rows one recorded command line plans (none for a reprint or a --cross-from run);
    None if the line cannot be read as this benchmark's command."""
    words = shlex.split(line)
    if words[:3] != ["python", "-m", f"simulations.{PROG}"]:
        return None
    try:
        with contextlib.redirect_stderr(io.StringIO()):  # a line argparse rejects is unknown, not an error
            args = build_parser().parse_args(words[3:])
        if args.from_results or args.cross_from:
            return set()
        options = run_options(args, Path(args.out or "runs/benchmark-quality"))
        todo, _ = planned_variants(Path(args.config_dir), _ints(args.ipcs, "--ipcs"), options)
    except (FedcondError, OSError, SystemExit):  # argparse exits on a line it cannot parse
        return None
    return {(v.ipc, v.method, v.step, seed) for v in todo for seed in options.seeds}


def run(
    config_dir: Path,
    ipcs: Sequence[int],
    options: RunOptions,
    command: str,
    save: Callable[[dict[str, Any]], None],
) -> dict[str, Any]:
    """Measure every (ipc, method, seed), or with ``options.ablation`` every ablation step and
    seed; ``save`` receives the results after every row, so an interrupted run keeps what it measured."""
    todo, plan = planned_variants(config_dir, ipcs, options)
    dataset = todo[0].config.dataset if todo else None
    results = new_results(options.seeds, options.quick, dataset.name if dataset else "", command)
    results["planned"] = [[v.ipc, v.method, v.step, seed] for v in todo for seed in options.seeds]
    if plan is not None:
        results["ablation_plan"] = {"kept": plan.kept, "order": plan.order, "same_as": plan.same_as}
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
        for seed in options.seeds:
            row = measure(variant, seed, splits_by_dataset[name], options.sets_dir, options.cross_models, options.cross_runs)
            key = "ablation_rows" if variant.step is not None else "rows"
            results[key].append(row)
            refresh(results)
            print(
                f"ipc={row['ipc']} {row.get('step') or row['method']} seed={seed}: {row['accuracy_mean']:.2f}% "
                f"(condense {row['condense_seconds']:.0f} s, evaluate {row['evaluate_seconds']:.0f} s)",
                flush=True,
            )
            save(results)
    results["complete"] = True
    return results


def add_cross(
    results: dict[str, Any],
    sets_dir: Path,
    config_dir: Path,
    models: Sequence[str],
    runs: int | None,
    save: Callable[[dict[str, Any]], None],
) -> dict[str, Any]:
    """Evaluate the saved sets of an earlier run with more architectures (the rows' ``cross``).

    Each set is evaluated under its ipc's shipped config at the row's seed (the dataset, the
    protocol and its evaluation seeds are the same for every method and ablation step; a
    ``--quick`` run's sets under the quick settings); a row that
    already has a model's figures keeps them. ``save`` receives the results after every set.
    """
    if not models:
        raise FedcondError("--cross-from needs --cross-models")
    results = copy.deepcopy(results)
    splits: DatasetSplits | None = None
    for row in (*results["rows"], *results.get("ablation_rows", [])):
        missing = [m for m in models if m not in row.get("cross", {})]
        if not missing:
            continue
        if "set" not in row:
            raise FedcondError(f"row ipc {row['ipc']} {row.get('step') or row['method']} seed {row['seed']} kept no set")
        overrides = ("progress=false", *(QUICK if results.get("quick") else ()), f"seed={row['seed']}")
        config = load_config(config_path(config_dir, row["ipc"]), row["ipc"], overrides)
        if splits is None:
            splits = fedcond.load_dataset(config)
        synthetic = fedcond.SyntheticSet.load(sets_dir / row["set"], num_classes=splits.test.num_classes)
        row.setdefault("cross", {}).update(cross_evaluate(synthetic, splits, config, missing, runs))
        print(f"ipc={row['ipc']} {row.get('step') or row['method']} seed={row['seed']}: " + ", ".join(
            f"{m} {row['cross'][m]['accuracy_mean']:.2f}%" for m in missing), flush=True)  # fmt: skip
        refresh(results)
        save(results)
    return results


def refresh(results: dict[str, Any], *, live: bool = True) -> None:
    """Recompute what is derived from the rows: summaries, checks and the peak memory (``live``:
    this process's peak too; a reprint reports the rows' own)."""
    results["summary"] = summarise(results["rows"])
    results["ablation"] = summarise(results.get("ablation_rows", []))
    results["checks"] = checks(results)
    peaks = [r["peak_memory_mb"] for r in (*results["rows"], *results.get("ablation_rows", []))]
    if live:
        peaks.append(peak_memory_mb())
    if peaks:
        results["peak_memory_mb"] = max(peaks)


def checks(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The issue's targets, each ``{target, value, seeds, complete, met}``.

    Per ipc: the recipe's mean accuracy over seeds, and its slowest condensation against
    :data:`BUDGET_SECONDS`; and the peak memory of every row against :data:`MEMORY_LIMIT_MB`. A
    check needs :data:`TARGET_SEEDS` seeds of a full (not ``--quick``) Fashion-MNIST run;
    otherwise ``complete`` is false and it is never met.
    """
    full = not results.get("quick") and results.get("dataset") == TARGET_DATASET
    summary = {(s["ipc"], s["method"]): s for s in summarise(results["rows"])}
    out: dict[str, dict[str, Any]] = {}
    for ipc, least in ACCURACY_TARGETS.items():
        own = summary.get((ipc, OWN_METHOD))
        seeds = len(own["seeds"]) if own else 0
        complete = full and seeds >= TARGET_SEEDS
        accuracy = own["accuracy_mean"] if own else None
        slowest = own["condense_seconds_max"] if own else None
        out[f"fashion-mnist_ipc{ipc}_accuracy"] = {
            "target": f">= {least:.1f} % (mean over {TARGET_SEEDS} condensation seeds)",
            "value": accuracy, "seeds": seeds, "complete": complete,
            "met": complete and accuracy is not None and accuracy >= least,
        }  # fmt: skip
        out[f"fashion-mnist_ipc{ipc}_condense_budget"] = {
            "target": f"<= {BUDGET_SECONDS:.0f} s of condensation per set (slowest seed)",
            "value": slowest, "seeds": seeds, "complete": complete,
            "met": complete and slowest is not None and slowest <= BUDGET_SECONDS,
        }  # fmt: skip
    rows = [*results["rows"], *results.get("ablation_rows", [])]
    peak = max((r["peak_memory_mb"] for r in rows), default=None)
    out["peak_memory_per_row"] = {
        "target": f"<= {MEMORY_LIMIT_MB:.0f} MB peak RSS", "value": peak, "seeds": len(results.get("seeds", [])),
        "complete": full and bool(rows), "met": full and peak is not None and peak <= MEMORY_LIMIT_MB,
    }  # fmt: skip
    return out


def merge(runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """One report from several runs (e.g. the ipcs and the ablation run by separate processes):
    rows united, a later file's row replacing an earlier one's of the same ipc, method, step and seed."""
    if len(runs) == 1:
        merged = copy.deepcopy(runs[0])
    else:
        merged = copy.deepcopy(runs[0])
        for key in ("rows", "ablation_rows"):
            by_key: dict[tuple[Any, ...], dict[str, Any]] = {}
            for results in runs:
                for row in results.get(key, []):
                    by_key[(row["ipc"], row["method"], row.get("step"), row["seed"])] = row
            merged[key] = list(by_key.values())
        merged["seeds"] = sorted({s for r in runs for s in r.get("seeds", [])})
        # Per line: a --cross-from run's command repeats the command of the run that made its sets.
        merged["command"] = "\n".join(dict.fromkeys(line for r in runs for line in r.get("command", "").splitlines()))
        merged["date"] = max(r["date"] for r in runs)
        merged["quick"] = any(r.get("quick") for r in runs)
        merged["total_seconds"] = round(sum(r.get("total_seconds", 0.0) for r in runs), 1)
        merged["skipped"] = {k: v for r in runs for k, v in r.get("skipped", {}).items()}
        merged["codes"] = run_codes(runs)
        merged["machines"] = run_machines(runs)
        plans = [r["ablation_plan"] for r in runs if "ablation_plan" in r]
        if plans:
            merged["ablation_plan"] = plans[-1]
        datasets = {r.get("dataset") for r in runs if r.get("rows") or r.get("ablation_rows")}
        if len(datasets) > 1:
            raise FedcondError(f"cannot merge runs of different datasets: {', '.join(sorted(map(str, datasets)))}")
    merged.setdefault("ablation_rows", [])
    # A run stopped early is made whole by the runs that measured its missing rows.
    measured = {row_key(row) for key in ("rows", "ablation_rows") for row in merged[key]}
    plans = [planned_rows(r) for r in runs]
    merged["complete"] = all(r.get("complete", True) or (p is not None and p <= measured) for r, p in zip(runs, plans))
    if all(p is not None for p in plans):
        keys = {k for p in plans if p is not None for k in p}
        merged["planned"] = [list(k) for k in sorted(keys, key=lambda k: (k[0], k[1], k[2] or "", k[3]))]
    merged["published"] = PUBLISHED  # what the tables print: this release's list of published figures
    refresh(merged, live=False)
    return merged


# ---------------------------------------------------------------------------------------------
# Reporting


def _pm(mean: float, std: float | None) -> str:
    """``mean ± std``; a published figure without its std is the mean alone."""
    return f"{mean:.1f}" if std is None else f"{mean:.1f} ± {std:.1f}"


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


def _cross_models(entries: Sequence[dict[str, Any]]) -> list[str]:
    return list(dict.fromkeys(m for e in entries for m in e.get("cross", {})))


def _cross_nets(rows: Sequence[dict[str, Any]], model: str) -> int:
    """The most networks any row trained of a cross architecture (``--cross-runs``)."""
    return max((len(r["cross"][model]["accuracies"]) for r in rows if model in r.get("cross", {})), default=0)


def _nets(count: int) -> str:
    return f"{count} net{'s' if count != 1 else ''}"


def _cross_cells(entry: dict[str, Any], models: Sequence[str]) -> str:
    return "".join(f" {entry['cross'][m]:.1f} |" if m in entry.get("cross", {}) else " - |" for m in models)


def table(results: dict[str, Any]) -> str:
    """The measured rows, one per (ipc, method); condensation as the mean (slowest) over seeds,
    and a column per cross architecture when any row has one."""
    several = len(results["seeds"]) > 1
    nets = max((len(r["accuracies"]) for r in results["rows"]), default=0)
    accuracy = f"accuracy % ({_nets(nets)}"
    accuracy += f", std over {len(results['seeds'])} seeds)" if several else ")"
    summary = _summary(results)
    models = _cross_models(summary)
    cross = "".join(f" {m} % ({_nets(_cross_nets(results['rows'], m))}) |" for m in models)
    lines = [
        f"| ipc | method | images/class trained | {accuracy} | condense s | iterations |{cross}",
        "|---|---|---|---|---|---|" + "---|" * len(models),
    ]
    for s in summary:
        seconds = f"{s['condense_seconds_mean']:.1f}"
        if s.get("condense_seconds_max", s["condense_seconds_mean"]) > s["condense_seconds_mean"] + 0.05:
            seconds += f" (max {s['condense_seconds_max']:.1f})"
        lines.append(
            f"| {s['ipc']} | {_method_label(s)} | {s['images_per_class']} | {_accuracy(results, s)} | "
            f"{seconds} | {s['iterations'] or '-'} |{_cross_cells(s, models)}"
        )
    return "\n".join(lines)


def ablation_table(results: dict[str, Any]) -> str:
    """The ablation at ipc 10: each step's accuracy (mean ± std over seeds), its change from the
    row it builds on (added: the previous step; removed and tried: the recipe), and its time.
    The recipe's row is the ipc-10 ``fedcond`` row of the same results."""
    plan = results.get("ablation_plan")
    if not plan:
        return ""
    steps = {s["step"]: s for s in results.get("ablation") or summarise(results.get("ablation_rows", []))}
    recipe = next((s for s in _summary(results) if (s["ipc"], s["method"]) == (ABLATION_IPC, OWN_METHOD)), None)

    def entry(label: str) -> dict[str, Any] | None:
        name = plan["same_as"].get(label, label)
        return recipe if name == OWN_METHOD else steps.get(name)

    def cell(e: dict[str, Any] | None) -> str:
        return "not measured" if e is None else f"{_pm(e['accuracy_mean'], e['accuracy_std'])} ({len(e['seeds'])})"

    def delta(e: dict[str, Any] | None, reference: dict[str, Any] | None) -> str:
        if e is None or reference is None:
            return "-"
        return f"{e['accuracy_mean'] - reference['accuracy_mean']:+.1f}"

    models = _cross_models([e for e in (*steps.values(), recipe) if e])
    cross = "".join(f" {m} % |" for m in models)
    lines = [
        f"| step | accuracy % (seeds) | change | condense s | images/class trained |{cross}",
        "|---|---|---|---|---|" + "---|" * len(models),
    ]
    previous = None
    for label, kind in plan["order"]:
        e = entry(label)
        reference = previous if kind == "added" else recipe if kind in ("removed", "tried") else None
        twin = plan["same_as"].get(label)
        shown = label + ("" if twin is None else " (= the recipe)" if twin == OWN_METHOD else f" (= {twin})")
        seconds = "-" if e is None else f"{e['condense_seconds_mean']:.1f}"
        images = "-" if e is None else str(e["images_per_class"])
        lines.append(
            f"| {shown} | {cell(e)} | {delta(e, reference)} | {seconds} | {images} |"
            + (_cross_cells(e, models) if e else " - |" * len(models))
        )
        if kind in ("base", "added"):
            previous = e
    kept = ", ".join(plan["kept"]) or "none"
    lines += ["", f"Recipe (`configs/fashion-mnist-ipc{ABLATION_IPC}.yaml`) keeps: {kept}. Change: added rows against the row above, removed and tried rows against the recipe."]
    return "\n".join(lines)


def checks_line(results: dict[str, Any]) -> str:
    checked = results.get("checks") or checks(results)

    def brief(check: dict[str, Any]) -> str:
        if check["value"] is None:
            return "not measured"
        text = f"{check['value']:g}"
        return text + ("" if check["complete"] else f", {check['seeds']} seeds of {TARGET_SEEDS}: not a result")

    return targets_line(checked, brief, with_target=True)


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
    parts = [table(results)] if results["rows"] else []
    if results.get("ablation_plan"):
        parts.append(ablation_table(results))
    if results["rows"]:
        parts.append(published_table(results))
    parts.append(checks_line(results))
    return "\n\n".join(parts)


def update_readme(path: Path, results: dict[str, Any], command: str) -> None:
    """Replace the text between the benchmark-quality markers (markers kept) and nothing else; the
    ablation's block too when the results have one."""
    tail = [
        *(f"\n{name} skipped: {why}" for name, why in results["skipped"].items()),
        *(() if results.get("complete", True) else (f"\n{INCOMPLETE_NOTE}",)),
        *((f"\n{QUICK_NOTE}",) if results.get("quick") else ()),
    ]
    if results["rows"]:
        lines = [
            *measured_header(results, command),
            table(results),
            "",
            published_table(results),
            "",
            checks_line(results),
            *tail,
        ]
        replace_readme_block(path, README_START, README_END, lines)
    if results.get("ablation_plan"):
        lines = [*measured_header(results, command), ablation_table(results), *tail]
        replace_readme_block(path, ABLATION_START, ABLATION_END, lines)


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


def build_parser() -> argparse.ArgumentParser:
    """This benchmark's command line (also read back from recorded commands by :func:`planned_rows`)."""
    parser = argparse.ArgumentParser(prog=f"python -m simulations.{PROG}", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out",
        help="output folder (default: runs/benchmark-quality); with --from-results or --cross-from: where "
        "the merged results.json goes (a reprint without it writes nothing)",
    )
    parser.add_argument("--ipcs", default=",".join(map(str, DEFAULT_IPCS)), help="default: %(default)s")
    parser.add_argument("--seeds", default=",".join(map(str, DEFAULT_SEEDS)), help="default: %(default)s")
    parser.add_argument("--config-dir", default=str(ROOT / "configs"), help=f"folder of {CONFIG_PATTERN}")
    parser.add_argument(
        "--baseline-ipcs",
        help="measure the random/herding coresets only at these ipcs (default: every ipc); a 3-network "
        "evaluation of a 500-image set takes ~20 minutes on 2 cores",
    )
    parser.add_argument(
        "--methods", help=f"only these rows, comma-separated (default: all of {', '.join(METHODS)})"
    )
    parser.add_argument(
        "--ablation",
        action="store_true",
        help=f"measure the ablation steps at ipc {ABLATION_IPC} instead of the ipcs (the recipe's own row "
        "comes from the ipc-10 run: merge both with --from-results)",
    )
    parser.add_argument(
        "--steps",
        help="with --ablation: only these steps, comma-separated (e.g. base-plain-dm-no-technique,added-factor-2; "
        "an unknown name lists the plan's), so the ablation can be split across runs and merged with --from-results",
    )
    parser.add_argument(
        "--cross-models", default="", help=f"also evaluate every set with these architectures ({CROSS_MODELS_HELP})"
    )
    parser.add_argument("--cross-runs", type=int, help="networks per cross architecture (default: evaluation.runs)")
    parser.add_argument(
        "--cross-from",
        metavar="results.json",
        help="do not condense: evaluate the sets an earlier run kept (beside the file, in sets/) with --cross-models",
    )
    parser.add_argument("--quick", action="store_true", help="tiny settings on digits: checks the script only")
    parser.add_argument("--progress", action="store_true", help="show progress bars")
    add_update_readme_argument(parser, "tables")
    parser.add_argument(
        "--from-results",
        metavar="results.json",
        nargs="+",
        help="do not run: report (and --update-readme) earlier runs; several are merged, later files winning per row",
    )
    return parser


def run_options(args: argparse.Namespace, out: Path) -> RunOptions:
    """The :class:`RunOptions` of parsed arguments; sets go to ``out/sets``."""
    return RunOptions(
        seeds=_ints(args.seeds, "--seeds"),
        quick=args.quick,
        progress=args.progress,
        baseline_ipcs=_ints(args.baseline_ipcs, "--baseline-ipcs") if args.baseline_ipcs else None,
        methods=_chosen_methods(args.methods),
        ablation=args.ablation,
        steps=_names(args.steps) if args.steps is not None else None,
        sets_dir=out / "sets",
        cross_models=_cross_model_names(args.cross_models),
        cross_runs=args.cross_runs,
    )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    out = Path(args.out or "runs/benchmark-quality")
    command, save = results_writer(out, f"simulations.{PROG}", argv)

    try:
        if args.cross_runs is not None and args.cross_runs < 1:
            raise FedcondError(f"--cross-runs must be at least 1, got {args.cross_runs}")
        if args.methods is not None and args.ablation:
            raise FedcondError("--methods chooses rows at --ipcs; --ablation runs its own steps (see --steps)")
        if args.steps is not None and not args.ablation:
            raise FedcondError("--steps chooses ablation steps: it needs --ablation")
        if args.cross_from:
            source = Path(args.cross_from)
            earlier = _read_results(source)
            out.mkdir(parents=True, exist_ok=True)
            models = _cross_model_names(args.cross_models)
            results = add_cross(earlier, source.parent / "sets", Path(args.config_dir), models, args.cross_runs, save)
            results["command"] = "\n".join(filter(None, (earlier.get("command"), command)))
            # The sets come from the earlier run's code, the cross columns from this one's.
            results["codes"] = run_codes([earlier], code_version())
            results["machines"] = run_machines([earlier], machine())
            refresh(results, live=False)
            save(results)
        elif args.from_results:
            results = merge([_read_results(Path(p)) for p in args.from_results])
            command = results.get("command", command)
            if args.out is not None:
                out.mkdir(parents=True, exist_ok=True)
                atomic_write_json(out / "results.json", results)
        else:
            options = run_options(args, out)
            ipcs = _ints(args.ipcs, "--ipcs")
            out.mkdir(parents=True, exist_ok=True)
            results = run(Path(args.config_dir), ipcs, options, command, save)
            refresh(results)
            save(results)
        if not results["rows"] and not results.get("ablation_rows") and results["skipped"]:
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


def _names(text: str) -> list[str]:
    """The names of a comma-separated option, blanks dropped."""
    return [n.strip() for n in text.split(",") if n.strip()]


def _chosen_methods(text: str | None) -> tuple[str, ...]:
    """The rows ``--methods`` names, in table order; an unknown or empty list is a one-line error."""
    if text is None:
        return METHODS
    names = _names(text)
    unknown = [n for n in names if n not in METHODS]
    if unknown:
        raise FedcondError(f"--methods: unknown {', '.join(unknown)}; choose from {', '.join(METHODS)}")
    if not names:
        raise FedcondError("--methods is empty")
    return tuple(m for m in METHODS if m in names)


def _cross_model_names(text: str) -> list[str]:
    """The names of ``--cross-models``, each a registered architecture."""
    names = _names(text)
    for name in names:
        if name not in MODELS:
            raise FedcondError(f"--cross-models: unknown model {name!r}; registered: {', '.join(MODELS.names())}")
    return names


def _read_results(path: Path) -> dict[str, Any]:
    results = read_results(path, lambda r: r.get("benchmark") == "quality", PROG)
    results.setdefault("ablation_rows", [])
    return results


if __name__ == "__main__":
    sys.exit(main())
