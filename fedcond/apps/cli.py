"""The ``fedcond`` command line: condense, teacher, evaluate, show, audit, federate, continual, datasets.

Every command reads one config (``--config FILE.yaml`` plus ``--set key=value`` overrides),
writes ``--out DIR/results.json`` and prints a short table. Bad input of any kind ends with one
line on stderr naming the problem and exit status 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fedcond.config import Config
from fedcond.errors import ConfigError, FedcondError

if TYPE_CHECKING:  # the heavy modules are imported by the commands that need them
    import torch

    from fedcond.data import DatasetSplits, ImageDataset
    from fedcond.evaluation import EvaluationResult
    from fedcond.labels import Teacher
    from fedcond.synthetic import SyntheticSet

EXIT_USAGE = 2


def _common(parser: argparse.ArgumentParser, command: str) -> None:
    parser.add_argument("--config", metavar="FILE.yaml", help="experiment config (defaults apply to missing keys)")
    parser.add_argument(
        "--set",
        metavar="KEY=VALUE",
        action="append",
        default=[],
        dest="overrides",
        help="override a config key, e.g. --set condense.ipc=10 (repeatable)",
    )
    parser.add_argument("--out", metavar="DIR", default=f"runs/{command}", help="output folder (default: %(default)s)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fedcond", description="Train on condensed data.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("condense", help="condense a dataset, evaluate the set, compare with coreset baselines")
    _common(p, "condense")
    p.add_argument("--baselines", default="", metavar="A,B", help="coreset baselines of the same size: random,herding,k-center")
    p.add_argument("--resume", action="store_true", help="continue from DIR/checkpoint.pt")
    p.add_argument("--no-evaluate", action="store_true", help="skip the evaluation protocol")
    p.set_defaults(handler=cmd_condense)

    p = sub.add_parser("teacher", help="train a teacher on the real training split (condense.teacher) and save it")
    _common(p, "teacher")
    p.set_defaults(handler=cmd_teacher)

    p = sub.add_parser("evaluate", help="evaluate a saved synthetic set with the protocol")
    _common(p, "evaluate")
    p.add_argument("--synthetic", required=True, metavar="FILE.pt", help="a saved synthetic set")
    p.add_argument(
        "--robust", action="store_true",
        help="also attack every evaluation network (PGD, AutoAttack; robust_evaluation) and write results.json's robust section",
    )  # fmt: skip
    p.set_defaults(handler=cmd_evaluate)

    p = sub.add_parser("show", help="write an image grid (PNG) of a saved synthetic set")
    _common(p, "show")
    p.add_argument("--synthetic", required=True, metavar="FILE.pt", help="a saved synthetic set")
    p.set_defaults(handler=cmd_show)

    p = sub.add_parser("federate", help="Flower simulation: clients condense and upload synthetic sets; compare strategies")
    _common(p, "federate")
    p.add_argument("--verbose", action="store_true", help="show Flower's and Ray's logs")
    p.set_defaults(handler=cmd_federate)

    p = sub.add_parser("audit", help="membership inference against a synthetic set: what it leaks about its source")
    _common(p, "audit")
    p.add_argument("--synthetic", required=True, metavar="FILE.pt", help="a saved synthetic set")
    p.set_defaults(handler=cmd_audit)

    p = sub.add_parser("continual", help="Avalanche: condensed replay memory against Avalanche's replay and GDumb")
    _common(p, "continual")
    p.set_defaults(handler=cmd_continual)

    p = sub.add_parser("datasets", help="list the datasets and whether they are available here")
    _common(p, "datasets")
    p.set_defaults(handler=cmd_datasets)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        config = Config.load(args.config, args.overrides)
        out = Path(args.out)
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"cannot create output folder {out}: {exc.strerror or exc}") from None
        handler: Callable[[argparse.Namespace, Config, Path], None] = args.handler
        handler(args, config, out)
    except FedcondError as exc:
        print(f"fedcond: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("fedcond: interrupted", file=sys.stderr)
        return 130
    return 0


# ---------------------------------------------------------------------- commands
def cmd_federate(args: argparse.Namespace, config: Config, out: Path) -> None:
    from fedcond.apps.federate import simulate
    from fedcond.data import load_dataset
    from fedcond.report import print_table

    load_dataset(config.dataset)  # a missing dataset fails here, in one line, before Ray starts
    results = simulate(config, out, verbose=args.verbose)
    rows = [
        [name, len(s["rounds"]), s["final_accuracy"], s["total_upload_bytes"] / 2**20, s["total_download_bytes"] / 2**20,
         len(s["rejected_clients"]), len(s["failed_clients"]), s["seconds"]]
        for name, s in results["strategies"].items()
    ]  # fmt: skip
    headers = ["strategy", "rounds", "accuracy %", "upload MiB", "download MiB", "rejected", "failed", "seconds"]
    print_table(headers, rows)
    print(f"results: {out / 'results.json'}, plot: {out / 'accuracy_vs_upload.png'}")


def cmd_audit(args: argparse.Namespace, config: Config, out: Path) -> None:
    from fedcond.data import load_dataset
    from fedcond.device import resolve_device
    from fedcond.privacy.audit import audit
    from fedcond.report import print_table, write_results

    device = resolve_device(config.device)
    splits = load_dataset(config.dataset)
    synthetic = _load_synthetic(args.synthetic, config, splits.test)
    results = {"synthetic_file": str(args.synthetic), **audit(synthetic, splits, config, device), "config": config.to_dict()}
    write_results(out, "audit", results)
    eps = results["privacy"]["epsilon"]
    print(f"{results['dataset']}: {results['members']} members vs {results['nonmembers']} non-members; "
          f"epsilon {'inf (not private)' if eps is None else f'{eps:.3g}'}")  # fmt: skip
    rows = [[name, a["auc"], a["tpr_at_1pct_fpr"], a["tpr_at_0.1pct_fpr"]] for name, a in results["attacks"].items()]
    print_table(["attack", "AUC", "TPR@1%FPR", "TPR@0.1%FPR"], rows)


def cmd_continual(args: argparse.Namespace, config: Config, out: Path) -> None:
    from fedcond.apps.continual import PLOT_FILE, run_continual
    from fedcond.report import print_table

    results = run_continual(config, out)
    rows = [
        [name, f"{m['final_average_accuracy']:.2f} ± {m['final_average_accuracy_std']:.2f}",
         f"{m['forgetting']:.2f} ± {m['forgetting_std']:.2f}", m["memory_size"],
         sum(m["condense_seconds_per_experience"]) / len(m["condense_seconds_per_experience"]),
         sum(m["train_seconds_per_experience"]) / len(m["train_seconds_per_experience"])]
        for name, m in results["methods"].items()
    ]  # fmt: skip
    print(f"{results['benchmark']}, {results['experiences']} experiences, memory {results['mem_size']}, seeds {results['seeds']}")
    print_table(["method", "avg accuracy %", "forgetting %", "memory", "condense s/exp", "train s/exp"], rows)
    print(f"results: {out / 'results.json'}, plot: {out / PLOT_FILE}")


def cmd_condense(args: argparse.Namespace, config: Config, out: Path) -> None:
    import yaml

    from fedcond.condense import CONDENSE_METHODS, condense
    from fedcond.data import load_dataset
    from fedcond.device import resolve_device
    from fedcond.evaluation import evaluate_synthetic
    from fedcond.io import atomic_write_text
    from fedcond.report import peak_memory_mb, print_table, write_results

    baselines = [b.strip() for b in args.baselines.split(",") if b.strip()]
    coresets = [name for name in CONDENSE_METHODS.names() if name != "matching"]
    for name in baselines:
        if name not in coresets:
            raise ConfigError(f"unknown baseline {name!r}; choose from: {', '.join(coresets)}")
    checkpoint = out / "checkpoint.pt"
    if args.resume and not checkpoint.exists():
        raise ConfigError(f"--resume: no checkpoint in {out}")
    if not args.resume:
        checkpoint.unlink(missing_ok=True)

    device = resolve_device(config.device)
    splits = load_dataset(config.dataset)
    atomic_write_text(out / "config.yaml", yaml.safe_dump(config.to_dict(), sort_keys=False))
    teacher = _teacher(config, splits, device)
    synthetic = condense(splits.train, config, device=device, checkpoint=checkpoint, teacher=teacher)
    synthetic.save(out / "synthetic.pt")
    synthetic.save_grid(out / "synthetic.png")
    c = config.condense
    results: dict[str, Any] = {
        "dataset": config.dataset.name,
        "method": c.method,
        "feature_map": c.feature_map if c.method == "matching" else None,
        "discrepancy": c.discrepancy if c.method == "matching" else None,
        "ipc": c.ipc,
        "iterations": c.iterations if c.method == "matching" else 0,
        "num_synthetic": len(synthetic),
        "factor": synthetic.metadata.get("factor", 1),
        "seed": config.seed,
        "device": str(device),
        "condense_seconds": round(synthetic.metadata["timings"]["condense_seconds"], 3),
        "pool_seconds": round(synthetic.metadata["timings"].get("pool_seconds", 0.0), 3),
        "synthetic_set": "synthetic.pt",
        "privacy": synthetic.metadata["privacy"],
        "labels": synthetic.metadata["labels"],
        "teacher": teacher.info() if teacher is not None else None,
        "config": config.to_dict(),
    }
    rows = []
    if not args.no_evaluate:
        evaluations = _evaluate_all(synthetic, splits.test, config, device, teacher)
        results["evaluation"] = evaluations[0].to_dict()
        results["cross_architecture"] = {e.model: e.to_dict() for e in evaluations[1:]}
        rows += [[_label(config), e.model, e.accuracy_mean, e.accuracy_std, results["condense_seconds"]] for e in evaluations]
        results["baselines"] = {}
        for name in baselines:
            # Coresets are real samples: a non-private reference even next to a private set.
            baseline_config = dataclasses.replace(
                config, condense=dataclasses.replace(c, method=name), privacy=dataclasses.replace(config.privacy, epsilon=None)
            )
            # With teacher labels a baseline gets the same teacher: DD-Ranking's random-real control.
            baseline = condense(splits.train, baseline_config, device=device, teacher=teacher)
            evaluation = evaluate_synthetic(baseline, splits.test, config, device=device, teacher=teacher)
            seconds = round(baseline.metadata["timings"]["condense_seconds"], 3)
            results["baselines"][name] = {**evaluation.to_dict(), "condense_seconds": seconds}
            rows.append([_label(baseline_config), evaluation.model, evaluation.accuracy_mean, evaluation.accuracy_std, seconds])
    results["peak_memory_mb"] = peak_memory_mb(device)
    write_results(out, "condense", results)
    per_class = f"{c.ipc} per class" + (f", stored as {c.factor}x{c.factor} tiles" if c.factor > 1 else "")
    print(f"{config.dataset.name}: {len(synthetic)} images ({per_class}) in {results['condense_seconds']:.1f} s")
    if rows:
        print_table(["method", "model", "acc %", "± std", "seconds"], rows)
    print(f"wrote {out / 'synthetic.pt'}, {out / 'results.json'}")


def cmd_teacher(args: argparse.Namespace, config: Config, out: Path) -> None:
    from fedcond.data import load_dataset
    from fedcond.device import resolve_device
    from fedcond.labels import build_teacher, measure_teacher, save_teacher
    from fedcond.report import write_results

    device = resolve_device(config.device)
    splits = load_dataset(config.dataset)
    teacher = build_teacher(splits.train, config, device=device)
    measure_teacher(teacher, splits.test, config)
    save_teacher(teacher, out / "teacher.pt")
    write_results(out, "teacher", {"dataset": config.dataset.name, "teacher": teacher.info(), "teacher_file": "teacher.pt", "config": config.to_dict()})
    print(
        f"{config.dataset.name}: {teacher.model} teacher, {teacher.steps} steps in {teacher.seconds:.1f} s, "
        f"test accuracy {teacher.test_accuracy:.2f}%: wrote {out / 'teacher.pt'} (use --set condense.teacher.weights=...)"
    )


def cmd_evaluate(args: argparse.Namespace, config: Config, out: Path) -> None:
    from fedcond.data import load_dataset
    from fedcond.device import resolve_device
    from fedcond.report import peak_memory_mb, print_table, write_results

    device = resolve_device(config.device)
    splits = load_dataset(config.dataset)
    synthetic = _load_synthetic(args.synthetic, config, splits.test)
    # Only online relabelling needs the teacher here: a saved set carries its labels.
    teacher = _teacher(config, splits, device) if config.evaluation.online_relabel else None
    robust = None
    if args.robust:
        from fedcond.robustness import evaluate_robust

        # The protocol's model is attacked; cross-architecture models are evaluated clean.
        first, robust = evaluate_robust(synthetic, splits.test, config, device=device, teacher=teacher)
        evaluations = [first, *_evaluate_all(synthetic, splits.test, config, device, teacher)[1:]]
    else:
        evaluations = _evaluate_all(synthetic, splits.test, config, device, teacher)
    write_results(
        out,
        "evaluate",
        {
            "dataset": config.dataset.name,
            "synthetic_set": str(args.synthetic),
            "method": synthetic.metadata.get("method"),
            "discrepancy": synthetic.metadata.get("discrepancy"),
            "ipc": synthetic.metadata.get("ipc"),
            "num_synthetic": len(synthetic),
            "labels": synthetic.metadata.get("labels"),
            "evaluation": evaluations[0].to_dict(),
            "cross_architecture": {e.model: e.to_dict() for e in evaluations[1:]},
            "robust": robust,
            "peak_memory_mb": peak_memory_mb(device),
            "config": config.to_dict(),
        },
    )
    print_table(["model", "runs", "epochs", "acc %", "± std"], [[e.model, e.runs, e.epochs, e.accuracy_mean, e.accuracy_std] for e in evaluations])
    if robust is not None:
        rows = [["clean", "-", robust["clean"]["mean"], robust["clean"]["std"]]]
        rows += [["pgd", eps, a["mean"], a["std"]] for eps, a in robust["pgd"]["accuracy"].items()]
        if robust["autoattack"] is not None:
            rows += [[f"autoattack ({robust['autoattack']['version']})", eps, a["mean"], a["std"]]
                     for eps, a in robust["autoattack"]["accuracy"].items()]  # fmt: skip
        print(f"attacked on {robust['test_images']} test images ({robust['library']}, L-inf in pixel space):")
        print_table(["attack", "epsilon", "acc %", "± std"], rows)


def cmd_show(args: argparse.Namespace, config: Config, out: Path) -> None:
    from fedcond.report import write_results
    from fedcond.synthetic import SyntheticSet

    synthetic = SyntheticSet.load(args.synthetic)
    image = out / "synthetic.png"
    synthetic.save_grid(image)
    counts = synthetic.class_counts().tolist()
    top = synthetic.top_labels() if synthetic.is_soft else None
    write_results(
        out,
        "show",
        {
            "synthetic_set": str(args.synthetic),
            "image": image.name,
            "num_synthetic": len(synthetic),
            "image_shape": list(synthetic.image_shape),
            "soft_labels": synthetic.is_soft,
            "labels": synthetic.metadata.get("labels"),
            "top_labels": [{"class": k, "probability": round(q, 4)} for k, q in top] if top else None,
            "class_counts": counts,
            "metadata": synthetic.metadata,
        },
    )
    print(f"{len(synthetic)} images {tuple(synthetic.image_shape)}, per class {counts}: wrote {image}")


def cmd_datasets(args: argparse.Namespace, config: Config, out: Path) -> None:
    from fedcond.data import DATASETS, dataset_availability
    from fedcond.report import print_table, write_results

    rows, found = [], {}
    for name in DATASETS.names():
        cfg = config.dataset if name == config.dataset.name else dataclasses.replace(config.dataset, name=name, data_root=None)
        available, detail = dataset_availability(cfg)
        found[name] = {"available": available, "detail": detail}
        rows.append([name, "yes" if available else "no", detail])
    write_results(out, "datasets", {"datasets": found})
    print_table(["dataset", "available", "where / how to get it"], rows)


# ---------------------------------------------------------------------- helpers
def _evaluate_all(
    synthetic: SyntheticSet, test: ImageDataset, config: Config, device: torch.device, teacher: Teacher | None = None
) -> list[EvaluationResult]:
    """The protocol's model first, then every cross-architecture model."""
    from fedcond.evaluation import evaluate_synthetic

    models = [config.evaluation.model] + [m for m in config.evaluation.cross_models if m != config.evaluation.model]
    return [evaluate_synthetic(synthetic, test, config, model=m, device=device, teacher=teacher) for m in models]


