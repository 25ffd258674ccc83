"""The project's layers import one way: every module's imports, read from its AST, point to its own layer or below.

Bottom to top (a module may import its own layer and the layers before it, never one after it):
the agent's environment, the rewards, the reward audit, the builders, the agent loop and the RL preflight,
the rollout viewer, the demo fixtures, the launcher. No import cycle between modules remains either.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("tools", "rewards", "launch")

# Each layer is a list of package prefixes; the order is the direction of imports.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("tools.environment", "tools"),
    ("rewards",),
    ("rewards.audit",),
    ("tools.builders",),
    ("tools.agent", "tools.rollouts"),
    ("tools.viewer",),
    ("tools.demo",),
    ("launch",),
)


def module_name(path: Path) -> str:
    """`tools/environment/geometry.py` -> `tools.environment.geometry`; a package's `__init__` is the package."""
    parts = path.relative_to(PROJECT_ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_modules() -> dict[str, Path]:
    """Every module of the three packages, by dotted name."""
    return {module_name(path): path for package in PACKAGES for path in sorted((PROJECT_ROOT / package).rglob("*.py"))}


def imported(name: str, source: str, is_package: bool, known: set[str]) -> Iterator[str]:
    """The project modules `source` (the text of module `name`) imports, at any depth of the file."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[: len(base) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            # `from pkg import mod` imports the module pkg.mod; `from mod import name` imports mod.
            targets = [f"{module}.{alias.name}" if f"{module}.{alias.name}" in known else module
                       for alias in node.names]
        else:
            continue
        for target in targets:
            if target.split(".")[0] in PACKAGES:
                # `import tools.environment.geometry as g` names a module; keep the longest known prefix.
                while target not in known and "." in target:
                    target = target.rsplit(".", 1)[0]
                yield target


def layer_of(module: str) -> int:
    """The index in LAYERS of the most specific prefix that holds `module`."""
    best, best_length = None, -1
    for index, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best_length:
                best, best_length = index, len(prefix)
    if best is None:
        raise AssertionError(f"{module} is in no layer of tests/test_layers.py: add its package to LAYERS")
    return best


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    """Every import that points to a layer above the importer's, as 'importer (layer) imports target (layer)'."""
    return [f"{module} ({LAYERS[layer_of(module)][0]}) imports {target} ({LAYERS[layer_of(target)][0]})"
            for module, targets in sorted(graph.items()) for target in sorted(targets)
            if layer_of(target) > layer_of(module)]


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def import_graph() -> dict[str, set[str]]:
    """Module -> the project modules it imports (itself excluded)."""
    modules = project_modules()
    known = set(modules)
    return {name: set(imported(name, path.read_text(), path.name == "__init__.py", known)) - {name}
            for name, path in modules.items()}


def test_every_module_imports_its_own_layer_or_below() -> None:
    """No module imports a layer above its own; the failure names both modules and their layers."""
    assert upward_imports(import_graph()) == []


def test_no_module_import_cycle() -> None:
    """No group of modules imports each other in a circle."""
    assert cycles(import_graph()) == []


@pytest.mark.parametrize(("importer", "source", "expected"), [
    ("tools.environment.geometry", "from rewards.score import compute_score\n",
     "tools.environment.geometry (tools.environment) imports rewards.score (rewards)"),
    ("rewards.rollout", "def late():\n    from launch import cli\n",
     "rewards.rollout (rewards) imports launch.cli (launch)"),
    ("tools.builders.rl_data", "import tools.demo.world as world\n",
     "tools.builders.rl_data (tools.builders) imports tools.demo.world (tools.demo)"),
    ("rewards.score", "from .audit import run\n", "rewards.score (rewards) imports rewards.audit.run (rewards.audit)"),
])
def test_an_upward_import_is_reported(importer: str, source: str, expected: str) -> None:
    """The checker finds an upward import at module level, inside a function, by alias and relative."""
    known = set(project_modules())
    graph = {importer: set(imported(importer, source, False, known))}
    assert upward_imports(graph) == [expected]


def test_a_cycle_is_reported() -> None:
    """Three modules importing in a circle are one reported group; a chain is none."""
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": {"c"}}) == []
