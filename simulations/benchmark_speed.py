"""Benchmark: the speed of fedcond's engine against straightforward reference loops kept in this file.

    python -m simulations.benchmark_speed --out runs/benchmark-speed --update-readme

Two comparisons, each measured side by side in one process so only ratios are read:

1. A DM condensation iteration (ipc 10, ``mmd-linear``, DSA, a fresh random ConvNet-3 per
   iteration): the reference loops over classes as the research code does; the engine
   (``fedcond.condense``) runs without and with its pool of cached real statistics.
2. The evaluation protocol (a fresh ConvNet-3 trained on a random-real coreset with DSA, then
   tested): the reference augments image by image (and, as a second baseline, batch-wise);
   the engine is ``fedcond.evaluate_synthetic``.

Writes ``OUT/results.json`` after every measurement and prints a markdown table; with
``--update-readme [FILE]`` it replaces the table between the benchmark-speed markers of FILE
(default: ``docs/benchmarks.md``).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import datetime as dt
import math
import multiprocessing
import os
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from fedcond import Config, condense, evaluate_synthetic, load_dataset
from fedcond.augment import apply_dsa, dsa, sample_dsa_params
from fedcond.data import ImageDataset, dataset_availability
from fedcond.device import resolve_device
from fedcond.errors import FedcondError
from fedcond.evaluation import run_seed
from fedcond.io import atomic_write_json
from fedcond.models import build_model
from fedcond.report import peak_memory_mb, reset_peak_memory
from fedcond.seeds import derive_seed
from simulations.reporting import (
    add_update_readme_argument,
    code_version,
    machine,
    measured_header,
    read_results,
    replace_readme_block,
)
from simulations.speed_time_to_accuracy import run_time_to_accuracy
from simulations.speed_time_to_accuracy import summarise as time_summary
from simulations.speed_time_to_accuracy import table as time_table
from simulations.speed_tuning import QUICK_TUNING_SETS, TUNING_SETS, merge_parts, run_tuning
from simulations.speed_tuning import table as tuning_table

README_START = "<!-- benchmark-speed:start -->"
README_END = "<!-- benchmark-speed:end -->"
DATASETS = ("fashion-mnist", "digits")
#: A 1-minute load average above this before the run means another process competes for the cores.
BUSY_LOAD = 0.5


@dataclass(frozen=True)
class Settings:
    """Everything a run measures with; both sides of every comparison read it from here."""

    dataset: str = "fashion-mnist"
    seed: int = 0
    #: Condensation: DM at ipc 10 with DSA, a fresh random ConvNet-3 per iteration.
    ipc: int = 10
    batch_real: int = 256
    iterations: int = 20
    warmup_iterations: int = 1
    lr_images: float = 1.0
    momentum_images: float = 0.5
    #: Networks in the engine's cached real-statistics pool (0: measure the per-iteration path only).
    pool_networks: int = 32
    #: Run length over which the pool's build time is amortised.
    amortise_seconds: float = 600.0
    #: Evaluation: the field's protocol, per network.
    eval_runs: int = 3
    eval_epochs: int = 300
    eval_lr: float = 0.01
    eval_momentum: float = 0.9
    eval_weight_decay: float = 5e-4
    eval_batch: int = 256
    test_batch: int = 256
    model: str = "convnet"
    dsa_strategy: str = "color_crop_cutout_flip_scale_rotate"
    #: The tuning-protocol correlation: the DM sets' pool and real batch per class.
    tuning_pool_networks: int = 8
    tuning_batch_real: int = 128
    quick_sets: bool = False
    #: Measure the torch.compile rows (compiling costs about a minute, once per process).
    compiled_rows: bool = True
    #: Time to DM's published accuracy: a shipped config, condensed and evaluated once per seed.
    time_to_accuracy_config: str = "configs/fashion-mnist-fast-ipc10.yaml"
    time_to_accuracy_seeds: tuple[int, ...] = (0, 1, 2)
    time_to_accuracy_overrides: tuple[str, ...] = ()


FULL = Settings()
#: Seconds on digits: checks the script end to end, measures nothing worth reporting.
QUICK = Settings(
    dataset="digits", iterations=2, eval_runs=1, eval_epochs=2, batch_real=16, pool_networks=4,
    tuning_pool_networks=2, tuning_batch_real=16, quick_sets=True, compiled_rows=False,
    time_to_accuracy_seeds=(0,),
    time_to_accuracy_overrides=("dataset.name=digits", "condense.iterations=3", "condense.pool_networks=2",
                                "condense.batch_real=16", "evaluation.runs=1", "evaluation.epochs=2"),
)
PARTS = ("condense", "evaluation", "tuning", "time-to-accuracy")


# ---------------------------------------------------------------------------------------------
# Baseline 1: the straightforward DM iteration


def class_indices(data: ImageDataset) -> list[torch.Tensor]:
    """Indices of each class's samples, in class order."""
    return [torch.nonzero(data.labels == k).squeeze(1) for k in range(data.num_classes)]


