"""Robustness benchmark: sets condensed for robustness against plain sets and the random coreset, attacked with ART.

Scenarios (each a kind of set, condensed or selected for every seed, then evaluated twice: standard
training and PGD adversarial training of the evaluation networks, every network attacked):

* ``plain``: the quality recipe (``configs/robustness-fashion-mnist.yaml``);
* ``robust``: the same with the robustness term :data:`ROBUST_OVERRIDES` (adversarial real-side targets);
* ``random``: the random-real coreset of the same stored size.

Columns: clean accuracy (whole test split), PGD at each radius and AutoAttack (ART, L-infinity in
pixel space, on ``robust_evaluation.test_images`` fixed test images), condensation seconds. The
targets: the robust set under standard training reaches PGD (0.1) >= the plain set's + 15 points
with clean accuracy within 5; under adversarial training it is >= the plain set's in PGD accuracy
with clean accuracy within 3; its condensation takes <= 3x the plain recipe's.

``--quick`` runs every scenario on digits with tiny budgets: it checks the script, it measures
nothing worth reporting. Results go to ``OUT/results.json`` (rewritten after every scenario) and,
with ``--update-readme [FILE]``, into the benchmark-robustness block of FILE (default:
``docs/benchmarks.md``). Scenarios may run in separate processes and be merged::

    python -m simulations.benchmark_robustness --scenarios plain,random --out runs/robustness-a
    python -m simulations.benchmark_robustness --scenarios robust --out runs/robustness-b
    python -m simulations.benchmark_robustness --from-results runs/robustness-a/results.json runs/robustness-b/results.json --out runs/robustness --update-readme
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fedcond.config import Config
from simulations.reporting import ScenarioBenchmark

PROG = "benchmark_robustness"
README_START = "<!-- benchmark-robustness:start -->"
README_END = "<!-- benchmark-robustness:end -->"
FULL_CONFIG = "configs/robustness-fashion-mnist.yaml"
#: Seeds of every scenario (headline rows: 3); ``--quick`` runs one.
SEEDS = 3
#: The robust set's term; its radius and steps are the base config's ``condense.robustness``.
ROBUST_OVERRIDES = ("condense.robustness.method=adversarial-targets",)
#: The radius of the adversarial training rows (its steps are the base config's).
ADVERSARIAL_TRAINING = "evaluation.adversarial.epsilon=0.1"
#: The PGD radius the targets are stated at, as results.json keys it.
TARGET_EPSILON = "0.1"
QUICK_OVERRIDES = [
    "dataset.name=digits", "dataset.data_root=null", "condense.iterations=10", "condense.pool_networks=2",
    "condense.ipc=2", "condense.batch_real=32", "condense.robustness.steps=2", "evaluation.runs=1",
    "evaluation.epochs=10", "evaluation.adversarial.steps=2", "robust_evaluation.test_images=40",
    "robust_evaluation.steps=3", "robust_evaluation.autoattack_steps=5",
]  # fmt: skip
TRAININGS = ("standard", "adversarial")
QUICK_DATASET = "digits"


@dataclass(frozen=True)
class Scenario:
    """A kind of set: config overrides on top of the base config."""

    name: str
    overrides: tuple[str, ...]


SCENARIOS = (
    Scenario("plain", ()),
    Scenario("robust", ROBUST_OVERRIDES),
    Scenario("random", ("condense.method=random",)),
)


def scenario_config(scenario: Scenario, quick: bool, config_path: str, extra: list[str] | None = None) -> Config:
    overrides = [*(extra or []), *scenario.overrides]
    if quick:
        overrides += QUICK_OVERRIDES
    return Config.load(config_path, overrides + ["progress=false"])


def run_scenario(config: Config, out: Path, seeds: int) -> dict[str, Any]:
    """Condense (or select) the set for each seed, then evaluate it with both trainings, attacked."""
    import dataclasses

    from fedcond import condense
    from fedcond.data import load_dataset
    from fedcond.device import resolve_device
    from fedcond.robustness import evaluate_robust

    device = resolve_device(config.device)
    splits = load_dataset(config.dataset)
    started = time.perf_counter()
    per_seed = []
    for offset in range(seeds):
        seeded = dataclasses.replace(config, seed=config.seed + offset)
        began = time.perf_counter()
        synthetic = condense(splits.train, seeded, device=device)
        condense_seconds = time.perf_counter() - began
        out.mkdir(parents=True, exist_ok=True)
        synthetic.save(out / f"set-seed{seeded.seed}.pt")
        row: dict[str, Any] = {"seed": seeded.seed, "condense_seconds": round(condense_seconds, 1), "num_images": len(synthetic)}
        for training in TRAININGS:
            trained = seeded if training == "standard" else Config.from_dict(
                _with(seeded.to_dict(), ADVERSARIAL_TRAINING)
            )  # fmt: skip
            evaluation, robust = evaluate_robust(synthetic, splits.test, trained, device=device)
            row[training] = {
                "clean": evaluation.accuracy_mean,
                "clean_subset": robust["clean"]["mean"],
                "pgd": {eps: a["mean"] for eps, a in robust["pgd"]["accuracy"].items()},
                "autoattack": {eps: a["mean"] for eps, a in (robust["autoattack"] or {"accuracy": {}})["accuracy"].items()},
                "adversarial": evaluation.adversarial,
                "seconds": evaluation.seconds,
                "test_images": robust["test_images"],
                "library": robust["library"],
            }
        per_seed.append(row)
    return {
        "dataset": config.dataset.name,
        "seeds": [row["seed"] for row in per_seed],
        "method": config.condense.method,
        "robustness": dataclasses.asdict(config.condense.robustness) if config.condense.robustness.method else None,
        "condense_seconds_mean": round(float(np.mean([r["condense_seconds"] for r in per_seed])), 1),
        "seconds": round(time.perf_counter() - started, 1),
        "training": {training: _over_seeds([r[training] for r in per_seed]) for training in TRAININGS},
        "per_seed": per_seed,
    }


def _with(data: dict[str, Any], override: str) -> dict[str, Any]:
    from fedcond.config import apply_override

    apply_override(data, override)
    return data


def _stats(values: list[float]) -> dict[str, float]:
    return {"mean": round(float(np.mean(values)), 2), "std": round(float(np.std(values)), 2)}


def _over_seeds(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean and std over seeds of each seed's mean over its networks."""
    return {
        "clean": _stats([r["clean"] for r in rows]),
        "pgd": {eps: _stats([r["pgd"][eps] for r in rows]) for eps in rows[0]["pgd"]},
        "autoattack": {eps: _stats([r["autoattack"][eps] for r in rows]) for eps in rows[0]["autoattack"]},
        "adversarial": rows[0]["adversarial"],
        "seconds_mean": round(float(np.mean([r["seconds"] for r in rows])), 1),
    }


