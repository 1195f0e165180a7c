"""``fedcond continual``: every method on the same class-incremental benchmark, budget and seeds.

Metrics come from Avalanche's ``EvaluationPlugin`` (experience and stream accuracy, stream
forgetting) after each training experience; ``results.json`` is rewritten atomically after each
(method, seed), so an interrupted run keeps what it finished.
"""

from __future__ import annotations

import dataclasses
import re
import statistics
import sys
import time
import uuid
import warnings
from pathlib import Path
from typing import Any

from fedcond.config import Config
from fedcond.continual.benchmarks import ContinualBenchmark, build_benchmark
from fedcond.continual.methods import CONTINUAL_METHODS, MethodSettings
from fedcond.device import resolve_device
from fedcond.errors import ConfigError
from fedcond.report import write_results

PLOT_FILE = "accuracy_per_experience.png"
_EXP_KEY = re.compile(r"^Top1_Acc_Exp/eval_phase/test_stream/(?:Task\d+/)?Exp(\d+)$")
_STREAM_ACC = re.compile(r"^Top1_Acc_Stream/eval_phase/test_stream(?:/Task\d+)?$")
_FORGETTING = re.compile(r"^StreamForgetting/eval_phase/test_stream(?:/Task\d+)?$")


def _metric(metrics: dict[str, Any], pattern: re.Pattern[str]) -> float:
    values = [float(v) for k, v in metrics.items() if pattern.match(k)]
    if len(values) != 1:
        raise RuntimeError(f"expected one Avalanche metric matching {pattern.pattern}, found {len(values)}")
    return values[0]


def _seen_accuracy(metrics: dict[str, Any], trained: int) -> float:
    """Mean test accuracy over experiences 0..trained (the usual average accuracy of continual learning)."""
    per_exp = {int(m.group(1)): float(v) for k, v in metrics.items() if (m := _EXP_KEY.match(k))}
    return statistics.fmean(per_exp[j] for j in range(trained + 1))


def run_method_seed(name: str, benchmark: ContinualBenchmark, config: Config, seed: int) -> dict[str, Any]:
    """Train method ``name`` over the benchmark's train stream from a model seeded by ``seed``."""
    from avalanche.evaluation.metrics import accuracy_metrics, forgetting_metrics
    from avalanche.training.determinism.rng_manager import RNGManager
    from avalanche.training.plugins import EvaluationPlugin

    from fedcond.continual.storage import CondensedBuffer

    device = resolve_device(config.device)
    RNGManager.set_random_seeds(seed)
    model = _build_model(config, benchmark)
    evaluator = EvaluationPlugin(
        accuracy_metrics(experience=True, stream=True), forgetting_metrics(stream=True), loggers=[]
    )
    # The seed reaches everything the method draws: its memory's condensation, its augmentation.
    seeded = dataclasses.replace(config, seed=seed)
    strategy, memory = CONTINUAL_METHODS.get(name)(model, MethodSettings(seeded, device, evaluator))
    accuracy, stream_accuracy, condense_s, train_s = [], [], [], []
    metrics: dict[str, Any] = {}
    for i, experience in enumerate(benchmark.scenario.train_stream):
        before = sum(memory.condense_seconds) if isinstance(memory, CondensedBuffer) else 0.0
        started = time.perf_counter()
        strategy.train(experience)
        elapsed = time.perf_counter() - started
        spent = (sum(memory.condense_seconds) - before) if isinstance(memory, CondensedBuffer) else 0.0
        condense_s.append(round(spent, 2))
        train_s.append(round(elapsed - spent, 2))
        metrics = strategy.eval(benchmark.scenario.test_stream)
        accuracy.append(round(100 * _seen_accuracy(metrics, i), 2))
        stream_accuracy.append(round(100 * _metric(metrics, _STREAM_ACC), 2))
    return {
        "seed": seed,
        "final_average_accuracy": accuracy[-1],
        "forgetting": round(100 * _metric(metrics, _FORGETTING), 2),
        "accuracy_per_experience": accuracy,
        "stream_accuracy_per_experience": stream_accuracy,
        "memory_size": memory.stored_size if isinstance(memory, CondensedBuffer) else len(memory.buffer) if memory is not None else 0,
        "memory_samples": len(memory.buffer) if memory is not None else 0,
        "condense_seconds_per_experience": condense_s,
        "train_seconds_per_experience": train_s,
    }