def reference_dm_loss(
    images: torch.Tensor,
    syn_per_class: list[slice],
    real_images: torch.Tensor,
    real_per_class: list[torch.Tensor],
    settings: Settings,
    seed: int,
) -> torch.Tensor:
    """DM's loss for one iteration, written as the research code writes it: class by class.

    A fresh random ConvNet (frozen, as DM does) is drawn under ``seed``; each class gets its own
    real batch and its own DSA draw, shared by its real and synthetic images.
    """
    channels, height, width = images.shape[1:]
    torch.manual_seed(seed)
    net = build_model(
        settings.model, channels=channels, num_classes=len(real_per_class), image_size=(height, width)
    ).to(images.device)
    net.train()
    for p in net.parameters():
        p.requires_grad_(False)
    generator = torch.Generator().manual_seed(seed)
    loss = images.new_zeros(())
    for idx, part in zip(real_per_class, syn_per_class):
        pick = torch.randperm(len(idx), generator=generator)[: settings.batch_real]
        real = real_images[idx[pick].to(real_images.device)]
        syn = images[part]
        params = sample_dsa_params(
            settings.dsa_strategy,
            1,
            generator=generator,
            device=images.device,
            image_size=(height, width),
            mode="single",
        )
        real = apply_dsa(real, params, torch.zeros(len(real), dtype=torch.long, device=images.device))
        syn = apply_dsa(syn, params, torch.zeros(len(syn), dtype=torch.long, device=images.device))
        with torch.no_grad():
            real_emb = net.embed(real)
        syn_emb = net.embed(syn)
        loss = loss + ((real_emb.mean(0) - syn_emb.mean(0)) ** 2).sum()
    return loss


@dataclass
class ReferenceCondense:
    """What the reference condensation loop leaves: the images, its speed, every iteration's loss."""

    images: torch.Tensor
    initial_images: torch.Tensor
    seconds_per_iteration: float
    losses: list[float]


def initial_synthetic(data: ImageDataset, settings: Settings) -> tuple[torch.Tensor, list[slice]]:
    """``ipc`` random real images per class (fewer if a class has fewer), and each class's slice."""
    generator = torch.Generator().manual_seed(derive_seed(settings.seed, "real-selection"))  # the engine's draw
    chosen, slices, start = [], [], 0
    for idx in class_indices(data):
        pick = idx[torch.randperm(len(idx), generator=generator)[: settings.ipc]]
        chosen.append(pick)
        slices.append(slice(start, start + len(pick)))
        start += len(pick)
    return data.images[torch.cat(chosen)].clone(), slices


def reference_condense(
    data: ImageDataset, settings: Settings, iterations: int, *, device: torch.device
) -> ReferenceCondense:
    """Run ``settings.warmup_iterations`` untimed, then ``iterations`` timed reference DM iterations."""
    initial, slices = initial_synthetic(data, settings)
    images = initial.to(device, copy=True).requires_grad_(True)
    real_images = data.images.to(device)
    real_per_class = class_indices(data)
    optimizer = torch.optim.SGD([images], lr=settings.lr_images, momentum=settings.momentum_images)
    losses: list[float] = []
    started = time.perf_counter()
    for iteration in range(settings.warmup_iterations + iterations):
        if iteration == settings.warmup_iterations:
            _sync(device)
            started = time.perf_counter()
        seed = derive_seed(settings.seed, "iteration", iteration)
        loss = reference_dm_loss(images, slices, real_images, real_per_class, settings, seed)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    _sync(device)
    elapsed = time.perf_counter() - started
    return ReferenceCondense(
        images=images.detach().cpu(),
        initial_images=initial,
        seconds_per_iteration=elapsed / max(1, iterations),
        losses=losses,
    )


# ---------------------------------------------------------------------------------------------
# Baseline 2: the straightforward evaluation loop


