"""Federated benchmark: FedCondense against Flower's FedAvg, what it costs in bytes and buys in accuracy.

Scenarios (each a real Flower simulation, in this order):

* ``dirichlet-0.1``: 10 clients, Dirichlet alpha 0.1, ipc 10: one-shot FedCondense and FedAvg for
  ``rounds`` rounds;
* ``dirichlet-0.1-hybrid``: the hybrid (condensed warm start, then FedAvg) on the same partitions,
  compared with FedAvg at equal rounds (``--set federated.rounds=R`` runs it for fewer rounds);
* ``dirichlet-0.5``: the same partitioner at alpha 0.5, FedCondense and FedAvg;
* ``label-flip-defence-on`` / ``-off``: 20 % of the clients upload label-flipped sets (alpha 0.5);
* ``clients-100``: 100 simulated clients on digits (time and peak memory of the whole process tree).

``--quick`` runs every scenario on digits with tiny budgets: it checks the script, it measures
nothing worth reporting. Fashion-MNIST must be installed (``apt-get install dataset-fashion-mnist``);
otherwise its scenarios are recorded as skipped. Results go to ``OUT/results.json`` (rewritten
after every scenario) and, with ``--update-readme [FILE]``, into the benchmark-federated block of
FILE (default: ``docs/benchmarks.md``)::

    python -m simulations.benchmark_federated --out runs/benchmark-federated --update-readme
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from fedcond.config import Config
from simulations.reporting import ScenarioBenchmark

PROG = "benchmark_federated"
README_START = "<!-- benchmark-federated:start -->"
README_END = "<!-- benchmark-federated:end -->"
FULL_CONFIG = "configs/federated-fashion-mnist.yaml"
QUICK_CONFIG = "configs/federated-digits.yaml"
QUICK_OVERRIDES = [
    "condense.iterations=20", "condense.pool_networks=4", "evaluation.epochs=30", "federated.server_epochs=30",
    "federated.rounds=3", "federated.timeout=600",
]  # fmt: skip


@dataclass(frozen=True)
class Scenario:
    """One simulation: config overrides on top of the base config, and misbehaving clients."""

    name: str
    overrides: tuple[str, ...]
    label_flip_fraction: float = 0.0
    digits: bool = False  # runs on digits whatever the base config says
    quick_overrides: tuple[str, ...] = field(default=())


SCENARIOS = (
    Scenario("dirichlet-0.1", ("federated.alpha=0.1", "federated.strategies=fedcondense,fedavg")),
    # On its own so it can run (and be re-run) separately; compared with FedAvg at equal rounds.
    Scenario("dirichlet-0.1-hybrid", ("federated.alpha=0.1", "federated.strategies=hybrid")),
    Scenario("dirichlet-0.5", ("federated.alpha=0.5", "federated.strategies=fedcondense,fedavg")),
    Scenario("label-flip-defence-on", ("federated.alpha=0.5", "federated.strategies=fedcondense", "federated.defence=true"), 0.2),
    Scenario("label-flip-defence-off", ("federated.alpha=0.5", "federated.strategies=fedcondense", "federated.defence=false"), 0.2),
    Scenario(
        "clients-100",
        ("federated.num_clients=100", "federated.strategies=fedcondense,fedavg", "federated.partitioner=iid",
         "condense.ipc=1", "federated.rounds=5"),
        digits=True,
        quick_overrides=("federated.num_clients=20",),
    ),
)  # fmt: skip


class TreeMemory:
    """Peak resident memory (MB) of this process plus all its descendants (Ray's workers), sampled."""

    def __init__(self, interval: float = 0.5) -> None:
        self.interval, self.peak_mb = interval, 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        me = psutil.Process()
        while not self._stop.is_set():
            total = 0
            for proc in [me, *me.children(recursive=True)]:
                try:
                    total += proc.memory_info().rss
                except psutil.Error:
                    pass
            self.peak_mb = max(self.peak_mb, total / 2**20)
            self._stop.wait(self.interval)

    def __enter__(self) -> TreeMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def scenario_config(scenario: Scenario, quick: bool, config_path: str, extra: list[str] | None = None) -> Config:
    overrides = [*(extra or []), *scenario.overrides]
    if scenario.digits:
        overrides = ["dataset.name=digits", "dataset.data_root=null", *overrides]
    if quick:
        overrides += [*QUICK_OVERRIDES, *scenario.quick_overrides]
    return Config.load(QUICK_CONFIG if quick or scenario.digits else config_path, overrides + ["progress=false"])


def run_scenario(scenario: Scenario, config: Config, out: Path) -> dict[str, Any]:
    from fedcond.apps.federate import simulate
    from simulations.attacks import attacked_client_app

    flipped = round(scenario.label_flip_fraction * config.federated.num_clients)
    app = None
    if flipped:
        from fedcond.data import load_dataset

        num_classes = load_dataset(config).test.num_classes
        app = attacked_client_app({p: "label-flip" for p in range(flipped)}, num_classes=num_classes)
    started = time.perf_counter()
    with TreeMemory() as memory:
        results = simulate(config, out, client_app=app)
    return summarise(results, list(range(flipped)), time.perf_counter() - started, memory.peak_mb)


def summarise(results: dict[str, Any], label_flip_clients: list[int], seconds: float, peak_mb: float | None) -> dict[str, Any]:
    """A scenario's row of the benchmark from its ``fedcond federate`` results.

    Also rebuilds the row of a run stopped mid-scenario from the scenario folder's results.json
    (which ``federate`` rewrites after every strategy); its peak memory is then unknown (None).
    """
    config = results["config"]
    f = config["federated"]
    summary: dict[str, Any] = {
        "dataset": results["dataset"],
        "num_clients": results["num_clients"],
        "alpha": f["alpha"] if f["partitioner"] == "dirichlet" else None,
        "partitioner": f["partitioner"],
        "ipc": results["ipc"],
        "label_flip_clients": label_flip_clients,
        "defence": f["defence"],
        "seconds": round(seconds, 1),
        "peak_memory_mb_process_tree": None if peak_mb is None else round(peak_mb, 1),
        "strategies": {},
    }
    for name, run in results["strategies"].items():
        summary["strategies"][name] = {
            "final_accuracy": run["final_accuracy"],
            "rounds": len(run["rounds"]),
            "accuracy_per_round": [r["accuracy"] for r in run["rounds"]],
            "total_upload_bytes": run["total_upload_bytes"],
            "total_download_bytes": run["total_download_bytes"],
            "rejected_partitions": sorted(r["partition_id"] for r in run["rejected_clients"] if r["partition_id"] is not None),
            "failed_clients": len(run["failed_clients"]),
            "seconds": run["seconds"],
        }
    return summary


def checks(scenarios: dict[str, Any]) -> dict[str, Any]:
    """The issue's targets, evaluated on what was measured (None where a scenario is missing)."""

    def strategy(scenario: str, name: str) -> dict[str, Any] | None:
        return scenarios.get(scenario, {}).get("strategies", {}).get(name)

    out: dict[str, Any] = {}
    cond, avg, hyb = (strategy("dirichlet-0.1", n) for n in ("fedcondense", "fedavg", "hybrid"))
    if cond and avg:
        ratio = cond["total_upload_bytes"] / avg["total_upload_bytes"]
        out["oneshot_vs_fedavg_alpha_0.1"] = {
            "fedcondense": cond["final_accuracy"], "fedavg": avg["final_accuracy"], "upload_ratio": round(ratio, 5),
            "met": cond["final_accuracy"] >= avg["final_accuracy"] and ratio <= 0.1,
        }  # fmt: skip
    hyb = strategy("dirichlet-0.1-hybrid", "hybrid") or hyb
    if hyb and avg:
        # At equal rounds: the hybrid's last round against FedAvg's accuracy after as many rounds.
        rounds = min(hyb["rounds"], avg["rounds"])
        gain = hyb["accuracy_per_round"][rounds - 1] - avg["accuracy_per_round"][rounds - 1]
        out["hybrid_vs_fedavg_alpha_0.1"] = {"rounds": rounds, "gain_points": round(gain, 2), "met": gain >= 5}
    on, off = strategy("label-flip-defence-on", "fedcondense"), strategy("label-flip-defence-off", "fedcondense")
    clean = strategy("dirichlet-0.5", "fedcondense")
    if on and clean:
        cost = clean["final_accuracy"] - on["final_accuracy"]
        out["label_flip_cost_with_defence"] = {
            "clean": clean["final_accuracy"], "defence_on": on["final_accuracy"],
            "defence_off": off["final_accuracy"] if off else None, "cost_points": round(cost, 2), "met": cost <= 3,
        }  # fmt: skip
    return out


def table(results: dict[str, Any]) -> str:
    lines = [
        "| scenario | dataset | clients | strategy | rounds | accuracy % | upload MiB | download MiB | rejected | scenario s | peak MB (all processes) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, s in results["scenarios"].items():
        for strategy, r in s["strategies"].items():
            acc = "-" if r["final_accuracy"] is None else f"{r['final_accuracy']:.1f}"
            lines.append(
                f"| {name} | {s['dataset']} | {s['num_clients']} | {strategy} | {r['rounds']} | {acc} | "
                f"{r['total_upload_bytes'] / 2**20:.2f} | {r['total_download_bytes'] / 2**20:.2f} | "
                f"{len(r['rejected_partitions'])} | {s['seconds']:.0f} | {_mb(s['peak_memory_mb_process_tree'])} |"
            )
    return "\n".join(lines)


def _mb(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def _config_for(name: str, args: argparse.Namespace) -> Config:
    return scenario_config(_SCENARIO[name], args.quick, args.config, args.overrides)


def _run_scenario(name: str, config: Config, out: Path) -> dict[str, Any]:
    return run_scenario(_SCENARIO[name], config, out)


def _finish(results: dict[str, Any]) -> dict[str, Any]:
    peaks = [s["peak_memory_mb_process_tree"] for s in results["scenarios"].values() if s["peak_memory_mb_process_tree"] is not None]
    return {"peak_memory_mb": max(peaks, default=None)}


_SCENARIO = {s.name: s for s in SCENARIOS}
BENCHMARK = ScenarioBenchmark(
    prog=PROG,
    kind="federated",
    description=__doc__.splitlines()[0],
    default_config=FULL_CONFIG,
    scenario_names=tuple(_SCENARIO),
    config_for=_config_for,
    run_scenario=_run_scenario,
    checks=checks,
    table=table,
    readme_markers=(README_START, README_END),
    finish=_finish,
)
main = BENCHMARK.main


if __name__ == "__main__":
    sys.exit(main())
