"""The README and docs/*.md hold what is true: every ```python block runs, every link and config key is real.

Each ```python block is a complete script: it runs as its own process in a fresh folder holding a
symlink ``configs`` -> the project's configs (so a snippet can say ``configs/default.yaml`` and
write files without littering the checkout), with the project root on ``PYTHONPATH`` (so
``simulations`` imports). The processes are forked from one that imported torch and the engine
once (``tests/snippet_server.py``). Blocks that are not meant to run are ```text or plain fences.
The snippets run two at a time (one torch thread each); the tests report them one by one.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
PAGES = (ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")))
FENCE = re.compile(r"^```python[ \t]*\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)
#: Seconds one snippet may take before it counts as failed (a Flower example takes about a minute).
TIMEOUT = 300.0
#: Snippets run at once (the machine this was written on has 2 cores; a third bought nothing).
WORKERS = 2


@dataclass(frozen=True)
class Snippet:
    """One ```python block: where it is and what it says."""

    page: Path
    index: int  # its position among the page's python blocks
    line: int  # line of its opening fence
    code: str

    @property
    def name(self) -> str:
        first = next((line.strip() for line in self.code.splitlines() if line.strip()), "")
        return f"{self.page.relative_to(ROOT)}[{self.index}]:{self.line}: {first[:60]}"

    @property
    def cost(self) -> int:
        """Rough order of cost, so the slowest snippets start first."""
        return 3 if "simulate(" in self.code else 2 if "avalanche" in self.code or "run_continual" in self.code else 1


def collect(pages: tuple[Path, ...] = PAGES) -> list[Snippet]:
    snippets = []
    for page in pages:
        text = page.read_text(encoding="utf-8")
        for index, match in enumerate(FENCE.finditer(text)):
            snippets.append(Snippet(page, index, text.count("\n", 0, match.start()) + 1, match.group(1)))
    return snippets


SNIPPETS = collect()


@dataclass
class Outcome:
    returncode: int | None  # None: timed out
    output: str
    seconds: float


def prepare(snippet: Snippet, folder: Path) -> None:
    """``folder`` with the snippet as ``snippet.py`` and a ``configs`` link to the project's configs."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "configs").symlink_to(ROOT / "configs", target_is_directory=True)
    (folder / "snippet.py").write_text(snippet.code, encoding="utf-8")


@pytest.fixture(scope="session")
def outcomes(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> dict[Snippet, Outcome]:
    """Run every selected snippet (slowest first), ``WORKERS`` at a time, through ``tests/snippet_server.py``.

    The server imports torch and the engine once and forks a child per snippet: each snippet still
    runs in a process of its own, but none pays the imports (about 9 CPU-seconds each) again.
    """
    selected = [
        item.callspec.params["snippet"]
        for item in request.session.items
        if getattr(item, "originalname", None) == "test_snippet_runs" and hasattr(item, "callspec")
    ]
    ordered = sorted(dict.fromkeys(selected), key=lambda s: -s.cost)
    folders = {snippet: tmp_path_factory.mktemp("snippet") for snippet in ordered}
    for snippet, folder in folders.items():
        prepare(snippet, folder)
    jobs = [{"id": str(i), "folder": str(folders[s]), "timeout": TIMEOUT} for i, s in enumerate(ordered)]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
    env.setdefault("OMP_NUM_THREADS", "1")  # snippets share the cores; oversubscribed threads crawl
    env.setdefault("MPLBACKEND", "Agg")
    server = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "snippet_server.py"), str(ROOT), str(WORKERS)],
        input=json.dumps(jobs), capture_output=True, text=True, env=env, timeout=TIMEOUT * len(jobs) + 60,
    )  # fmt: skip
    assert server.returncode == 0, server.stderr[-4000:]
    results = json.loads(server.stdout)
    found = {}
    for i, snippet in enumerate(ordered):
        output = folders[snippet] / "output.txt"
        text = output.read_text(encoding="utf-8", errors="replace") if output.exists() else ""
        found[snippet] = Outcome(results[str(i)]["returncode"], text, results[str(i)]["seconds"])
    return found


@pytest.mark.parametrize("snippet", SNIPPETS, ids=[s.name for s in SNIPPETS])
def test_snippet_runs(snippet: Snippet, outcomes: dict[Snippet, Outcome]) -> None:
    outcome = outcomes[snippet]
    tail = "\n".join(outcome.output.splitlines()[-40:])
    assert outcome.returncode is not None, f"{snippet.name}: no result within {TIMEOUT:.0f} s\n{tail}"
    assert outcome.returncode == 0, f"{snippet.name}: exit status {outcome.returncode}\n{tail}"


def test_the_runner_reports_failures_and_timeouts(tmp_path: Path) -> None:
    codes = {"ok": "print('fine')", "fails": "raise ValueError('broken snippet')", "exits": "raise SystemExit(3)",
             "hangs": "import time\ntime.sleep(60)"}  # fmt: skip
    jobs = []
    for name, code in codes.items():
        prepare(Snippet(ROOT / "README.md", 0, 1, code), tmp_path / name)
        jobs.append({"id": name, "folder": str(tmp_path / name), "timeout": 5.0 if name == "hangs" else TIMEOUT})
    server = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "snippet_server.py"), str(ROOT), "4"],
        input=json.dumps(jobs), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    results = json.loads(server.stdout)
    assert {name: r["returncode"] for name, r in results.items()} == {"ok": 0, "fails": 1, "exits": 3, "hangs": None}
    assert "fine" in (tmp_path / "ok" / "output.txt").read_text()
    assert "ValueError: broken snippet" in (tmp_path / "fails" / "output.txt").read_text()


def _with(*needles: str) -> list[Snippet]:
    return [s for s in SNIPPETS if all(needle in s.code for needle in needles)]


def test_the_collector_finds_the_integration_examples() -> None:
    assert len(SNIPPETS) >= 10 and len({s.page for s in SNIPPETS}) >= 5
    readme = [s for s in SNIPPETS if s.page.name == "README.md"]
    assert _with("from fedcond import", "condense(", "evaluate_synthetic(") and readme[0].page == ROOT / "README.md"
    examples = {
        "engine": ("condense(splits.train, config)", "evaluate_synthetic("),
        "flower": ("from fedcond.apps.federate import simulate", "simulate(config"),
        "avalanche": ("from avalanche", "CondensedReplayPlugin(", "strategy.train("),
        "private release": ("privacy.epsilon=", "condense(", "audit("),
    }
    for what, needles in examples.items():
        assert [s for s in readme if all(n in s.code for n in needles)], f"no runnable {what} example in README.md"


@pytest.mark.parametrize(
    "decorator",
    ["register_discrepancy", "register_feature_map", "register_model", "register_dataset", "register_condense_method",
     "register_real_target", "register_robustness", "register_config_section", "register_strategy",
     "register_continual_method"],
)  # fmt: skip
def test_every_registry_has_a_runnable_example(decorator: str) -> None:
    assert _with(f"@{decorator}("), f"no ```python block registers with @{decorator}"


