"""Privacy benchmark: accuracy of differentially private condensed sets and what any released set leaks.

Scenarios (each: condense the training split, evaluate with the protocol, audit with ``fedcond audit``):

* ``dp-eps1``, ``dp-eps10``: private condensation at epsilon 1 and 10 (delta from the config);
* ``eps-inf-noise-init``: the same condensation without privacy (epsilon = infinity), from noise;
* ``eps-inf-real-init``: without privacy, initialised from real images (what most condensation does);
* ``dp-eps10-per-iteration``, ``dp-eps10-per-iteration-factor2``: epsilon 10 spent as a Poisson-
  subsampled release every iteration, each against a fresh random network (DM's diversity instead
  of a fixed pool), the second storing each image as 2x2 tiles.

``--quick`` runs every scenario on digits with tiny budgets: it checks the script, it measures
nothing worth reporting. Results go to ``OUT/results.json`` (rewritten after every scenario) and,
with ``--update-readme [FILE]``, into the benchmark-privacy block of FILE (default: ``docs/benchmarks.md``)::

    python -m simulations.benchmark_privacy --out runs/benchmark-privacy --update-readme
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fedcond.config import Config
from fedcond.report import write_results
from simulations.reporting import ScenarioBenchmark

if TYPE_CHECKING:
    from fedcond.privacy.audit import RealDataReference

PROG = "benchmark_privacy"
README_START = "<!-- benchmark-privacy:start -->"
README_END = "<!-- benchmark-privacy:end -->"
FULL_CONFIG = "configs/private-fashion-mnist.yaml"
QUICK_OVERRIDES = [
    "dataset.name=digits", "dataset.data_root=null", "condense.iterations=20", "condense.pool_networks=2",
    "evaluation.runs=1", "evaluation.epochs=5", "privacy.audit_samples=200", "privacy.audit_reference_epochs=2",
]  # fmt: skip


@dataclass(frozen=True)
class Scenario:
    name: str
    overrides: tuple[str, ...]
    #: Applied after ``QUICK_OVERRIDES`` in ``--quick`` runs, where those would contradict the scenario.
    quick: tuple[str, ...] = ()


#: A release per iteration draws a fresh network each time: no pool (in quick runs too).
_NO_POOL = ("condense.pool_networks=0",)
_PER_ITERATION = ("privacy.epsilon=10", "privacy.mode=per-iteration", *_NO_POOL, "condense.iterations=1000")


SCENARIOS = (
    Scenario("dp-eps1", ("privacy.epsilon=1",)),
    Scenario("dp-eps10", ("privacy.epsilon=10",)),
    Scenario("eps-inf-noise-init", ("privacy.epsilon=null",)),
    Scenario("eps-inf-real-init", ("privacy.epsilon=null", "condense.init=real")),
    Scenario("dp-eps10-per-iteration", (*_PER_ITERATION, "privacy.sample_rate=0.05"), quick=_NO_POOL),
    Scenario("dp-eps10-per-iteration-factor2", (*_PER_ITERATION, "privacy.sample_rate=0.02", "condense.factor=2"), quick=_NO_POOL),
)
_SCENARIO = {s.name: s for s in SCENARIOS}


def scenario_config(scenario: Scenario, quick: bool, config_path: str, extra: list[str] | None = None) -> Config:
    overrides = [*(extra or []), *scenario.overrides, *((*QUICK_OVERRIDES, *scenario.quick) if quick else ()), "progress=false"]
    return Config.load(config_path, overrides)


#: Real-data reference models by :func:`fedcond.privacy.audit.reference_key`: every scenario of one
#: run audits against the same members, so the reference is trained once per process, not per scenario.
_REFERENCES: dict[str, "RealDataReference"] = {}


def release_label(config: dict[str, Any]) -> str:
    """How a scenario condensed, from its config as written to results.json: release, networks, iterations, tiles."""
    c, p = config["condense"], config["privacy"]
    if p["epsilon"] is not None and p["mode"] == "per-iteration":
        parts = [f"per-iteration, q {p['sample_rate']:g}", "fresh nets"]
    else:
        parts = ["once" if p["epsilon"] is not None else "not private", f"{c['pool_networks']} nets"]
    parts.append(f"{c['iterations']} it")
    if c["factor"] > 1:
        parts.append(f"{c['factor']}x{c['factor']} tiles")
    return ", ".join(parts)


def run_scenario(config: Config, out: Path) -> dict[str, Any]:
    """Condense, evaluate and audit one set; its own results.json goes to ``out``."""
    from fedcond.condense import condense
    from fedcond.data import load_dataset
    from fedcond.device import resolve_device
    from fedcond.evaluation import evaluate_synthetic
    from fedcond.privacy.audit import audit, real_data_reference, reference_key

    device = resolve_device(config.device)
    splits = load_dataset(config.dataset)
    started = time.perf_counter()
    synthetic = condense(splits.train, config, device=device)
    out.mkdir(parents=True, exist_ok=True)
    synthetic.save(out / "synthetic.pt")
    evaluation = evaluate_synthetic(synthetic, splits.test, config, device=device)
    key = reference_key(config)
    if key not in _REFERENCES:
        _REFERENCES[key] = real_data_reference(splits, config, device)
    audited = audit(synthetic, splits, config, device, reference=_REFERENCES[key])
    privacy = synthetic.metadata["privacy"]
    summary = {
        "dataset": config.dataset.name,
        "ipc": config.condense.ipc,
        "init": config.condense.init,
        "condensation": release_label(config.to_dict()),
        "epsilon": privacy["epsilon"],
        "delta": privacy["delta"],
        "noise_multiplier": privacy.get("noise_multiplier"),
        "accuracy_mean": evaluation.accuracy_mean,
        "accuracy_std": evaluation.accuracy_std,
        "accuracies": evaluation.accuracies,
        "attacks": audited["attacks"],
        "members": audited["members"],
        "model_accuracy": audited["model_accuracy"],
        "condense_seconds": round(synthetic.metadata["timings"]["condense_seconds"], 1),
        "seconds": round(time.perf_counter() - started, 1),
    }
    write_results(out, PROG, {**summary, "config": config.to_dict()})
    return summary


def checks(scenarios: dict[str, Any]) -> dict[str, Any]:
    """The issue's targets on what was measured."""
    out: dict[str, Any] = {}
    floors = {"dp-eps1": 78.0, "dp-eps10": 82.0}
    for name, s in scenarios.items():
        # Every way of spending epsilon 10 (dp-eps10-*) is held to dp-eps10's target.
        floor = floors.get(name, floors["dp-eps10"] if name.startswith("dp-eps10-") else None)
        if floor is not None and s["dataset"] == "fashion-mnist":
            out[f"accuracy_{name}"] = {"accuracy": s["accuracy_mean"], "target": floor, "met": s["accuracy_mean"] >= floor}
    s = scenarios.get("dp-eps1")
    if s:
        auc = s["attacks"]["loss-threshold"]["auc"]
        out["loss_attack_auc_dp_eps1"] = {"auc": auc, "target": 0.52, "met": auc <= 0.52}
    return out


