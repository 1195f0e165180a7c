"""The layers hold: engine <- adapters <- apps, no adapter imports another, no import knots."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from import_graph import Import, all_imports, imports_of, knots, layer_of, violations

ROOT = Path(__file__).resolve().parents[1]


def test_no_import_runs_against_the_layers() -> None:
    assert violations(all_imports()) == []


def test_there_are_no_import_knots() -> None:
    assert knots(all_imports()) == []


def test_the_walker_sees_imports_in_functions_and_under_type_checking(tmp_path: Path) -> None:
    source = tmp_path / "module.py"
    source.write_text(textwrap.dedent("""
        from typing import TYPE_CHECKING
        import torch
        if TYPE_CHECKING:
            from flwr.app import ArrayRecord
        def f():
            from strategies import STRATEGIES
            class Inner:
                def g(self):
                    import avalanche.training
        from . import sibling
    """))
    edges = {(e.target, e.runtime, e.nested) for e in imports_of("fedcond.synthetic", source, {"fedcond.sibling"})}
    assert ("torch", True, False) in edges
    assert ("flwr.app", False, False) in edges  # a type-only import is still an edge of the layers
    assert ("strategies", True, True) in edges and ("avalanche.training", True, True) in edges
    assert ("fedcond.sibling", True, False) in edges  # relative imports resolve
    found = violations(imports_of("fedcond.synthetic", source, {"fedcond.sibling"}))
    assert len(found) == 3 and all("fedcond.synthetic" in line for line in found)


@pytest.mark.parametrize(
    ("source", "target", "fragment"),
    [
        ("fedcond.condense.matching", "fedcond.privacy.release", "the engine imports the privacy adapter"),
        ("fedcond.config", "strategies", "the engine imports the flower adapter"),
        ("fedcond.synthetic", "flwr.app", "the engine imports flwr"),
        ("fedcond.continual.storage", "fedcond.federated.wire", "the avalanche adapter imports the flower adapter"),
        ("fedcond.privacy.release", "avalanche.training", "belongs to avalanche"),
        ("strategies.context", "fedcond.apps.cli", "imports an app"),
    ],
)
def test_each_kind_of_wrong_edge_is_reported(source: str, target: str, fragment: str) -> None:
    (line,) = violations([Import(source, target, 1, True, True)])
    assert fragment in line


def test_apps_may_import_anything_and_adapters_the_engine() -> None:
    edges = [
        Import("fedcond.apps.cli", "fedcond.federated.client_app", 1, True, False),
        Import("simulations.benchmark_federated", "ray", 1, True, False),
        Import("strategies.context", "fedcond.evaluation", 1, True, False),
        Import("fedcond.privacy.accounting", "flwr.serverapp", 1, True, True),
        Import("fedcond.continual.storage", "avalanche.training", 1, True, False),
    ]
    assert violations(edges) == []
    assert [layer_of(m) for m in ("fedcond.config", "strategies", "fedcond.continual", "fedcond.apps", "torch")] == [
        "engine", "flower", "avalanche", "app", "third-party",
    ]  # fmt: skip


def test_a_cycle_is_a_knot() -> None:
    edges = [Import("fedcond.a", "fedcond.b", 1, True, True), Import("fedcond.b", "fedcond.a", 1, True, False)]
    assert knots(edges) == [["fedcond.a", "fedcond.b"]]
    type_only = [Import("fedcond.a", "fedcond.b", 1, True, False), Import("fedcond.b", "fedcond.a", 1, False, False)]
    assert knots(type_only) == []


def _modules_after(code: str) -> set[str]:
    script = code + "\nimport sys\nprint(' '.join(sorted({m.split('.')[0] for m in sys.modules})))"
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return set(done.stdout.split())


def test_the_engine_runs_without_flower_ray_or_avalanche() -> None:
    # What `import fedcond; fedcond.condense` loads, then a whole condensation and evaluation with the
    # continual and privacy sections set (and checked), in one process.
    loaded = _modules_after(textwrap.dedent("""
        import sys
        import fedcond
        fedcond.condense
        bare = {m.split(".")[0] for m in sys.modules}
        assert not {"flwr", "ray", "avalanche", "strategies"} & bare, sorted(bare)
        config = fedcond.Config.load("configs/digits-dm.yaml", [
            "continual.mem_size=50", "privacy.delta=1e-6", "device=cpu", "progress=false",
            "condense.iterations=2", "condense.ipc=1", "evaluation.runs=1", "evaluation.epochs=1",
        ])
        splits = fedcond.load_dataset(config.dataset)
        fedcond.evaluate_synthetic(fedcond.condense(splits.train, config), splits.test, config)
    """))
    assert "fedcond" in loaded and not {"flwr", "ray", "avalanche"} & loaded


def test_every_layers_section_defaults_are_valid() -> None:
    from fedcond.config import Config, config_sections

    sections = config_sections()
    assert {"federated", "continual", "privacy"} <= set(sections)
    config = Config()
    for cls in sections.values():
        cls().validate(config)  # Config.validate skips sections left at their defaults
