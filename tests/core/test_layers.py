"""The package's layers, read from the imports (ast, function-local imports included).

Imports go down the layers, never back up: the core imports no stage, a stage imports the core and the
stages below it, ``tasks`` is imported by the DAGs and the CLI only, and there is no import cycle
between modules anywhere. A new module or package must be given a place in ``LAYERS``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from pipelines.config import REPO_ROOT

PACKAGE = REPO_ROOT / "pipelines"
CORE = ("columns", "dates", "filesystem", "io", "lake", "config", "suppression")
# group -> rank: a module may import its own group and any group of a lower rank.
LAYERS = {
    "core": 0,
    "demo": 1, "importers": 1, "features": 1, "models": 1,
    "validation": 2,
    "registry": 3,
    "training": 4,
    "scoring": 5,
    "publishing": 6,
    "privacy": 7,
    "reporting": 8,
    "local": 9,
    "entry": 10,  # tasks (the DAGs' entry points) and __main__ (the CLI)
}
ENTRY = ("tasks", "__main__")


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO_ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_module(name: str) -> bool:
    path = REPO_ROOT.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def imports_of(path: Path) -> set[str]:
    """Every ``pipelines`` module ``path`` imports, at module level or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = _relative_base(path, node) if node.level else node.module or ""
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                found.add(candidate if _is_module(candidate) else base)
    return {name for name in found if name == "pipelines" or name.startswith("pipelines.")}


def _relative_base(path: Path, node: ast.ImportFrom) -> str:
    package = module_name(path).split(".")
    package = package if path.name == "__init__.py" else package[:-1]
    return ".".join(package[: len(package) - node.level + 1] + [node.module or ""]).strip(".")


def import_graph(root: Path = PACKAGE) -> dict[str, set[str]]:
    return {module_name(path): imports_of(path) - {module_name(path)} for path in sorted(root.rglob("*.py"))}


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (or a module importing itself)."""
    index, low, stack, on_stack, cycles, counter = {}, {}, [], set(), [], [0]

    def visit(node: str) -> None:
        index[node] = low[node] = counter[0]
        counter[0] += 1
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
            if len(component) > 1 or node in graph.get(node, ()):
                cycles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return cycles


def group_of(module: str) -> str:
    parts = module.split(".")
    if len(parts) == 1:
        return "core"  # the package's own __init__
    if parts[1] in CORE:
        return "core"
    if parts[1] in ENTRY:
        return "entry"
    return parts[1]


def test_every_module_has_a_layer():
    unplaced = sorted({group_of(m) for m in import_graph()} - set(LAYERS))
    assert not unplaced, f"give these packages a place in LAYERS: {unplaced}"


def test_no_import_cycles():
    assert find_cycles(import_graph()) == []


def test_imports_go_down_the_layers():
    upward = [f"{source} -> {target}" for source, targets in import_graph().items() for target in sorted(targets)
              if group_of(target) != group_of(source) and LAYERS[group_of(target)] >= LAYERS[group_of(source)]]
    assert upward == []


def test_only_the_dags_and_the_cli_import_tasks():
    importers = sorted(source for source, targets in import_graph().items() if "pipelines.tasks" in targets)
    assert importers == ["pipelines.__main__"]
    for dag in sorted((REPO_ROOT / "dags").glob("*.py")):  # DAG files only wire: tasks and the config
        assert imports_of(dag) <= {"pipelines.tasks", "pipelines.config"}, dag.name


def test_spark_job_is_a_thin_main():
    assert imports_of(REPO_ROOT / "spark_jobs" / "build_features.py") <= {
        "pipelines", "pipelines.config", "pipelines.dates", "pipelines.features.job", "pipelines.io", "pipelines.lake"}


@pytest.mark.parametrize(("graph", "expected"), [
    ({"a": {"b"}, "b": {"c"}, "c": set()}, []),
    ({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}, [["a", "b", "c"]]),
    ({"a": {"a"}}, [["a"]]),
])
def test_find_cycles_finds_them(graph, expected):
    assert find_cycles(graph) == expected


def test_a_function_local_import_counts(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("import json\n\ndef f():\n    from pipelines.tasks import score_users\n"
                      "    from pipelines.features import job\n")
    assert imports_of(module) == {"pipelines.tasks", "pipelines.features.job"}