def table(results: dict[str, Any]) -> str:
    lines = [
        "| scenario | dataset | init | condensation | ε | noise × | accuracy % | loss-attack AUC | TPR@1%FPR | NN-attack AUC | NN TPR@0.1%FPR | real-model loss AUC | condense s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, s in results["scenarios"].items():
        a = s["attacks"]
        eps = "∞" if s["epsilon"] is None else f"{s['epsilon']:.3g}"
        noise = "-" if s["noise_multiplier"] is None else f"{s['noise_multiplier']:.2f}"
        lines.append(
            f"| {name} | {s['dataset']} | {s['init']} | {s.get('condensation', '-')} | {eps} | {noise} | {s['accuracy_mean']:.1f} ± {s['accuracy_std']:.1f} | "
            f"{a['loss-threshold']['auc']:.3f} | {a['loss-threshold']['tpr_at_1pct_fpr']:.3f} | "
            f"{a['nearest-synthetic-neighbour']['auc']:.3f} | {a['nearest-synthetic-neighbour']['tpr_at_0.1pct_fpr']:.3f} | "
            f"{a['loss-threshold-real-data-model']['auc']:.3f} | {s['condense_seconds']:.0f} |"
        )
    return "\n".join(lines)


BENCHMARK = ScenarioBenchmark(
    prog=PROG,
    kind="privacy",
    description=__doc__.splitlines()[0],
    default_config=FULL_CONFIG,
    scenario_names=tuple(_SCENARIO),
    config_for=lambda name, args: scenario_config(_SCENARIO[name], args.quick, args.config, args.overrides),
    run_scenario=lambda name, config, out: run_scenario(config, out),
    checks=checks,
    table=table,
    readme_markers=(README_START, README_END),
)
main = BENCHMARK.main


if __name__ == "__main__":
    sys.exit(main())