def _teacher(config: Config, splits: DatasetSplits, device: torch.device) -> Teacher | None:
    """With ``condense.labels: teacher``, the teacher (trained on the training split, or loaded),
    its test accuracy measured; None otherwise."""
    from fedcond.labels import build_teacher, measure_teacher

    if config.condense.label_source != "teacher":
        return None
    teacher = build_teacher(splits.train, config, device=device)
    measure_teacher(teacher, splits.test, config)
    return teacher


def _load_synthetic(path: str, config: Config, test: ImageDataset) -> SyntheticSet:
    from fedcond.synthetic import SyntheticSet

    synthetic = SyntheticSet.load(path, num_classes=test.num_classes, image_shape=tuple(test.images.shape[1:]))
    source = synthetic.metadata.get("dataset")
    if source is not None and source != config.dataset.name:
        raise ConfigError(
            f"{path} was condensed from {source!r} but the config's dataset is {config.dataset.name!r}; "
            f"pass --set dataset.name={source}"
        )
    return synthetic


def _label(config: Config) -> str:
    c = config.condense
    name = f"{c.feature_map}/{c.discrepancy}" if c.method == "matching" else c.method
    return name if c.label_source == "hard" else f"{name}, {c.label_source} labels"


if __name__ == "__main__":
    sys.exit(main())
