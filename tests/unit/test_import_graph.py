"""The layout's import rules (issue 12, docs/decisions.md "Layout"), read from the source.

Every import counts, wherever it is written (module level, inside a function, under
``TYPE_CHECKING``): a cycle hidden in a function body is still a cycle.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("bus", "functions", "infra", "bench", "proof", "localstack")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(path): path
            for package in PACKAGES if (ROOT / package).is_dir()
            for path in sorted((ROOT / package).rglob("*.py"))}


def imported(tree: ast.AST, known: dict[str, Path]) -> Iterator[str]:
    """The project modules ``tree`` imports: ``from a import b`` names ``a.b`` when that is a
    module, else ``a``."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names = [f"{node.module}.{alias.name}" if f"{node.module}.{alias.name}" in known
                     else node.module for alias in node.names]
        else:
            continue
        yield from (name for name in names if name in known)


def import_graph() -> dict[str, set[str]]:
    known = modules()
    return {name: set(imported(ast.parse(path.read_text()), known)) - {name}
            for name, path in known.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected component with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


GRAPH = import_graph()

# Two cycles older than the layout, each through an import that never runs at module load
# (left for their own change, not a file move): bus.context names MeshClient for the type
# checker only, and the operations store builds its DynamoDB adapter inside a factory.
KNOWN_CYCLES = [
    ["bus.context", "bus.runtime.client"],
    ["functions.shared.dynamodb_operations", "functions.shared.operations_store"],
]


def test_the_graph_sees_the_template_and_its_parts() -> None:
    assert "infra.stack.registry" in GRAPH["infra.stack.template"]
    assert "infra.stack.parts.auth" in GRAPH["infra.stack.registry"]
    assert "infra.stack.model" in GRAPH["infra.stack.parts.auth"]


def test_a_cycle_is_found() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


@pytest.mark.parametrize("package", PACKAGES)
def test_no_import_cycle(package: str) -> None:
    inside = {name: {t for t in targets if t.split(".")[0] == package}
              for name, targets in GRAPH.items() if name.split(".")[0] == package}
    assert [c for c in cycles(inside) if c not in KNOWN_CYCLES] == []


def test_no_import_cycle_across_the_project() -> None:
    assert [c for c in cycles(GRAPH) if c not in KNOWN_CYCLES] == []


def test_the_template_parts_never_import_the_template_or_the_registry() -> None:
    parts = {name: targets for name, targets in GRAPH.items()
             if name.startswith("infra.stack.parts.")}
    assert parts
    for name, targets in parts.items():
        assert not targets & {"infra.stack.template", "infra.stack.registry"}, name


@pytest.mark.parametrize(("package", "never"), [
    ("bus", {"functions", "infra", "bench", "proof", "localstack"}),  # the library stands alone
    ("functions", {"infra", "bench", "proof"}),  # what runs on Lambda: bus and functions only
    ("infra", {"bench", "proof"}),
    ("proof", {"bench"}),  # bench may use proof.procs; never the other way
])
def test_import_directions(package: str, never: set[str]) -> None:
    wrong = sorted(f"{name} -> {target}" for name, targets in GRAPH.items()
                   if name.split(".")[0] == package
                   for target in targets if target.split(".")[0] in never)
    assert wrong == []
