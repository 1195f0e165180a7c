"""fedcond's import graph, read from the source with :mod:`ast`: every import, wherever it stands.

Module-level imports, imports inside functions and methods, and imports under
``if TYPE_CHECKING:`` are all edges. Run it from the project root::

    python tests/import_graph.py          # layer violations and import knots; exit status 1 if any

The layers (see README "Layout"):

* **engine** — everything in ``fedcond/`` outside the adapter and app packages: config, registry,
  data, models, augment, features, discrepancies, condense, synthetic, evaluation, device, io.
  It imports the standard library, its own modules and :data:`ENGINE_THIRD_PARTY` only.
* **adapters** — the Flower side (``fedcond.federated`` and the top-level ``strategies``), the
  Avalanche side (``fedcond.continual``), privacy (``fedcond.privacy``) and robustness (``fedcond.robustness``). Each imports the
  engine and itself, never another adapter or an app.
* **apps** — ``fedcond.apps`` (CLI, runners) and ``simulations`` (benchmarks): anything.

A *knot* is a strongly connected component of more than one module in the graph of imports that
run (``TYPE_CHECKING`` imports excluded): modules that cannot be understood, or imported, apart.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("fedcond", "strategies", "simulations")

#: Third-party packages the engine may import besides torch, numpy and yaml, and why.
ENGINE_THIRD_PARTY = {
    "torch": "tensors, autograd, networks",
    "numpy": "arrays",
    "yaml": "config files",
    "torchvision": "MNIST/CIFAR-10/image-folder readers, image grids",
    "PIL": "image files, through torchvision's ImageFolder",
    "tqdm": "progress bars",
    "sklearn": "the bundled digits data set and stratified splits",
    "matplotlib": "figures of results (imported lazily)",
}
#: Third-party packages that belong to one adapter: no other layer but the apps imports them.
ADAPTER_THIRD_PARTY = {
    "flwr": {"flower", "privacy"},  # privacy: Flower's RDP accountant
    "flwr_datasets": {"flower"},
    "datasets": {"flower"},
    "ray": {"flower"},
    "avalanche": {"avalanche"},
    "art": {"robustness"},  # the Adversarial Robustness Toolbox: every attack of the robust evaluation
}
ADAPTERS = {
    "fedcond.federated": "flower",
    "strategies": "flower",
    "fedcond.continual": "avalanche",
    "fedcond.privacy": "privacy",
    "fedcond.robustness": "robustness",
}
APPS = ("fedcond.apps", "simulations")


@dataclass(frozen=True)
class Import:
    """One import statement's edge: ``source`` imports ``target`` (a module name)."""

    source: str
    target: str
    line: int
    runtime: bool  # False under ``if TYPE_CHECKING:``
    nested: bool  # inside a function or method

    def __str__(self) -> str:
        return f"{module_path(self.source)}:{self.line}: {self.source} -> {self.target}"


def module_path(name: str) -> str:
    path = ROOT / Path(*name.split("."))
    return str((path / "__init__.py" if path.is_dir() else path.with_suffix(".py")).relative_to(ROOT))


def project_modules(root: Path = ROOT) -> dict[str, Path]:
    """Every module of the project's packages, by dotted name."""
    modules = {}
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join(parts)] = path
    return modules


def layer_of(module: str) -> str:
    """``engine``, an adapter's name, ``app``, or ``third-party``."""
    if any(module == app or module.startswith(app + ".") for app in APPS):
        return "app"
    for prefix, layer in ADAPTERS.items():
        if module == prefix or module.startswith(prefix + "."):
            return layer
    return "engine" if module == "fedcond" or module.startswith("fedcond.") else "third-party"