def reference_train_and_test(
    images: torch.Tensor,
    labels: torch.Tensor,
    test: ImageDataset,
    settings: Settings,
    *,
    seed: int,
    per_image_dsa: bool,
    device: torch.device,
) -> float:
    """Train a fresh ConvNet-3 on ``(images, labels)`` and return its test accuracy in percent.

    ``per_image_dsa`` augments the batch one image at a time (a Python loop, as research code
    often does); otherwise one vectorised call augments the whole batch.
    """
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    net = build_model(
        settings.model, channels=images.shape[1], num_classes=test.num_classes, image_size=tuple(images.shape[2:])
    ).to(device)
    images, labels = images.to(device), labels.to(device)
    optimizer = torch.optim.SGD(
        net.parameters(), lr=settings.eval_lr, momentum=settings.eval_momentum, weight_decay=settings.eval_weight_decay
    )
    half = settings.eval_epochs // 2
    net.train()
    for epoch in range(settings.eval_epochs):
        if half and epoch == half:
            for group in optimizer.param_groups:
                group["lr"] *= 0.1
        order = torch.randperm(len(images), generator=generator).to(device)
        for start in range(0, len(images), settings.eval_batch):
            batch = order[start : start + settings.eval_batch]
            x, y = images[batch], labels[batch]
            if per_image_dsa:
                x = torch.cat([dsa(x[i : i + 1], settings.dsa_strategy, generator=generator) for i in range(len(x))])
            else:
                x = dsa(x, settings.dsa_strategy, generator=generator)
            loss = F.cross_entropy(net(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    net.eval()
    correct = 0
    with torch.no_grad():
        for start in range(0, len(test), settings.test_batch):
            x = test.images[start : start + settings.test_batch].to(device)
            y = test.labels[start : start + settings.test_batch].to(device)
            correct += int((net(x).argmax(1) == y).sum())
    return 100.0 * correct / len(test)


def reference_evaluation(
    images: torch.Tensor,
    labels: torch.Tensor,
    test: ImageDataset,
    settings: Settings,
    *,
    per_image_dsa: bool,
    device: torch.device,
) -> tuple[list[float], float, float]:
    """``settings.eval_runs`` reference networks: their accuracies, seconds per network and peak RSS (MB)."""
    reset_peak_memory(device)
    started = time.perf_counter()
    accuracies = [
        reference_train_and_test(images, labels, test, settings, seed=run_seed(settings.seed, r),
                                 per_image_dsa=per_image_dsa, device=device)
        for r in range(settings.eval_runs)
    ]  # fmt: skip
    _sync(device)
    return accuracies, (time.perf_counter() - started) / settings.eval_runs, peak_memory_mb(device)


def reference_condense_row(
    data: ImageDataset, settings: Settings, iterations: int, *, device: torch.device
) -> tuple[ReferenceCondense, float]:
    """:func:`reference_condense` and its peak RSS (MB)."""
    reset_peak_memory(device)
    return reference_condense(data, settings, iterations, device=device), peak_memory_mb(device)


T = TypeVar("T")


def in_fresh_process(function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``function(*args, **kwargs)`` in a new interpreter with this process's thread count.

    The reference loops run as a user's script would: with glibc's allocator as it starts (the
    engine keeps its CPU buffers in the heap, :func:`fedcond.device.prepare_cpu`, which would
    speed the reference up too if it shared the process), and with no warm caches of the engine's.
    """
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(
        1, mp_context=context, initializer=torch.set_num_threads, initargs=(torch.get_num_threads(),)
    ) as pool:
        return pool.submit(function, *args, **kwargs).result()


# ---------------------------------------------------------------------------------------------
# The engine side


def engine_config(
    settings: Settings, *, method: str = "matching", iterations: int | None = None, pool: int = 0, compile: bool = False
) -> Config:
    """The engine's config for the same work the reference does."""
    condense_section: dict[str, Any] = {
        "method": method,
        "feature_map": "random-embedding",
        "discrepancy": "mmd-linear",
        "model": settings.model,
        "ipc": settings.ipc,
        "iterations": settings.iterations if iterations is None else iterations,
        "init": "real",
        "optimizer": "sgd",
        "lr_images": settings.lr_images,
        "momentum": settings.momentum_images,
        "batch_real": settings.batch_real,
        "dsa": True,
        "dsa_strategy": settings.dsa_strategy,
        "dsa_mode": "single",
        "pool_networks": pool,  # explicit: 0 is the reference's algorithm, whatever the default becomes
        "compile": compile,
    }
    return Config.from_dict(
        {
            "seed": settings.seed,
            "device": "auto",
            "progress": False,
            "dataset": {"name": settings.dataset},
            "condense": condense_section,
            "evaluation": {
                "model": settings.model,
                "runs": settings.eval_runs,
                "epochs": settings.eval_epochs,
                "lr": settings.eval_lr,
                "momentum": settings.eval_momentum,
                "weight_decay": settings.eval_weight_decay,
                "batch_size": settings.eval_batch,
                "dsa": True,
                "compile": compile,
            },
        }
    )


def amortised_per_iteration(per_it: float, pool_seconds: float, budget_seconds: float) -> float:
    """Seconds per iteration once the pool's build is spread over the iterations of a ``budget_seconds`` run."""
    iterations = max(1, math.floor((budget_seconds - pool_seconds) / max(per_it, 1e-12)))
    return per_it + pool_seconds / iterations


def _ratio(reference: float | None, engine: float | None) -> float | None:
    if reference is None or engine is None or engine <= 0:
        return None
    return round(reference / engine, 3)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ---------------------------------------------------------------------------------------------
# The run


def run(
    settings: Settings,
    quick: bool,
    save: Callable[[dict[str, Any]], None],
    parts: Sequence[str] = PARTS,
    shard: tuple[int, int] = (0, 1),
) -> dict[str, Any]:
    """Measure the ``parts``; ``save`` receives the results after every measurement.

    ``shard`` ``(k, n)`` makes the tuning part measure every n-th set from the k-th, so n
    processes share it (merge their results with ``--from-results``).
    """
    probe = engine_config(settings)
    engine_config(settings, pool=settings.pool_networks)  # a config error shows now, not after minutes
    results: dict[str, Any] = {
        "benchmark": "speed",
        "date": dt.date.today().isoformat(),
        "machine": machine(),
        "code": code_version(),
        "dataset": settings.dataset,
        "quick": quick,
        "parts": list(parts),
        "complete": False,
        "settings": dataclasses.asdict(settings),
        "condense": None,
        "evaluation": None,
        "tuning": None,
        "time_to_accuracy": None,
        "peak_gflops": None,
        "checks": {},
        "peak_memory_mb": None,
        # Another busy process on the machine slows the many small ops of the reference loops far
        # more than the engine's few large ones (oversubscribed OpenMP threads): its ratios are not comparable.
        "load_average_1min": {"start": round(os.getloadavg()[0], 2), "end": None},
    }
    load = results["load_average_1min"]["start"]
    if load > BUSY_LOAD:
        print(
            f"warning: 1-minute load average {load:.2f} before the run: another process is busy, "
            "so these ratios will be distorted",
            file=sys.stderr,
        )
    available, detail = dataset_availability(probe.dataset)
    if not available:
        results["skipped"] = {settings.dataset: detail}
        return results
    splits = load_dataset(probe.dataset)
    device = resolve_device(probe.device)
    if "condense" in parts:
        results["condense"] = {}
        measure_condense(splits.train, settings, device, results, save)
    if "evaluation" in parts:
        results["peak_gflops"] = measure_peak_gflops()
        results["evaluation"] = {}
        measure_evaluation(splits.train, splits.test, settings, device, results, save)
    if "tuning" in parts:
        k, n = shard
        sets = (QUICK_TUNING_SETS if settings.quick_sets else TUNING_SETS)[k::n]

        def save_tuning(part: dict[str, Any]) -> None:
            results["tuning"] = {**part, "torch_threads": torch.get_num_threads()}
            _progress(f"tuning: {part['sets'][-1]['name']} measured", results, save)

        run_tuning(
            splits.train,
            splits.test,
            engine_config(settings).to_dict(),
            sets,
            pool_networks=settings.tuning_pool_networks,
            batch_real=settings.tuning_batch_real,
            device=device,
            save=save_tuning,
        )
    if "time-to-accuracy" in parts:

        def save_time(part: dict[str, Any]) -> None:
            results["time_to_accuracy"] = {**part, "torch_threads": torch.get_num_threads()}
            _progress(f"time to accuracy: seed {part['runs'][-1]['seed']} measured", results, save)

        run_time_to_accuracy(
            splits.train,
            splits.test,
            Path(settings.time_to_accuracy_config),
            settings.time_to_accuracy_seeds,
            settings.time_to_accuracy_overrides,
            device=device,
            save=save_time,
        )
    results["complete"] = True
    results["peak_memory_mb"] = peak_memory_mb(device)
    results["load_average_1min"]["end"] = round(os.getloadavg()[0], 2)
    return results


def measure_condense(
    train: ImageDataset,
    settings: Settings,
    device: torch.device,
    results: dict[str, Any],
    save: Callable[[dict[str, Any]], None],
) -> None:
    """Comparison 1: the reference DM iteration against the engine's, without and with the pool."""
    n = settings.iterations
    c: dict[str, Any] = {
        "iterations": n,
        "torch_threads": torch.get_num_threads(),  # parts may come from runs with different thread counts
        "pool_networks": settings.pool_networks,
        "reference_s_per_it": None,
        "engine_no_pool_s_per_it": None,
        "engine_pool_s_per_it": None,
        "engine_pool_amortised_s_per_it": None,
        "pool_seconds": None,
        "speedup_no_pool": None,
        "speedup_pool": None,
        "speedup_pool_amortised": None,
        "engine_compiled_no_pool_s_per_it": None,
        "speedup_compiled_no_pool": None,
        "compile_seconds": None,
        "row_peak_memory_mb": {},
    }
    results["condense"] = c
    reference, memory = in_fresh_process(reference_condense_row, train, settings, n, device=device)
    c["reference_s_per_it"] = round(reference.seconds_per_iteration, 4)
    c["row_peak_memory_mb"]["reference"] = memory
    _progress(f"reference condense: {reference.seconds_per_iteration:.3f} s/it", results, save)

    # The engine's own warm-up: one untimed iteration on the per-iteration path.
    condense(train, engine_config(settings, iterations=settings.warmup_iterations), device=device)
    reset_peak_memory(device)
    synthetic = condense(train, engine_config(settings, iterations=n), device=device)
    no_pool = synthetic.metadata["timings"]["condense_seconds"] / max(1, n)
    c["engine_no_pool_s_per_it"] = round(no_pool, 4)
    c["speedup_no_pool"] = _ratio(reference.seconds_per_iteration, no_pool)
    c["row_peak_memory_mb"]["engine_no_pool"] = peak_memory_mb(device)
    _progress(f"engine condense, no pool: {no_pool:.3f} s/it", results, save)

    if settings.compiled_rows:
        measure_compiled_condense(train, settings, device, reference.seconds_per_iteration, results, save)
    if settings.pool_networks > 0:
        reset_peak_memory(device)
        synthetic = condense(train, engine_config(settings, iterations=n, pool=settings.pool_networks), device=device)
        timings = synthetic.metadata["timings"]
        if "pool_seconds" not in timings:
            raise FedcondError("the engine ran with condense.pool_networks but reported no timings.pool_seconds")
        pool_seconds = float(timings["pool_seconds"])
        per_it = (timings["condense_seconds"] - pool_seconds) / max(1, n)
        amortised = amortised_per_iteration(per_it, pool_seconds, settings.amortise_seconds)
        c.update(
            pool_seconds=round(pool_seconds, 3),
            engine_pool_s_per_it=round(per_it, 4),
            engine_pool_amortised_s_per_it=round(amortised, 4),
            speedup_pool=_ratio(reference.seconds_per_iteration, per_it),
            speedup_pool_amortised=_ratio(reference.seconds_per_iteration, amortised),
        )
        c["row_peak_memory_mb"]["engine_pool"] = peak_memory_mb(device)
        _progress(
            f"engine condense, pool of {settings.pool_networks}: {per_it:.3f} s/it "
            f"(pool built in {pool_seconds:.1f} s; amortised {amortised:.3f} s/it)",
            results,
            save,
        )



def measure_compiled_condense(
    train: ImageDataset,
    settings: Settings,
    device: torch.device,
    reference_s_per_it: float,
    results: dict[str, Any],
    save: Callable[[dict[str, Any]], None],
) -> None:
    """The exact objective with compiled embeddings; an untimed warm-up pays the compile."""
    c, n = results["condense"], settings.iterations
    started = time.perf_counter()
    condense(train, engine_config(settings, iterations=settings.warmup_iterations, compile=True), device=device)
    c["compile_seconds"] = round(time.perf_counter() - started, 1)
    reset_peak_memory(device)
    synthetic = condense(train, engine_config(settings, iterations=n, compile=True), device=device)
    compiled = synthetic.metadata["timings"]["condense_seconds"] / max(1, n)
    c["engine_compiled_no_pool_s_per_it"] = round(compiled, 4)
    c["speedup_compiled_no_pool"] = _ratio(reference_s_per_it, compiled)
    c["row_peak_memory_mb"]["engine_compiled_no_pool"] = peak_memory_mb(device)
    _progress(f"engine condense, no pool, compiled: {compiled:.3f} s/it", results, save)



def measure_evaluation(
    train: ImageDataset,
    test: ImageDataset,
    settings: Settings,
    device: torch.device,
    results: dict[str, Any],
    save: Callable[[dict[str, Any]], None],
) -> None:
    """Comparison 2: the straightforward protocol loop against ``evaluate_synthetic`` on one coreset."""
    coreset = condense(train, engine_config(settings, method="random"), device=device)
    e: dict[str, Any] = {
        "epochs": settings.eval_epochs,
        "runs": settings.eval_runs,
        "torch_threads": torch.get_num_threads(),
        "synthetic_images": len(coreset.images),
        "reference_per_image_dsa_s_per_network": None,
        "reference_vectorised_dsa_s_per_network": None,
        "engine_s_per_network": None,
        "speedup_vs_per_image": None,
        "speedup_vs_vectorised": None,
        "reference_accuracies": None,
        "reference_vectorised_accuracies": None,
        "engine_accuracies": None,
        "engine_compiled_s_per_network": None,
        "engine_compiled_accuracies": None,
        "compile_seconds": None,
        "speedup_compiled_vs_per_image": None,
        "speedup_compiled_vs_vectorised": None,
        "speedup_compiled_amortised_vs_per_image": None,
        "gflops": {},
        "share_of_peak": None,
        "row_peak_memory_mb": {},
    }
    results["evaluation"] = e
    network_flops = network_flops_per_evaluation(coreset.images, test, settings)
    e["gflop_per_network"] = round(network_flops / 1e9, 1)
    for per_image, name in ((True, "per_image"), (False, "vectorised")):
        accuracies, seconds, memory = in_fresh_process(
            reference_evaluation, coreset.images, coreset.labels, test, settings, per_image_dsa=per_image, device=device
        )
        e[f"reference_{name}_dsa_s_per_network"] = round(seconds, 3)
        key = "reference_accuracies" if per_image else "reference_vectorised_accuracies"
        e[key] = [round(a, 2) for a in accuracies]
        e["row_peak_memory_mb"][f"reference_{name}"] = memory
        e["gflops"][f"reference_{name}"] = round(network_flops / seconds / 1e9, 1)
        _progress(f"reference evaluation, {name.replace('_', '-')} DSA: {seconds:.2f} s/network", results, save)

    for compiled in (False, True) if settings.compiled_rows else (False,):
        name = "engine_compiled" if compiled else "engine"
        config = engine_config(settings, method="random", compile=compiled)
        compile_seconds = None
        if compiled:
            # Pays the compile once (train and test graphs), as a process evaluating many sets does.
            warm = dataclasses.replace(config.evaluation, runs=1, epochs=1)
            started = time.perf_counter()
            evaluate_synthetic(coreset, test, config.replace(evaluation=warm), device=device)
            compile_seconds = round(time.perf_counter() - started, 1)
        reset_peak_memory(device)
        evaluation = evaluate_synthetic(coreset, test, config, device=device)
        seconds = evaluation.seconds / settings.eval_runs
        e[f"{name}_s_per_network"] = round(seconds, 3)
        e[f"{name}_accuracies"] = [round(a, 2) for a in evaluation.accuracies]
        e["row_peak_memory_mb"][name] = peak_memory_mb(device)
        e["gflops"][name] = round(network_flops / seconds / 1e9, 1)
        suffix = "_compiled" if compiled else ""
        e[f"speedup{suffix}_vs_per_image"] = _ratio(e["reference_per_image_dsa_s_per_network"], seconds)
        e[f"speedup{suffix}_vs_vectorised"] = _ratio(e["reference_vectorised_dsa_s_per_network"], seconds)
        if compiled:
            e["compile_seconds"] = compile_seconds
            amortised = seconds + compile_seconds / settings.eval_runs
            e["speedup_compiled_amortised_vs_per_image"] = _ratio(e["reference_per_image_dsa_s_per_network"], amortised)
        _progress(f"{name.replace('_', ' ')} evaluation: {seconds:.2f} s/network", results, save)
    best = max(e["gflops"].values())
    e["share_of_peak"] = round(best / results["peak_gflops"]["value"], 3) if results.get("peak_gflops") else None


def network_flops_per_evaluation(coreset_images: torch.Tensor, test: ImageDataset, settings: Settings) -> int:
    """Multiply-add FLOPs (x2) of one protocol network: every epoch's forward+backward, then the test pass.

    Counted by torch's ``FlopCounterMode`` (convolutions and matrix products, as FLOP counts are
    reported in the field) on a few images and scaled: both passes are linear in the images.
    """
    channels, height, width = coreset_images.shape[1:]
    net = build_model(settings.model, channels=channels, num_classes=test.num_classes, image_size=(height, width))
    probe = coreset_images[:4].clone()
    with FlopCounterMode(display=False) as counter:
        F.cross_entropy(net(probe), torch.zeros(len(probe), dtype=torch.long)).backward()
    train_per_image = counter.get_total_flops() / len(probe)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        net(probe)
    test_per_image = counter.get_total_flops() / len(probe)
    return int(settings.eval_epochs * len(coreset_images) * train_per_image + len(test) * test_per_image)


def measure_peak_gflops(size: int = 2048, repeats: int = 5) -> dict[str, Any]:
    """This CPU's (or GPU's) fp32 peak as a large GEMM reaches it: the best of ``repeats`` timed products."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b
    best = math.inf
    for _ in range(repeats):
        started = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - started)
    return {"value": round(2 * size**3 / best / 1e9, 1), "how": f"best of {repeats} fp32 {size}x{size} GEMMs"}


def _progress(message: str, results: dict[str, Any], save: Callable[[dict[str, Any]], None]) -> None:
    print(message, file=sys.stderr, flush=True)
    results["peak_memory_mb"] = max(results.get("peak_memory_mb") or 0, peak_memory_mb())
    results["checks"] = checks(results)
    save(results)


#: The issue's targets, each checked from the measured figures.
EVALUATION_TARGET = 3.0
CONDENSE_TARGET = 4.0
ROW_MEMORY_TARGET_MB = 4096


def _check(target: str, value: float | None, met: bool | None) -> dict[str, Any]:
    return {"target": target, "value": value, "met": bool(met) if value is not None else False}


def checks(results: dict[str, Any]) -> dict[str, Any]:
    """One entry per target with its measured value and ``met``; parts not measured are absent."""
    out: dict[str, Any] = {}
    e, c, t = results.get("evaluation"), results.get("condense"), results.get("tuning")
    if e and e.get("speedup_vs_per_image") is not None:
        best = max(v for v in (e.get("speedup_vs_per_image"), e.get("speedup_compiled_vs_per_image")) if v is not None)
        out["evaluation_speedup"] = _check(
            f">= {EVALUATION_TARGET}x the per-image-DSA protocol loop per network (best engine path; "
            "compile paid once per process, reported apart)", best, best >= EVALUATION_TARGET)
    if c and c.get("speedup_no_pool") is not None:
        best = max(v for v in (c.get("speedup_no_pool"), c.get("speedup_compiled_no_pool")) if v is not None)
        out["condense_speedup_exact"] = _check(
            f">= {CONDENSE_TARGET}x the reference DM iteration on the exact (per-iteration) path", best,
            best >= CONDENSE_TARGET)
    if results.get("time_to_accuracy"):
        out["time_to_dm_accuracy"] = results["time_to_accuracy"]["check"]
    if t and t.get("checks"):
        out["tuning_spearman_rho"] = t["checks"]["spearman_rho"]
        out["tuning_time_share"] = t["checks"]["time_share"]
    rows = [*((e or {}).get("row_peak_memory_mb") or {}).values(), *((c or {}).get("row_peak_memory_mb") or {}).values(),
            *(r.get("peak_memory_mb") or 0 for r in (t or {}).get("sets", [])),
            *(r.get("peak_memory_mb") or 0 for r in (results.get("time_to_accuracy") or {}).get("runs", []))]
    if rows:
        worst = max(rows)
        out["row_peak_memory"] = _check(f"<= {ROW_MEMORY_TARGET_MB} MB for every row", worst,
                                        worst <= ROW_MEMORY_TARGET_MB)
    return out


# ---------------------------------------------------------------------------------------------
# Reporting


def _num(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _times(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}×"


def _accuracy(values: list[float] | None) -> str:
    if not values:
        return "-"
    return f"{np.mean(values):.1f} ± {np.std(values):.1f}"


def _threads_of(part: dict[str, Any]) -> str:
    """`` (N threads)`` when the part records the torch threads it ran with."""
    count = part.get("torch_threads")
    return "" if count is None else f" ({count} thread{'' if count == 1 else 's'})"


def _mb(rows: dict[str, Any], key: str) -> str:
    value = (rows or {}).get(key)
    return "-" if value is None else f"{value:.0f}"


def table(results: dict[str, Any]) -> str:
    """Markdown: reference vs engine time per unit of work, the speed-up (reference / engine), each
    engine row's peak RSS, then the tuning table and the targets' checks."""
    lines: list[str] = []
    c, e = results.get("condense"), results.get("evaluation")
    if c or e:
        lines += ["| measurement | reference | engine | speed-up | engine peak RSS MB |", "|---|---|---|---|---|"]
    if c:
        ref, rows = _num(c.get("reference_s_per_it"), 3), c.get("row_peak_memory_mb") or {}
        lines.append(
            f"| condense s/iteration, per-iteration path (exact objective){_threads_of(c)} | {ref} | "
            f"{_num(c.get('engine_no_pool_s_per_it'), 3)} | {_times(c.get('speedup_no_pool'))} | "
            f"{_mb(rows, 'engine_no_pool')} |"
        )
        if c.get("engine_compiled_no_pool_s_per_it") is not None:
            lines.append(
                f"| condense s/iteration, per-iteration path compiled (compile {c['compile_seconds']:.0f} s once per "
                f"process, not counted) | {ref} | {_num(c['engine_compiled_no_pool_s_per_it'], 3)} | "
                f"{_times(c.get('speedup_compiled_no_pool'))} | {_mb(rows, 'engine_compiled_no_pool')} |"
            )
        if c.get("engine_pool_s_per_it") is not None:
            p, pool_s = c["pool_networks"], c["pool_seconds"]
            lines += [
                f"| condense s/iteration, pool of {p} networks (build {pool_s:.1f} s not counted) | {ref} | "
                f"{_num(c['engine_pool_s_per_it'], 3)} | {_times(c.get('speedup_pool'))} | {_mb(rows, 'engine_pool')} |",
                f"| condense s/iteration, pool build amortised over a 10-minute run | {ref} | "
                f"{_num(c['engine_pool_amortised_s_per_it'], 3)} | {_times(c.get('speedup_pool_amortised'))} | |",
            ]
    if e:
        engine = _num(e.get("engine_s_per_network"), 2)
        compiled = _num(e.get("engine_compiled_s_per_network"), 2)
        per_image = _num(e.get("reference_per_image_dsa_s_per_network"), 2)
        per_batch = _num(e.get("reference_vectorised_dsa_s_per_network"), 2)
        rows = e.get("row_peak_memory_mb") or {}
        lines += [
            f"| evaluation s/network, reference DSA per image{_threads_of(e)} | {per_image} | {engine} | "
            f"{_times(e.get('speedup_vs_per_image'))} | {_mb(rows, 'engine')} |",
            f"| evaluation s/network, reference DSA per batch | {per_batch} | {engine} | "
            f"{_times(e.get('speedup_vs_vectorised'))} | |",
        ]
        if e.get("engine_compiled_s_per_network") is not None:
            lines += [
                f"| evaluation s/network compiled (compile {e['compile_seconds']:.0f} s once per process, not counted),"
                f" reference DSA per image | {per_image} | {compiled} | {_times(e.get('speedup_compiled_vs_per_image'))}"
                f" | {_mb(rows, 'engine_compiled')} |",
                f"| evaluation compiled, compile spread over these {e['runs']} networks | {per_image} | | "
                f"{_times(e.get('speedup_compiled_amortised_vs_per_image'))} | |",
            ]
        g = e.get("gflops") or {}
        if g:
            peak = (results.get("peak_gflops") or {}).get("value")
            share = e.get("share_of_peak")
            share_text = "-" if share is None else f"{100 * share:.0f} % of peak"
            peak_text = "" if peak is None else f"; GEMM peak {peak:.0f}"
            lines.append(
                f"| evaluation GFLOP/s ({e.get('gflop_per_network')} GFLOP per network; eager / compiled{peak_text}) | "
                f"{_num(g.get('reference_per_image'), 1)} | {_num(g.get('engine'), 1)} / "
                f"{_num(g.get('engine_compiled'), 1)} | {share_text} | |"
            )
        lines.append(
            f"| test accuracy % (mean ± std over {e['runs']} networks; reference: DSA per image; engine: eager"
            f"{' / compiled' if e.get('engine_compiled_accuracies') else ''}) | {_accuracy(e.get('reference_accuracies'))} | "
            f"{_accuracy(e.get('engine_accuracies'))}"
            f"{' / ' + _accuracy(e.get('engine_compiled_accuracies')) if e.get('engine_compiled_accuracies') else ''} | | |"
        )
    if results.get("tuning"):
        lines += ["", f"Tuning protocol against the full protocol, same evaluation seed{_threads_of(results['tuning'])}:",
                  "", tuning_table(results["tuning"])]  # fmt: skip
    if results.get("time_to_accuracy"):
        lines += ["", "Time to DM's published accuracy (Fashion-MNIST ipc 10, 83.5 %):", "",
                  time_table(results["time_to_accuracy"])]
    checks_ = results.get("checks") or {}
    if checks_:
        lines += ["", "Targets:", ""]
        for name, check in checks_.items():
            value = check.get("value")
            verdict = "met" if check["met"] else "missed"
            if not check.get("complete", True):
                verdict = "not a result (fewer seeds than planned), so not met"
            lines.append(f"- `{name}` {check['target']}: {verdict} (measured {value})")
    return "\n".join(lines)


def _describe(results: dict[str, Any]) -> str:
    s, c = results["settings"], results.get("condense") or {}
    return (
        f"{results['dataset']}, DM at ipc {s['ipc']} with {s['batch_real']} real images per class per iteration, "
        f"{c.get('iterations', s['iterations'])} timed iterations per side; evaluation: {s['eval_runs']} ConvNet-3 "
        f"× {s['eval_epochs']} epochs per side on a random-real coreset of the same size. Speed-up = reference "
        "time / engine time. The per-iteration path computes the reference's objective; the pool matches cached "
        "real statistics of a fixed set of networks instead (`fedcond/condense/targets/pool.py`), so it is a cheaper, "
        "slightly different objective."
    )


def update_readme(path: Path, results: dict[str, Any], command: str) -> None:
    """Replace only the block between the benchmark-speed markers of ``path``."""
    lines = [
        *measured_header(results, command),
        _describe(results),
        "",
        table(results),
        *(() if results.get("complete", True) else ("\nThe run was stopped early: these are the rows it measured.",)),
    ]
    replace_readme_block(path, README_START, README_END, lines)


def _read_results(path: Path) -> dict[str, Any]:
    def is_ours(results: dict[str, Any]) -> bool:
        return results.get("benchmark") == "speed" and all(k in results for k in ("date", "machine", "dataset", "settings"))

    return read_results(path, is_ours, "benchmark_speed")


def _time_settings(settings: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in settings.items() if k.startswith("time_to_accuracy_")}


def merge_results(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One report from several runs: each part from the last run that measured it, tuning sets pooled."""
    merged = dict(runs[0])
    tuning = [r["tuning"] for r in runs if r.get("tuning")]
    for other in runs[1:]:
        for key in ("condense", "evaluation", "time_to_accuracy", "peak_gflops"):
            if other.get(key):
                merged[key] = other[key]
                if key == "time_to_accuracy":
                    merged["settings"] = {**merged["settings"], **_time_settings(other["settings"])}
        merged["peak_memory_mb"] = max(merged.get("peak_memory_mb") or 0, other.get("peak_memory_mb") or 0) or None
        merged["date"] = max(merged["date"], other["date"])
    if tuning:
        merged["tuning"] = merge_parts(tuning)
    part = merged.get("time_to_accuracy")
    if part and part.get("runs"):
        # The seeds the row was to have: recorded by the part, or by its run's settings.
        planned = part.get("seeds") or merged["settings"].get("time_to_accuracy_seeds") or []
        merged["time_to_accuracy"] = {**part, **time_summary(part["runs"], max(len(planned), len(part["runs"])))}
    merged["complete"] = all(r.get("complete", True) for r in runs)
    merged["parts"] = sorted({p for r in runs for p in r.get("parts", PARTS)}, key=PARTS.index)
    merged["checks"] = checks(merged)
    if len(runs) > 1:
        merged["command"] = "\n".join(dict.fromkeys(r["command"] for r in runs if r.get("command")))
    return merged


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="benchmark_speed", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out", help="output folder (required unless --from-results; with it, where the merged results.json goes)"
    )
    parser.add_argument(
        "--quick", action="store_true", help="tiny settings on digits: checks the script, measures nothing"
    )
    parser.add_argument("--dataset", choices=DATASETS, help=f"default: {FULL.dataset} ({QUICK.dataset} with --quick)")
    parser.add_argument(
        "--pool-networks",
        type=int,
        metavar="P",
        help=f"networks in the engine's pool; 0 skips the pool measurement (default: {FULL.pool_networks}, "
        f"{QUICK.pool_networks} with --quick)",
    )
    parser.add_argument(
        "--parts",
        default=",".join(PARTS),
        help=f"comma-separated parts to measure, of {', '.join(PARTS)} (default: all)",
    )
    parser.add_argument(
        "--tuning-shard",
        default="0/1",
        metavar="K/N",
        help="measure every N-th tuning set from the K-th (N processes share the part; merge with --from-results)",
    )
    add_update_readme_argument(parser)
    parser.add_argument(
        "--from-results",
        nargs="+",
        metavar="results.json",
        help="do not run: report (and --update-readme) earlier runs; several files merge their parts "
        "(later files win, tuning sets are pooled)",
    )
    args = parser.parse_args(argv)
    parts = tuple(p.strip() for p in args.parts.split(",") if p.strip())
    if not parts or any(p not in PARTS for p in parts):
        parser.error(f"--parts takes a comma-separated subset of {', '.join(PARTS)}; got {args.parts!r}")
    try:
        k, n = (int(v) for v in args.tuning_shard.split("/"))
    except ValueError:
        parser.error(f"--tuning-shard takes K/N with integers, got {args.tuning_shard!r}")
    if not 0 <= k < n:
        parser.error(f"--tuning-shard K/N needs 0 <= K < N, got {args.tuning_shard!r}")
    if args.out is None and args.from_results is None:
        parser.error("--out is required unless --from-results is given")
    if args.pool_networks is not None and args.pool_networks < 0:
        parser.error("--pool-networks must be >= 0")
    settings = QUICK if args.quick else FULL
    if args.dataset is not None:
        settings = dataclasses.replace(settings, dataset=args.dataset)
    if args.pool_networks is not None:
        settings = dataclasses.replace(settings, pool_networks=args.pool_networks)

    given = argv if argv is not None else sys.argv[1:]
    command = f"python -m simulations.benchmark_speed {shlex.join(given)}".strip()
    try:
        if args.from_results:
            results = merge_results([_read_results(Path(f)) for f in args.from_results])
            # The block names the command that measured the figures, not the one that reprinted them.
            command = results.get("command", command)
            if args.out:
                Path(args.out).mkdir(parents=True, exist_ok=True)
                atomic_write_json(Path(args.out) / "results.json", results)
        else:
            out = Path(args.out)
            out.mkdir(parents=True, exist_ok=True)
            started = time.perf_counter()

            def save(results: dict[str, Any]) -> None:
                results["command"] = command
                results["total_seconds"] = round(time.perf_counter() - started, 1)
                atomic_write_json(out / "results.json", results)

            results = run(settings, args.quick, save, parts=parts, shard=(k, n))
            save(results)
            if "skipped" in results:
                print(f"skipping {settings.dataset}: {results['skipped'][settings.dataset]}", file=sys.stderr)
                return 0
        print(table(results))
        if args.update_readme:
            update_readme(Path(args.update_readme), results, command)
    except FedcondError as exc:
        print(f"benchmark_speed: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
