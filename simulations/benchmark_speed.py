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
import dataclasses
import datetime as dt
import json
import math
import os
import shlex
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from fedcond import Config, condense, evaluate_synthetic, load_dataset
from fedcond.augment import apply_dsa, dsa, sample_dsa_params
from fedcond.data import ImageDataset, dataset_availability
from fedcond.device import resolve_device
from fedcond.errors import FedcondError
from fedcond.evaluation import run_seed
from fedcond.io import atomic_write_json
from fedcond.models import build_model
from fedcond.report import peak_memory_mb
from fedcond.seeds import derive_seed
from simulations.reporting import add_update_readme_argument, machine, measured_header, replace_readme_block

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
    eval_runs: int = 2
    eval_epochs: int = 300
    eval_lr: float = 0.01
    eval_momentum: float = 0.9
    eval_weight_decay: float = 5e-4
    eval_batch: int = 256
    test_batch: int = 256
    model: str = "convnet"
    dsa_strategy: str = "color_crop_cutout_flip_scale_rotate"


FULL = Settings()
#: Seconds on digits: checks the script end to end, measures nothing worth reporting.
QUICK = Settings(dataset="digits", iterations=2, eval_runs=1, eval_epochs=2, batch_real=16, pool_networks=4)


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


# ---------------------------------------------------------------------------------------------
# The engine side