def imports_of(name: str, path: Path, known: Iterable[str]) -> Iterator[Import]:
    """The imports in ``path`` (module ``name``), resolved to module names."""
    known = set(known)
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node, runtime, nested in _import_nodes(tree, runtime=True, nested=False):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(name, alias.name, node.lineno, runtime, nested)
            continue
        base = node.module or ""
        if node.level:
            parts = package.split(".")
            anchor = parts[: len(parts) - node.level + 1]
            base = ".".join([*anchor, base] if base else anchor)
        if base == "__future__":
            continue
        for alias in node.names:
            candidate = f"{base}.{alias.name}"
            yield Import(name, candidate if candidate in known else base, node.lineno, runtime, nested)


def _import_nodes(node: ast.AST, *, runtime: bool, nested: bool) -> Iterator[tuple[ast.AST, bool, bool]]:
    for child in ast.iter_child_nodes(node):
        if isinstance(child, (ast.Import, ast.ImportFrom)):
            yield child, runtime, nested
        elif isinstance(child, ast.If) and _is_type_checking(child.test):
            for statement in child.body:
                yield from _import_nodes_of(statement, runtime=False, nested=nested)
            for statement in child.orelse:
                yield from _import_nodes_of(statement, runtime=runtime, nested=nested)
        else:
            inner = nested or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            yield from _import_nodes(child, runtime=runtime, nested=inner)


def _import_nodes_of(statement: ast.AST, *, runtime: bool, nested: bool) -> Iterator[tuple[ast.AST, bool, bool]]:
    if isinstance(statement, (ast.Import, ast.ImportFrom)):
        yield statement, runtime, nested
    else:
        yield from _import_nodes(statement, runtime=runtime, nested=nested)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def all_imports(root: Path = ROOT) -> list[Import]:
    modules = project_modules(root)
    return [edge for name, path in modules.items() for edge in imports_of(name, path, modules)]


def violations(edges: Iterable[Import]) -> list[str]:
    """Every edge that runs against the layers, as ``file:line: source -> target (why)``."""
    found: list[str] = []
    for edge in dict.fromkeys(edges):  # one line per import statement and target
        source, target = layer_of(edge.source), layer_of(edge.target)
        top = edge.target.split(".")[0]
        if source == "app":
            continue
        if target == "app":
            found.append(f"{edge} ({source} imports an app)")
        elif target == "third-party":
            owners = ADAPTER_THIRD_PARTY.get(top)
            if source == "engine" and top not in ENGINE_THIRD_PARTY and top not in sys.stdlib_module_names:
                found.append(f"{edge} (the engine imports {top})")
            elif owners is not None and source not in owners:
                found.append(f"{edge} ({source} imports {top}, which belongs to {'/'.join(sorted(owners))})")
        elif source == "engine" and target != "engine":
            found.append(f"{edge} (the engine imports the {target} adapter)")
        elif source != "engine" and target not in ("engine", source):
            found.append(f"{edge} (the {source} adapter imports the {target} adapter)")
    return found


def knots(edges: Iterable[Import]) -> list[list[str]]:
    """Strongly connected components of more than one module among the imports that run."""
    graph: dict[str, set[str]] = {}
    for edge in edges:
        if edge.runtime and layer_of(edge.target) != "third-party" and edge.target != edge.source:
            graph.setdefault(edge.source, set()).add(edge.target)
            graph.setdefault(edge.target, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    counter = 0

    def visit(node: str) -> None:  # Tarjan's algorithm
        nonlocal counter
        index[node] = low[node] = counter
        counter += 1
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    sys.setrecursionlimit(max(10_000, sys.getrecursionlimit()))
    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(components, key=lambda c: (-len(c), c))


def main() -> int:
    edges = all_imports()
    nested = sum(1 for edge in edges if edge.nested)
    bad, tangles = violations(edges), knots(edges)
    print(f"{len(project_modules())} modules, {len(edges)} imports ({nested} inside functions)")
    print(f"layer violations: {len(bad)}")
    for line in bad:
        print(f"  {line}")
    print(f"import knots: {len(tangles)}" + (f" (largest: {len(tangles[0])} modules)" if tangles else ""))
    for component in tangles:
        print(f"  {len(component)}: {', '.join(component)}")
    return 1 if bad or tangles else 0


if __name__ == "__main__":
    sys.exit(main())