def _build_model(config: Config, benchmark: ContinualBenchmark) -> Any:
    from fedcond.models import build_model

    k = config.continual
    channels, height, width = benchmark.image_shape
    return build_model(k.model, channels=channels, num_classes=benchmark.num_classes, image_size=(height, width), **k.model_params)


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean and standard deviation over seeds, per metric and per experience."""

    def mean_std(values: list[float]) -> tuple[float, float]:
        return round(statistics.fmean(values), 2), round(statistics.stdev(values), 2) if len(values) > 1 else 0.0

    def per_experience(key: str) -> tuple[list[float], list[float]]:
        columns = list(zip(*(r[key] for r in runs)))
        pairs = [mean_std(list(c)) for c in columns]
        return [m for m, _ in pairs], [s for _, s in pairs]

    acc, acc_std = mean_std([r["final_average_accuracy"] for r in runs])
    forgetting, forgetting_std = mean_std([r["forgetting"] for r in runs])
    curve, curve_std = per_experience("accuracy_per_experience")
    condense, _ = per_experience("condense_seconds_per_experience")
    train, _ = per_experience("train_seconds_per_experience")
    return {
        "final_average_accuracy": acc,
        "final_average_accuracy_std": acc_std,
        "forgetting": forgetting,
        "forgetting_std": forgetting_std,
        "accuracy_per_experience": curve,
        "accuracy_per_experience_std": curve_std,
        "memory_size": max(r["memory_size"] for r in runs),
        "memory_samples": max(r["memory_samples"] for r in runs),
        "condense_seconds_per_experience": condense,
        "train_seconds_per_experience": train,
        "runs": runs,
    }


def run_continual(config: Config, out: Path, *, command: str = "continual", quiet: bool = False) -> dict[str, Any]:
    """Run ``continual.methods`` for ``continual.seeds`` seeds; write ``out/results.json`` and the plot."""
    k = config.continual
    out.mkdir(parents=True, exist_ok=True)
    seeds = [config.seed + i for i in range(k.seeds)]
    benchmarks = [build_benchmark(config, seed) for seed in seeds]  # bad data fails before any training
    if k.mem_size < benchmarks[0].num_classes:
        raise ConfigError(
            f"continual.mem_size {k.mem_size} is smaller than the {benchmarks[0].num_classes} classes of "
            f"{benchmarks[0].name}: a class-balanced memory needs at least one sample per class"
        )
    _build_model(config, benchmarks[0])  # a wrong continual.model_params fails here, not mid-run
    results: dict[str, Any] = {
        "run_id": uuid.uuid4().hex,
        "benchmark": benchmarks[0].name,
        "dataset": config.dataset.name,
        "experiences": k.experiences,
        "mem_size": k.mem_size,
        "budget": k.budget,
        "seeds": seeds,
        "class_orders": [b.class_order for b in benchmarks],
        "device": str(resolve_device(config.device)),
        "complete": False,
        "methods": {},
        "config": config.to_dict(),
    }
    with warnings.catch_warnings():
        # Avalanche 0.6's own plugins call its deprecated ExemplarsBuffer.update, and its decorator
        # re-installs a DeprecationWarning filter on every call (so a filter here loses): hide those
        # at display time. The evaluator has no loggers on purpose: results.json is the log.
        warnings.showwarning = _hide_avalanche_deprecations(warnings.showwarning)
        warnings.filterwarnings("ignore", message="No loggers specified")
        _run_methods(config, benchmarks, seeds, results, out, command, quiet)
    results["complete"] = True
    write_results(out, command, results)
    plot_accuracy_per_experience(results, out / PLOT_FILE)
    return results


def _hide_avalanche_deprecations(show: Any) -> Any:
    def filtered(message: Any, category: type[Warning], filename: str, lineno: int, *args: Any, **kwargs: Any) -> None:
        if issubclass(category, DeprecationWarning) and f"{Path('avalanche')}" in filename:
            return
        show(message, category, filename, lineno, *args, **kwargs)

    return filtered


def _run_methods(
    config: Config, benchmarks: list[ContinualBenchmark], seeds: list[int], results: dict[str, Any], out: Path,
    command: str, quiet: bool,
) -> None:  # fmt: skip
    for name in config.continual.methods:
        runs = []
        for seed, benchmark in zip(seeds, benchmarks):
            if not quiet:
                print(f"[fedcond] {name}, seed {seed} ...", file=sys.stderr, flush=True)
            runs.append(run_method_seed(name, benchmark, config, seed))
            results["methods"][name] = summarise(runs)
            write_results(out, command, results)


def plot_accuracy_per_experience(results: dict[str, Any], path: Path) -> None:
    """Average accuracy on the experiences seen so far, after each experience (mean ± std over seeds)."""
    from fedcond.plotting import new_figure, write_figure

    fig, ax = new_figure()
    for name, method in results["methods"].items():
        mean, std = method["accuracy_per_experience"], method["accuracy_per_experience_std"]
        xs = list(range(1, len(mean) + 1))
        ax.plot(xs, mean, marker="o", markersize=3, label=name)
        ax.fill_between(xs, [m - s for m, s in zip(mean, std)], [m + s for m, s in zip(mean, std)], alpha=0.15)
    ax.set_xlabel("experiences trained")
    ax.set_ylabel("average accuracy on seen experiences (%)")
    ax.set_title(f"{results['benchmark']}, memory {results['mem_size']}")
    ax.set_xticks(range(1, results["experiences"] + 1))
    ax.grid(True, alpha=0.3)
    ax.legend()
    write_figure(fig, path)
