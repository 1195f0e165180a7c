"""What every benchmark under ``simulations/`` shares: the machine it ran on, its block in docs/benchmarks.md.

Each benchmark's table lives between its ``<!-- benchmark-NAME:start -->`` and ``end`` markers in
``docs/benchmarks.md`` (:data:`BENCHMARKS_PAGE`); ``--update-readme`` without a path rewrites that
block there, ``--update-readme FILE`` in another file that has the markers.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from fedcond.config import Config
from fedcond.data import dataset_availability
from fedcond.errors import FedcondError
from fedcond.io import atomic_write_json, atomic_write_text

ROOT = Path(__file__).resolve().parents[1]
#: Where the benchmarks' marker blocks live: ``--update-readme`` with no path writes here.
BENCHMARKS_PAGE = ROOT / "docs" / "benchmarks.md"


def machine() -> dict[str, Any]:
    """The facts a timing needs next to it."""
    return {
        "cpu": platform.processor() or platform.machine(),
        "cpu_model": _cpu_model(),
        # The vector ISA torch's CPU kernels use here (AVX2, AVX512, ...): speeds differ by machine.
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "device": "cuda" if torch.cuda.is_available() else "cpu",
    }


def code_version() -> dict[str, Any]:
    """The commit a benchmark ran from, and whether the tree had uncommitted changes.

    A figure is only reproducible from its command at the code that produced it; ``commit`` is
    None outside a git checkout (an installed copy), so a reader knows it cannot be traced.
    """
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}
    return {"commit": commit, "dirty": bool(status.strip())}


def results_writer(
    out: Path, module: str, argv: Sequence[str] | None
) -> tuple[str, Callable[[dict[str, Any]], None]]:
    """The command a benchmark runs as, and the ``save`` that keeps its results as it goes.

    Parameters
    ----------
    out
        The run's folder: ``save`` writes ``out/results.json`` atomically (an interrupted write
        never loses the rows already saved).
    module
        The benchmark's module, e.g. ``simulations.benchmark_condense``.
    argv
        Its arguments (None: this process's ``sys.argv[1:]``).

    Returns
    -------
    tuple
        ``(command, save)``; ``save(results)`` records ``command`` (unless the results name theirs) and the seconds since this call.
    """
    started = time.perf_counter()
    command = shlex.join(["python", "-m", module, *(sys.argv[1:] if argv is None else argv)])

    def save(results: dict[str, Any]) -> None:
        results.setdefault("command", command)
        results["total_seconds"] = round(time.perf_counter() - started, 1)
        atomic_write_json(out / "results.json", results)

    return command, save


def read_results(path: Path, is_ours: Callable[[dict[str, Any]], bool], what: str) -> dict[str, Any]:
    """An earlier run's ``results.json``; a missing, malformed or foreign file is a one-line error.

    Parameters
    ----------
    path
        The file to read.
    is_ours
        Whether the parsed object is this benchmark's results.
    what
        Ends the error for a foreign file: ``{path} is not a results.json of {what}``.
    """
    try:
        results = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise FedcondError(f"cannot read {path}: {exc.strerror or exc}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise FedcondError(f"{path} is not a results.json file: {str(exc).splitlines()[0]}") from None
    if not isinstance(results, dict) or not is_ours(results):
        raise FedcondError(f"{path} is not a results.json of {what}")
    return results


def _cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def targets_line(
    checked: dict[str, dict[str, Any]], brief: Callable[[dict[str, Any]], str], *, with_target: bool = False
) -> str:
    """The one-line verdict of a benchmark's checks: ``Targets: name: met (brief); ...``.

    Parameters
    ----------
    checked
        Check name -> the check, with at least ``met`` (and ``target`` when ``with_target``).
    brief
        What the parenthesis says about a check (its value, and why it is not a result).
    with_target
        Print each check's ``target`` after its name.
    """

    def name(key: str, check: dict[str, Any]) -> str:
        return f"{key} {check['target']}" if with_target else key

    verdicts = (f"{name(k, c)}: {'met' if c['met'] else 'missed'} ({brief(c)})" for k, c in checked.items())
    return "Targets: " + "; ".join(verdicts)


def add_update_readme_argument(parser: argparse.ArgumentParser, what: str = "table") -> None:
    """``--update-readme [FILE]``: write the benchmark's block into FILE (default: docs/benchmarks.md)."""
    parser.add_argument(
        "--update-readme",
        nargs="?",
        const=str(BENCHMARKS_PAGE),
        default=None,
        metavar="FILE",
        help=f"write the {what} between this benchmark's markers in FILE (without FILE: docs/benchmarks.md)",
    )


def replace_readme_block(path: Path, start: str, end: str, lines: Sequence[str]) -> None:
    """Replace the text between the ``start`` and ``end`` markers of ``path`` (markers kept), atomically.

    A file without both markers is left alone: :class:`FedcondError` names the file, the missing
    marker and the page where the block lives.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise FedcondError(f"cannot read {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise FedcondError(f"{path} is not UTF-8 text") from None
    missing = [marker for marker in (start, end) if marker not in text]
    if missing:
        problem = f"has no {' and no '.join(missing)} marker"
    elif text.index(start) > text.index(end):
        problem = f"has its {end} marker before {start}"
    else:
        before, rest = text.split(start, 1)
        _, after = rest.split(end, 1)
        atomic_write_text(path, before + "\n".join([start, *lines, end]) + after)
        return
    raise FedcondError(
        f"{path} {problem}; every benchmark's block lives between its markers in docs/benchmarks.md "
        "(--update-readme without a file writes there)"
    )


def _threads(count: int) -> str:
    return f"{count} thread" + ("" if count == 1 else "s")


def _cpu(m: dict[str, Any]) -> str:
    details = [v for v in (m.get("cpu_model"), m.get("cpu_capability")) if v]
    return f"{m['cpu']}" + (f" {' '.join(details)}" if details else "")


def _machine_phrase(m: dict[str, Any]) -> str:
    return (
        f"{m['cores']} cores ({_cpu(m)}, torch {m['torch']}, {m['device']}"
        + (f", {_threads(m['torch_threads'])})" if "torch_threads" in m else ")")
    )


def run_codes(runs: Sequence[dict[str, Any]], *extra: dict[str, Any]) -> list[dict[str, Any]]:
    """The code versions that produced ``runs`` (a merged run's own list, else its ``code``), then
    ``extra``, each once, in order."""
    return _distinct(runs, "codes", "code", extra)


def run_machines(runs: Sequence[dict[str, Any]], *extra: dict[str, Any]) -> list[dict[str, Any]]:
    """The machines ``runs`` were measured on (a merged run's own list, else its ``machine``), then
    ``extra``, each once, in order: a merge of runs from two machines names both."""
    return _distinct(runs, "machines", "machine", extra)


def _distinct(runs: Sequence[dict[str, Any]], plural: str, singular: str, extra: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    found = [v for r in runs for v in (r.get(plural) or ([r[singular]] if r.get(singular) else []))]
    found.extend(extra)
    return [v for i, v in enumerate(found) if v not in found[:i]]


def measured_header(results: dict[str, Any], command: str) -> list[str]:
    """The opening lines of a benchmark block: when, where (every machine of a merged report), how
    much memory, and the exact command."""
    machines = results.get("machines") or [results["machine"]]
    seeds = results.get("seeds")
    memory = results.get("peak_memory_mb")
    line = (
        f"Measured {results['date']} on " + " and on ".join(_machine_phrase(m) for m in machines)
        + (f", seeds {', '.join(map(str, seeds))}" if seeds else "")
        + (f"; peak RSS {memory:.0f} MB" if memory is not None else "")
        + _code_phrase(results.get("codes") or [results.get("code")])
        + (". Command:" if "\n" not in command else ". Commands (one report of their scenarios):")
    )
    return [line, "", "```", command, "```", ""]


def _code_phrase(codes: Sequence[dict[str, Any] | None]) -> str:
    """``; commit abc1234`` (``with uncommitted changes`` when the tree was dirty), ``; commits a, b``
    for merged runs; nothing for older results."""
    known = [c for c in codes if c and c.get("commit")]
    names = list(dict.fromkeys(c["commit"][:7] + (" with uncommitted changes" if c.get("dirty") else "") for c in known))
    if not names:
        return ""
    return f"; commit{'s' if len(names) > 1 else ''} {', '.join(names)}"


# ---------------------------------------------------------------------- scenario benchmarks
# benchmark_federated and benchmark_continual run named scenarios one after another and share
# their command line, their results.json header and their docs/benchmarks.md block; only the scenarios differ.


@dataclass(frozen=True)
class ScenarioBenchmark:
    """A benchmark made of named scenarios, each run into ``OUT/<scenario>/``."""

    prog: str
    kind: str  # results.json's "benchmark" value
    description: str
    default_config: str
    scenario_names: tuple[str, ...]
    #: (scenario name, args) -> the scenario's config
    config_for: Callable[[str, argparse.Namespace], Config]
    #: (scenario name, config, out dir) -> the scenario's summary
    run_scenario: Callable[[str, Config, Path], dict[str, Any]]
    #: scenario summaries -> the targets' checks
    checks: Callable[[dict[str, Any]], dict[str, Any]]
    table: Callable[[dict[str, Any]], str]
    readme_markers: tuple[str, str]
    #: results -> extra keys written once every scenario has run
    finish: Callable[[dict[str, Any]], dict[str, Any]] = lambda results: {}
    #: (scenario name, config) -> its key in ``results["scenarios"]`` (e.g. one per seed); a key
    #: is the name, or the name, ``@`` and a suffix
    key_for: Callable[[str, Config], str] = lambda name, config: name
    #: ``(summary key, config key)`` of a scenario's independent parts, e.g. ``("methods",
    #: "continual.methods")``: ``--only`` runs some of them, and ``merge`` unites the parts of one
    #: scenario measured by separate runs (in parallel processes) when their settings agree.
    parts: tuple[str, str] | None = None

    def run(self, args: argparse.Namespace, command: str) -> dict[str, Any]:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        results: dict[str, Any] = {
            "benchmark": self.kind,
            "command": command,
            "date": dt.date.today().isoformat(),
            "machine": machine(),
            "code": code_version(),
            "quick": args.quick,
            "complete": False,
            "scenarios": {},
            "skipped": {},
        }
        wanted = args.scenarios.split(",") if args.scenarios else list(self.scenario_names)
        unknown = sorted(set(wanted) - set(self.scenario_names))
        if unknown:
            raise FedcondError(f"unknown scenario {unknown[0]!r}; valid: {', '.join(self.scenario_names)}")
        configs = {name: self._only(name, self.config_for(name, args), getattr(args, "only", None))
                   for name in self.scenario_names if name in wanted}  # fmt: skip
        for name, config in configs.items():
            key = self.key_for(name, config)
            available, why = dataset_availability(config.dataset)
            if not available:
                results["skipped"][key] = why
            else:
                print(f"[{self.prog}] {key} ...", file=sys.stderr, flush=True)
                summary = self.run_scenario(name, config, out / key)
                if self.parts is not None:
                    summary["settings"] = settings_digest(config, self.parts[1])
                results["scenarios"][key] = summary
            results["checks"] = self.checks(results["scenarios"])
            atomic_write_json(out / "results.json", results)
        results["complete"] = True
        results.update(self.finish(results))
        atomic_write_json(out / "results.json", results)
        return results

    def report(self, results: dict[str, Any]) -> str:
        """The table, then the scenarios that could not run and why."""
        skipped = [f"\n{name} skipped: {why}" for name, why in results.get("skipped", {}).items()]
        return "\n".join([self.table(results), *skipped])

    def update_readme(self, path: Path, results: dict[str, Any], command: str) -> None:
        lines = [*measured_header(results, command)]
        if results.get("quick"):
            lines.append("**--quick run on digits: checks the script; these figures are not the benchmark.**\n")
        lines.append(self.report(results))
        checked = results.get("checks", {})
        if checked:
            lines += ["", targets_line(checked, _brief)]
        if not results.get("complete", True):
            lines.append("\nThe run was stopped early: these are the scenarios it finished.")
        lines += [f"\nNote: {note}" for note in results.get("notes", [results["note"]] if "note" in results else [])]
        replace_readme_block(path, *self.readme_markers, lines)

    def main(self, argv: list[str] | None = None) -> int:
        parser = argparse.ArgumentParser(prog=self.prog, description=self.description)
        parser.add_argument(
            "--out", help="output folder (required unless --from-results; with it: where the merged results.json goes)"
        )
        parser.add_argument(
            "--config", default=self.default_config, help="base config of the full scenarios (default: %(default)s)"
        )
        parser.add_argument("--set", action="append", default=[], dest="overrides", metavar="KEY=VALUE",
                            help="override a key of every scenario's config before the scenario's own (repeatable)")  # fmt: skip
        parser.add_argument("--scenarios", help="comma-separated subset of: " + ", ".join(self.scenario_names))
        parser.add_argument(
            "--quick", action="store_true", help="digits, tiny budgets: checks the script, measures nothing"
        )
        if self.parts is not None:
            summary_key, config_key = self.parts
            parser.add_argument(
                "--only", metavar="NAMES",
                help=f"comma-separated: run only these of each scenario's {summary_key} ({config_key}); "
                     f"runs of one scenario's other {summary_key} are united by --from-results",
            )  # fmt: skip
        add_update_readme_argument(parser)
        parser.add_argument("--from-results", metavar="results.json", nargs="+",
                            help="do not run: report earlier runs (several: their scenarios merged, later files win)")  # fmt: skip
        args = parser.parse_args(argv)
        if args.out is None and args.from_results is None:
            parser.error("--out is required unless --from-results is given")
        given = argv if argv is not None else sys.argv[1:]
        command = f"python -m simulations.{self.prog} {shlex.join(given)}".strip()
        try:
            if args.from_results:
                results = self.merge([self._read(Path(p)) for p in args.from_results])
                # The block names the commands that measured the figures, not the one that reprinted them.
                command = results["command"]
                if args.out is not None:
                    Path(args.out).mkdir(parents=True, exist_ok=True)
                    atomic_write_json(Path(args.out) / "results.json", results)
            else:
                results = self.run(args, command)
            print(self.report(results))
            if args.update_readme:
                self.update_readme(Path(args.update_readme), results, command)
        except FedcondError as exc:
            print(f"{self.prog}: error: {exc}", file=sys.stderr)
            return 2
        return 0

    def merge(self, runs: list[dict[str, Any]]) -> dict[str, Any]:
        """One report from several runs (e.g. a long scenario run on its own): scenarios united."""
        if len(runs) == 1:  # checks recomputed: the file may predate a target or a change to one
            return {**runs[0], "command": runs[0].get("command", ""), "checks": self.checks(runs[0].get("scenarios", {}))}
        merged: dict[str, Any] = {**runs[0], "scenarios": {}, "skipped": {}}
        replaced: dict[str, set[str]] = {}  # scenario -> parts of earlier runs a later run replaced
        for run in runs:
            for key, summary in run.get("scenarios", {}).items():
                earlier = merged["scenarios"].get(key)
                merged["scenarios"][key] = self._united(earlier, summary)
                if earlier is not None and self.parts is not None and merged["scenarios"][key] is summary:
                    replaced.setdefault(key, set()).update(earlier.get(self.parts[0], {}))
            merged["skipped"].update(run.get("skipped", {}))
        dropped: list[str] = []
        for key, parts in replaced.items():
            # A later run with other settings replaced parts it did not run: say so, unless a still
            # later run with its settings measured them again.
            lost = sorted(parts - set(merged["scenarios"][key].get(self.parts[0], {})))
            if lost:
                dropped.append(f"{key}: {', '.join(lost)} of an earlier run left out (its settings differ)")
        for name in merged["scenarios"]:
            merged["skipped"].pop(name, None)
        # Rows in the benchmark's own scenario order, whichever run measured them.
        order = {name: i for i, name in enumerate(self.scenario_names)}
        def position(key: str) -> tuple[int, str]:
            return order.get(key.split("@")[0], len(order)), key

        merged["scenarios"] = dict(sorted(merged["scenarios"].items(), key=lambda item: position(item[0])))
        merged["command"] = "\n".join(dict.fromkeys(r.get("command", "") for r in runs))
        merged["date"] = max(r["date"] for r in runs)
        merged["quick"] = any(r.get("quick") for r in runs)
        merged["complete"] = all(r.get("complete") for r in runs)
        merged["checks"] = self.checks(merged["scenarios"])
        merged["notes"] = [r["note"] for r in runs if r.get("note")] + dropped
        merged.pop("note", None)
        peaks = [r["peak_memory_mb"] for r in runs if r.get("peak_memory_mb") is not None]
        merged["peak_memory_mb"] = max(peaks) if peaks else None
        return merged

    def _read(self, path: Path) -> dict[str, Any]:
        return read_results(path, lambda r: r.get("benchmark") == self.kind, self.prog)

    def _only(self, name: str, config: Config, only: str | None) -> Config:
        """The scenario's config running only the parts named by ``--only`` (in the scenario's order)."""
        if not only or self.parts is None:
            return config
        summary_key, config_key = self.parts
        wanted = [part.strip() for part in only.split(",") if part.strip()]
        section, key = config_key.split(".")
        configured = list(getattr(getattr(config, section), key))
        kept = [part for part in configured if part in wanted]
        if not kept:
            raise FedcondError(
                f"--only {only}: scenario {name} runs none of them (its {summary_key}: {', '.join(configured)})"
            )
        data = config.to_dict()
        data[section][key] = kept
        return Config.from_dict(data)

    def _united(self, earlier: dict[str, Any] | None, later: dict[str, Any]) -> dict[str, Any]:
        """One scenario's row from two runs: their parts united when both ran the same settings.

        Without matching settings (different seeds, budgets, code paths' keys, or a summary from
        before settings were recorded) the later run replaces the earlier, as for any scenario.
        """
        if (
            earlier is None
            or self.parts is None
            or earlier.get("settings") is None
            or earlier.get("settings") != later.get("settings")
        ):
            return later
        summary_key = self.parts[0]
        united = {**earlier, **later, summary_key: {**earlier[summary_key], **later[summary_key]}}
        united["seconds"] = round(earlier.get("seconds", 0.0) + later.get("seconds", 0.0), 1)  # both runs' cost
        return united


def settings_digest(config: Config, parts_key: str) -> str:
    """A short digest of everything a scenario's config sets except which parts it runs (and progress bars).

    Two runs of one scenario with the same digest measured their parts under the same settings, so
    their parts can share a row.
    """
    data = config.to_dict()
    section, key = parts_key.split(".")
    data[section].pop(key, None)
    data.pop("progress", None)
    canonical = json.dumps(data, sort_keys=True, default=str)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]


def _brief(check: dict[str, Any]) -> str:
    return ", ".join(f"{k} {v}" for k, v in check.items() if k != "met")