#: The dataset the targets are stated on: rows measured on another (``--quick``) check nothing.
TARGET_DATASET = "fashion-mnist"


def checks(scenarios: dict[str, Any]) -> dict[str, Any]:
    """The issue's targets, from the ``plain`` and ``robust`` rows (met only with :data:`SEEDS` seeds each)."""
    plain, robust = scenarios.get("plain"), scenarios.get("robust")
    if not plain or not robust or TARGET_DATASET not in (plain["dataset"], robust["dataset"]):
        return {}
    seeds = min(len(plain["seeds"]), len(robust["seeds"]))
    out: dict[str, Any] = {}
    for training, pgd_margin, clean_margin in (("standard", 15.0, 5.0), ("adversarial", 0.0, 3.0)):
        p, r = plain["training"][training], robust["training"][training]
        gain = r["pgd"][TARGET_EPSILON]["mean"] - p["pgd"][TARGET_EPSILON]["mean"]
        drop = p["clean"]["mean"] - r["clean"]["mean"]
        out[f"robust_vs_plain_{training}"] = {
            "seeds": seeds, "pgd_plain": p["pgd"][TARGET_EPSILON]["mean"], "pgd_robust": r["pgd"][TARGET_EPSILON]["mean"],
            "pgd_gain_points": round(gain, 2), "pgd_target_points": pgd_margin, "clean_drop_points": round(drop, 2),
            "clean_max_drop": clean_margin, "met": seeds >= SEEDS and gain >= pgd_margin and drop <= clean_margin,
        }  # fmt: skip
    ratio = robust["condense_seconds_mean"] / max(plain["condense_seconds_mean"], 1e-9)
    out["robust_condense_time"] = {"seeds": seeds, "plain_seconds": plain["condense_seconds_mean"],
                                   "robust_seconds": robust["condense_seconds_mean"], "ratio": round(ratio, 2),
                                   "met": seeds >= SEEDS and ratio <= 3.0}  # fmt: skip
    return out


def table(results: dict[str, Any]) -> str:
    scenarios = results["scenarios"]
    radii = sorted({eps for s in scenarios.values() for t in s["training"].values() for eps in t["pgd"]}, key=float)
    attacks = sorted({eps for s in scenarios.values() for t in s["training"].values() for eps in t["autoattack"]}, key=float)
    header = ["set", "training", "seeds", "clean %", *[f"PGD {e} %" for e in radii], *[f"AutoAttack {e} %" for e in attacks], "condense s"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, s in scenarios.items():
        for training, t in s["training"].items():
            cells = [name, training, str(len(s["seeds"])), _cell(t["clean"])]
            cells += [_cell(t["pgd"].get(e)) for e in radii] + [_cell(t["autoattack"].get(e)) for e in attacks]
            cells.append(f"{s['condense_seconds_mean']:.0f}")
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _cell(stats: dict[str, float] | None) -> str:
    if stats is None:
        return "-"
    return f"{stats['mean']:.1f} ± {stats['std']:.1f}"


_SCENARIO = {s.name: s for s in SCENARIOS}
BENCHMARK = ScenarioBenchmark(
    prog=PROG,
    kind="robustness",
    description=__doc__.splitlines()[0],
    default_config=FULL_CONFIG,
    scenario_names=tuple(_SCENARIO),
    config_for=lambda name, args: scenario_config(_SCENARIO[name], args.quick, args.config, args.overrides),
    # --quick runs on digits (QUICK_OVERRIDES): one seed is enough to check the script.
    run_scenario=lambda name, config, out: run_scenario(config, out, 1 if config.dataset.name == QUICK_DATASET else SEEDS),
    checks=checks,
    table=table,
    readme_markers=(README_START, README_END),
)
main = BENCHMARK.main


if __name__ == "__main__":
    sys.exit(main())