#: Names the code no longer has; the docs must not teach them.
GONE = (
    "to_array_record()", "SyntheticSet.from_array_record", "synthetic.to_array_record", "fedcond.cli ", "fedcond.cli:",
    "fedcond/cli.py", "federated.simulation", "federated/simulation.py", "continual.runner", "continual/runner.py",
    "condense/pool.py", "condense.pool ", "strategies.uploads import merge", "uploads.merge", "round_info",
    "--update-readme README.md",
)  # fmt: skip


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(ROOT)) for p in PAGES])
def test_no_page_names_an_api_that_is_gone(page: Path) -> None:
    text = page.read_text(encoding="utf-8")
    assert [name for name in GONE if name in text] == []


def _slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    text = re.sub(r"^```.*?^```", "", page.read_text(encoding="utf-8"), flags=re.MULTILINE | re.DOTALL)
    return {_slug(match.group(1)) for match in re.finditer(r"^#+ (.+)$", text, re.MULTILINE)}


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(ROOT)) for p in PAGES])
def test_every_relative_link_and_anchor_exists(page: Path) -> None:
    text = re.sub(r"^```.*?^```", "", page.read_text(encoding="utf-8"), flags=re.MULTILINE | re.DOTALL)
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+://", target):
            continue
        path, _, anchor = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        if not linked.exists() or (anchor and linked.suffix == ".md" and anchor not in _anchors(linked)):
            broken.append(target)
    assert broken == []


def test_the_readme_links_every_docs_page() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert [p.name for p in PAGES[1:] if f"(docs/{p.name}" not in readme] == []


def _documented_defaults() -> dict[str, str]:
    """``section.key`` -> the default column of docs/configuration.md's tables (``a`` / ``b`` rows split)."""
    documented, in_table = {}, False
    for line in (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8").splitlines():
        in_table = line.startswith("| key | default |") or (in_table and line.startswith("|"))
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if not in_table or len(cells) != 3 or not cells[0].startswith("`"):
            continue
        keys = [k.strip().strip("`") for k in cells[0].split(" / ")]
        defaults = [d.strip().strip("`") for d in cells[1].split(" / ")] if " / " in cells[1] else [cells[1].strip("`")]
        if len(keys) != len(defaults):
            continue
        section = keys[0].rpartition(".")[0]
        for key, default in zip(keys, defaults):
            documented[key if "." in key or not section else f"{section}.{key}"] = default
    return documented


def _value(text: str) -> object:
    value = yaml.safe_load(text)
    if isinstance(value, str):
        try:
            return float(value)  # YAML 1.1 reads 1e-5 as a string
        except ValueError:
            return value
    return value


def test_every_config_key_is_documented_with_its_default() -> None:
    from fedcond.config import Config

    def flatten(prefix: str, section: object) -> dict[str, object]:
        # Nested sections (condense.teacher) are flattened too; dict-valued keys stay one key.
        out: dict[str, object] = {}
        for f in dataclasses.fields(section):
            value = getattr(section, f.name)
            key = f"{prefix}.{f.name}"
            out.update(flatten(key, value) if dataclasses.is_dataclass(value) else {key: value})
        return out

    config = Config()
    actual: dict[str, object] = {name: getattr(config, name) for name in ("seed", "device", "progress")}
    for name in ("dataset", "condense", "evaluation", *config.sections):
        actual.update(flatten(name, getattr(config, name)))
    documented = _documented_defaults()
    assert sorted(set(actual) - set(documented)) == [], "config keys missing from docs/configuration.md"
    assert sorted(set(documented) - set(actual)) == [], "docs/configuration.md documents keys that do not exist"
    wrong = {key: (documented[key], value) for key, value in actual.items() if _value(documented[key]) != value}
    assert wrong == {}