def engine_config(
    settings: Settings, *, method: str = "matching", iterations: int | None = None, pool: int = 0
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


def run(settings: Settings, quick: bool, save: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    """Measure both comparisons; ``save`` receives the results after every measurement."""
    probe = engine_config(settings)
    engine_config(settings, pool=settings.pool_networks)  # a config error shows now, not after minutes
    results: dict[str, Any] = {
        "benchmark": "speed",
        "date": dt.date.today().isoformat(),
        "machine": machine(),
        "dataset": settings.dataset,
        "quick": quick,
        "complete": False,
        "settings": dataclasses.asdict(settings),
        "condense": None,
        "evaluation": None,
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
    train, test = splits.train, splits.test
    n = settings.iterations

    # -- comparison 1: condensation
    c: dict[str, Any] = {
        "iterations": n,
        "pool_networks": settings.pool_networks,
        "reference_s_per_it": None,
        "engine_no_pool_s_per_it": None,
        "engine_pool_s_per_it": None,
        "engine_pool_amortised_s_per_it": None,
        "pool_seconds": None,
        "speedup_no_pool": None,
        "speedup_pool": None,
        "speedup_pool_amortised": None,
    }
    results["condense"] = c
    reference = reference_condense(train, settings, n, device=device)
    c["reference_s_per_it"] = round(reference.seconds_per_iteration, 4)
    _progress(f"reference condense: {reference.seconds_per_iteration:.3f} s/it", results, save)

    # The engine's own warm-up: one untimed iteration on the per-iteration path.
    condense(train, engine_config(settings, iterations=settings.warmup_iterations), device=device)
    synthetic = condense(train, engine_config(settings, iterations=n), device=device)
    no_pool = synthetic.metadata["timings"]["condense_seconds"] / max(1, n)
    c["engine_no_pool_s_per_it"] = round(no_pool, 4)
    c["speedup_no_pool"] = _ratio(reference.seconds_per_iteration, no_pool)
    _progress(f"engine condense, no pool: {no_pool:.3f} s/it", results, save)

    if settings.pool_networks > 0:
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
        _progress(
            f"engine condense, pool of {settings.pool_networks}: {per_it:.3f} s/it "
            f"(pool built in {pool_seconds:.1f} s; amortised {amortised:.3f} s/it)",
            results,
            save,
        )

    # -- comparison 2: evaluation of a random-real coreset
    coreset = condense(train, engine_config(settings, method="random"), device=device)
    e: dict[str, Any] = {
        "epochs": settings.eval_epochs,
        "runs": settings.eval_runs,
        "synthetic_images": len(coreset.images),
        "reference_per_image_dsa_s_per_network": None,
        "reference_vectorised_dsa_s_per_network": None,
        "engine_s_per_network": None,
        "speedup_vs_per_image": None,
        "speedup_vs_vectorised": None,
        "reference_accuracies": None,
        "reference_vectorised_accuracies": None,
        "engine_accuracies": None,
    }
    results["evaluation"] = e
    for per_image, name in ((True, "per_image"), (False, "vectorised")):
        accuracies = []
        started = time.perf_counter()
        for r in range(settings.eval_runs):
            accuracies.append(
                reference_train_and_test(
                    coreset.images,
                    coreset.labels,
                    test,
                    settings,
                    seed=run_seed(settings.seed, r),
                    per_image_dsa=per_image,
                    device=device,
                )
            )
        _sync(device)
        seconds = (time.perf_counter() - started) / settings.eval_runs
        e[f"reference_{name}_dsa_s_per_network"] = round(seconds, 3)
        key = "reference_accuracies" if per_image else "reference_vectorised_accuracies"
        e[key] = [round(a, 2) for a in accuracies]
        _progress(f"reference evaluation, {name.replace('_', '-')} DSA: {seconds:.2f} s/network", results, save)

    evaluation = evaluate_synthetic(coreset, test, engine_config(settings, method="random"), device=device)
    engine_seconds = evaluation.seconds / settings.eval_runs
    e["engine_s_per_network"] = round(engine_seconds, 3)
    e["engine_accuracies"] = [round(a, 2) for a in evaluation.accuracies]
    e["speedup_vs_per_image"] = _ratio(e["reference_per_image_dsa_s_per_network"], engine_seconds)
    e["speedup_vs_vectorised"] = _ratio(e["reference_vectorised_dsa_s_per_network"], engine_seconds)
    _progress(f"engine evaluation: {engine_seconds:.2f} s/network", results, save)

    results["complete"] = True
    results["peak_memory_mb"] = peak_memory_mb(device)
    results["load_average_1min"]["end"] = round(os.getloadavg()[0], 2)
    return results


def _progress(message: str, results: dict[str, Any], save: Callable[[dict[str, Any]], None]) -> None:
    print(message, file=sys.stderr, flush=True)
    results["peak_memory_mb"] = peak_memory_mb()
    save(results)


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


def table(results: dict[str, Any]) -> str:
    """Markdown table: reference vs engine time per unit of work, and the speed-up (reference / engine)."""
    lines = [
        "| measurement | reference | engine | speed-up |",
        "|---|---|---|---|",
    ]
    c, e = results.get("condense"), results.get("evaluation")
    if c:
        ref = _num(c.get("reference_s_per_it"), 3)
        lines.append(
            f"| condense s/iteration, per-iteration path | {ref} | {_num(c.get('engine_no_pool_s_per_it'), 3)} | "
            f"{_times(c.get('speedup_no_pool'))} |"
        )
        if c.get("engine_pool_s_per_it") is not None:
            p, pool_s = c["pool_networks"], c["pool_seconds"]
            lines += [
                f"| condense s/iteration, pool of {p} networks (build {pool_s:.1f} s not counted) | {ref} | "
                f"{_num(c['engine_pool_s_per_it'], 3)} | {_times(c.get('speedup_pool'))} |",
                f"| condense s/iteration, pool build amortised over a 10-minute run | {ref} | "
                f"{_num(c['engine_pool_amortised_s_per_it'], 3)} | {_times(c.get('speedup_pool_amortised'))} |",
            ]
    if e:
        engine = _num(e.get("engine_s_per_network"), 2)
        per_image = _num(e.get("reference_per_image_dsa_s_per_network"), 2)
        per_batch = _num(e.get("reference_vectorised_dsa_s_per_network"), 2)
        lines += [
            f"| evaluation s/network, reference DSA per image | {per_image} | {engine} | "
            f"{_times(e.get('speedup_vs_per_image'))} |",
            f"| evaluation s/network, reference DSA per batch | {per_batch} | {engine} | "
            f"{_times(e.get('speedup_vs_vectorised'))} |",
            f"| test accuracy % (mean ± std over {e['runs']} networks; reference: DSA per image) | "
            f"{_accuracy(e.get('reference_accuracies'))} | {_accuracy(e.get('engine_accuracies'))} | |",
        ]
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
    try:
        results = json.loads(path.read_text())
    except OSError as exc:
        raise FedcondError(f"cannot read {path}: {exc.strerror or exc}") from None
    except json.JSONDecodeError as exc:
        raise FedcondError(f"{path} is not JSON: {exc}") from None
    if not isinstance(results, dict) or results.get("benchmark") != "speed" or not all(
        k in results for k in ("date", "machine", "dataset", "settings")
    ):
        raise FedcondError(f"{path} is not a benchmark_speed results.json")
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="benchmark_speed", description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="output folder (required unless --from-results)")
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
    add_update_readme_argument(parser)
    parser.add_argument(
        "--from-results", metavar="results.json", help="do not run: report (and --update-readme) an earlier run"
    )
    args = parser.parse_args(argv)
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
            results = _read_results(Path(args.from_results))
            # The block names the command that measured the figures, not the one that reprinted them.
            command = results.get("command", command)
        else:
            out = Path(args.out)
            out.mkdir(parents=True, exist_ok=True)
            started = time.perf_counter()

            def save(results: dict[str, Any]) -> None:
                results["command"] = command
                results["total_seconds"] = round(time.perf_counter() - started, 1)
                atomic_write_json(out / "results.json", results)

            results = run(settings, args.quick, save)
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
