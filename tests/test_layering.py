"""The package's import structure, read from the source with ``ast`` (no module of the package is imported).

An import ``from lightning_explain.x import y`` depends on the module ``lightning_explain.x.y`` when there is one,
else on ``lightning_explain.x``; a relative import is resolved against the importing module's package; importing a
package means its ``__init__``. ``importlib.import_module("lightning_explain...")`` with a literal name counts as an
import, and so does a package ``__init__`` that imports ``f"{__name__}.{...}"`` (``attribution/methods`` loading
every method module): it depends on each public submodule. A name computed at run time in any other way is not
seen. Imports under ``if TYPE_CHECKING:`` are never executed and do not count as module-level.

Checked: no cycles among module-level imports; the layer rules of :data:`LAYER_RULES`; the attribution engine and
registry know no method module; no imports of the package inside functions outside :data:`FUNCTION_LEVEL_ALLOWED`.
The last test runs each check on a small broken package written to a temporary folder, so each can fail.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

PACKAGE = "lightning_explain"
PACKAGE_DIR = Path(__file__).resolve().parents[1] / PACKAGE

# What each part of the package may import at module level. A part (a "layer") is the first name under
# lightning_explain: a subpackage, a top-level module, or "__init__" for the package root. An entry is a layer, a
# module's full dotted name (that module only), "*" (every layer) or "!layer" (not that one, overriding "*").
LAYER_RULES: dict[str, tuple[frozenset[str], str]] = {
    "core": (
        frozenset({"core", "_compat"}),
        "the bottom layer (model guard, gradient pass, targets, layers, RNG, validators) builds on nothing else",
    ),
    "attribution": (
        frozenset({"core", "attribution", "_compat"}),
        "the attribution methods are pure functions on top of core, without Lightning or logging",
    ),
    "analysis": (
        frozenset({"core", "attribution", "analysis", "_compat"}),
        "sanity checks, activation maximisation, map statistics and gradient norms use the methods",
    ),
    "overfit": (
        frozenset({"core", "attribution", "analysis", "overfit", "_compat"}),
        "the overfitting signals and detector use analysis's gradient norms and map statistics",
    ),
    "render": (
        frozenset({"render", "_compat"}),
        "drawing knows no model: colormaps, grids and PNG are tensor ops and bytes, usable on any maps",
    ),
    "callbacks": (
        frozenset({"*", "!cli", "!dashboard"}),
        "the Lightning side may use every library layer, but not the tools that read finished logs",
    ),
    "dashboard": (
        frozenset({"dashboard", "cli", "render", "_tfrecord"}),
        "reads finished logs (the CLI's run reader, event files, PNG metadata), never the training side",
    ),
    "cli": (
        frozenset({"cli"}),
        "the command starts without torch or Lightning; the dashboard and the event-file reader wait in subcommands",
    ),
    "__main__": (frozenset({"cli"}), "python -m lightning_explain runs the command"),
    "__init__": (
        frozenset(),
        "the package root imports its public names on first use (__getattr__), so importing it loads nothing",
    ),
    "_compat": (frozenset(), "the shim for Lightning's two namespaces imports only Lightning"),
    "_tfrecord": (frozenset(), "event-file framing (numpy only), shared by the callbacks, the CLI and the dashboard"),
    "synthetic": (frozenset(), "the synthetic datasets need only torch"),
}

METHODS_PACKAGE = f"{PACKAGE}.attribution.methods"
METHOD_BLIND = (f"{PACKAGE}.attribution.engine", f"{PACKAGE}.attribution.registry", f"{PACKAGE}.attribution.tokens")
"""Modules that must not import any module under attribution/methods/ (at any level, TYPE_CHECKING included)."""

FUNCTION_LEVEL_ALLOWED = {
    f"{PACKAGE}.cli": "the command imports each subcommand's dependencies when it runs, to start fast",
    f"{PACKAGE}:__getattr__": "the package root's public names, imported on first use",
    f"{PACKAGE}.attribution:__getattr__": "the names that moved to analysis, imported on first use (no cycle)",
}
"""Where imports of the package inside functions are allowed: a package (everything under it), or
``module:function`` for one function."""


@dataclass(frozen=True)
class Import:
    """One dependency of ``source`` on the package's module ``target``."""

    source: str
    target: str
    line: int
    kind: str  # "module", "type_checking" or "function"
    function: str = ""  # the enclosing function's dotted name, for kind "function"

    def where(self) -> str:
        inside = f" in {self.function}()" if self.function else ""
        return f"{self.source}:{self.line}{inside}"


# --- reading the source -----------------------------------------------------------------------------------------------


def find_modules(package_dir: Path, package: str = PACKAGE) -> dict[str, Path]:
    """Every module of the package by dotted name; a package's name stands for its ``__init__.py``."""
    modules = {}
    for path in sorted(package_dir.rglob("*.py")):
        parts = [package, *path.relative_to(package_dir).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def read_imports(modules: dict[str, Path], package: str = PACKAGE) -> list[Import]:
    """Every import of one of ``modules`` by one of ``modules``."""
    found: list[Import] = []
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        reader = _ImportReader(name, name if is_package else name.rpartition(".")[0], is_package, modules, package)
        reader.visit(ast.parse(path.read_text(encoding="utf-8"), filename=str(path)))
        found += reader.found
    return found


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The module ``name`` is, or the closest package above it that is one of ``modules``."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


class _ImportReader(ast.NodeVisitor):
    def __init__(self, module: str, package_of: str, is_package: bool, modules: dict[str, Path], root: str) -> None:
        self.module, self.package_of, self.is_package = module, package_of, is_package
        self.modules, self.root = modules, root
        self.kind, self.scope, self.functions = "module", [], []
        self.found: list[Import] = []

    def _add(self, node: ast.AST, target: str | None) -> None:
        if target is None or not (target == self.root or target.startswith(self.root + ".")):
            return
        resolved = _resolve(target, self.modules)
        if resolved is not None and resolved != self.module:
            function = ".".join(self.scope) if self.functions else ""
            self.found.append(Import(self.module, resolved, node.lineno, self.kind, function))

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._add(node, alias.name)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level:
            parts = self.package_of.split(".")
            base = ".".join(parts[: len(parts) - (node.level - 1)])
            origin = f"{base}.{node.module}" if node.module else base
        else:
            origin = node.module or ""
        for alias in node.names:
            submodule = f"{origin}.{alias.name}"
            self._add(node, submodule if submodule in self.modules else origin)

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        called = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
        if called in ("import_module", "__import__") and node.args:
            argument = node.args[0]
            if isinstance(argument, ast.Constant) and isinstance(argument.value, str):
                self._add(node, argument.value)
            elif self.is_package and _is_submodule_pattern(argument):
                prefix = self.module + "."
                for name in self.modules:
                    tail = name[len(prefix) :]
                    if name.startswith(prefix) and "." not in tail and not tail.startswith("_"):
                        self._add(node, name)
        self.generic_visit(node)

    def visit_If(self, node: ast.If) -> None:
        test = node.test
        if (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
            isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
        ):
            kind, self.kind = self.kind, "type_checking"
            for statement in node.body:
                self.visit(statement)
            self.kind = kind
            for statement in node.orelse:
                self.visit(statement)
        else:
            self.generic_visit(node)

    def _visit_function(self, node: ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda) -> None:
        kind, self.kind = self.kind, "function"
        self.scope.append(getattr(node, "name", "<lambda>"))
        self.functions.append(node)
        self.generic_visit(node)
        self.functions.pop()
        self.scope.pop()
        self.kind = kind

    visit_FunctionDef = visit_AsyncFunctionDef = visit_Lambda = _visit_function

    def visit_ClassDef(self, node: ast.ClassDef) -> None:  # a class body runs at import: its imports are module-level
        self.scope.append(node.name)
        self.generic_visit(node)
        self.scope.pop()


def _is_submodule_pattern(node: ast.expr) -> bool:
    """Whether ``node`` is ``f"{__name__}.{...}"``: a package importing its own submodules by name."""
    if not isinstance(node, ast.JoinedStr) or len(node.values) < 2:
        return False
    first, second = node.values[0], node.values[1]
    return (
        isinstance(first, ast.FormattedValue)
        and isinstance(first.value, ast.Name)
        and first.value.id == "__name__"
        and isinstance(second, ast.Constant)
        and str(second.value).startswith(".")
    )


def layer_of(module: str, package: str = PACKAGE) -> str:
    """The first name under the package (``"__init__"`` for the package itself)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == package else "__init__"


# --- the checks -------------------------------------------------------------------------------------------------------


def find_cycles(imports: list[Import]) -> list[str]:
    """One cycle of module-level imports per strongly connected group, as ``a -> b -> a`` with the lines."""
    edges: dict[str, dict[str, Import]] = {}
    for item in imports:
        if item.kind == "module":
            edges.setdefault(item.source, {}).setdefault(item.target, item)
    cycles = []
    for group in _strongly_connected(edges):
        if len(group) < 2:
            continue
        start = min(group)
        path = _shortest_cycle(start, group, edges)
        steps = [edges[a][b] for a, b in zip(path, path[1:], strict=False)]
        lines = ", ".join(f"{step.where()} imports {step.target}" for step in steps)
        cycles.append(f"{' -> '.join(path)}  ({lines})")
    return sorted(cycles)


def _strongly_connected(edges: dict[str, dict[str, Import]]) -> list[set[str]]:
    """Tarjan's algorithm, iterative."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[set[str]] = []
    nodes = sorted(set(edges) | {t for targets in edges.values() for t in targets})
    for root in nodes:
        if root in index:
            continue
        work = [(root, iter(sorted(edges.get(root, {}))))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, {})))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                group = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.add(member)
                    if member == node:
                        break
                groups.append(group)
    return groups


def _shortest_cycle(start: str, group: set[str], edges: dict[str, dict[str, Import]]) -> list[str]:
    """The shortest path from ``start`` back to itself inside ``group`` (breadth first)."""
    previous: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for child in sorted(edges.get(node, {})):
                if child == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(previous[path[-1]])
                    return [*reversed(path), start]
                if child in group and child not in previous and child != start:
                    previous[child] = node
                    following.append(child)
        frontier = following
    raise AssertionError(f"no cycle through {start}")  # unreachable for a strongly connected group of two or more


def _allows(entries: frozenset[str], target: str, package: str = PACKAGE) -> bool:
    layer = layer_of(target, package)
    if f"!{layer}" in entries:
        return False
    return "*" in entries or layer in entries or target in entries


def layer_violations(
    imports: list[Import], modules: dict[str, Path], rules: dict[str, tuple[frozenset[str], str]] = LAYER_RULES
) -> list[str]:
    """Module-level imports a rule forbids, and layers without a rule (or rules without a layer)."""
    problems = []
    layers = {layer_of(module) for module in modules}
    problems += [
        f"{layer}: no rule in LAYER_RULES for this part of the package" for layer in sorted(layers - set(rules))
    ]
    problems += [
        f"{layer}: LAYER_RULES has a rule for a part that does not exist" for layer in sorted(set(rules) - layers)
    ]
    for item in imports:
        source_layer = layer_of(item.source)
        if item.kind != "module" or source_layer not in rules or source_layer == layer_of(item.target):
            continue
        entries, reason = rules[source_layer]
        if not _allows(entries, item.target):
            problems.append(f"{item.where()} imports {item.target}, but {source_layer} may not ({reason})")
    return problems


def method_imports(imports: list[Import], blind: tuple[str, ...] = METHOD_BLIND) -> list[str]:
    """Imports of a module under attribution/methods/ by one of ``blind``, of any kind."""
    return [
        f"{item.where()} imports {item.target} ({item.kind} level)"
        for item in imports
        if item.source in blind and (item.target == METHODS_PACKAGE or item.target.startswith(METHODS_PACKAGE + "."))
    ]


def function_level_imports(imports: list[Import], allowed: dict[str, str] = FUNCTION_LEVEL_ALLOWED) -> list[str]:
    """Imports of the package inside functions, outside the allowed places."""
    problems = []
    for item in imports:
        if item.kind != "function":
            continue
        outermost = item.function.split(".")[0]
        if f"{item.source}:{outermost}" in allowed or f"{item.source}:{item.function}" in allowed:
            continue
        if any(item.source == place or item.source.startswith(place + ".") for place in allowed if ":" not in place):
            continue
        problems.append(f"{item.where()} imports {item.target}")
    return problems


# --- the package ------------------------------------------------------------------------------------------------------

MODULES = find_modules(PACKAGE_DIR)
IMPORTS = read_imports(MODULES)


def test_the_reader_sees_the_package():
    assert f"{PACKAGE}.core.validation" in MODULES and f"{PACKAGE}.callbacks.probe" in MODULES
    assert any(i.source == f"{PACKAGE}.attribution" and i.target == METHODS_PACKAGE for i in IMPORTS)
    seen = {(i.source, i.target) for i in IMPORTS}
    assert (METHODS_PACKAGE, f"{METHODS_PACKAGE}.saliency") in seen  # the registry's import loop is seen


def test_no_import_cycles():
    cycles = find_cycles(IMPORTS)
    assert not cycles, "module-level import cycles:\n" + "\n".join(cycles)


def test_each_part_imports_only_what_its_layer_rule_allows():
    problems = layer_violations(IMPORTS, MODULES)
    assert not problems, "layer rule violations:\n" + "\n".join(problems)


def test_the_engine_and_the_registry_import_no_method_module():
    problems = method_imports(IMPORTS)
    assert not problems, "the engine and the registry must not know the methods:\n" + "\n".join(problems)


def test_no_function_level_imports_of_the_package():
    problems = function_level_imports(IMPORTS)
    assert not problems, "imports of the package inside functions (import at module level):\n" + "\n".join(problems)


# --- each check can fail ----------------------------------------------------------------------------------------------

BROKEN_PACKAGE = {
    "__init__.py": "",
    "_compat.py": "",
    "core/__init__.py": "from . import ring_a\n",
    # a cycle through a relative import and a `from package import module`:
    "core/ring_a.py": "from .ring_b import thing\n",
    "core/ring_b.py": "from lightning_explain.core import ring_c\n",
    "core/ring_c.py": "import lightning_explain.core.ring_a\n",
    # core reaching up to render, and render into core (TYPE_CHECKING imports are fine):
    "core/upward.py": "from ..render.draw import draw\n",
    "render/__init__.py": "",
    "render/draw.py": (
        "from typing import TYPE_CHECKING\n"
        "from lightning_explain.core.ring_a import thing\n"  # not allowed
        "if TYPE_CHECKING:\n    from lightning_explain.attribution import engine\n"
    ),
    "core/validation.py": "",
    "attribution/__init__.py": "",
    "attribution/engine.py": (
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from lightning_explain.attribution.methods import saliency\n"
    ),
    "attribution/registry.py": (
        "def load():\n    import importlib\n    importlib.import_module('lightning_explain.attribution.methods')\n"
    ),
    "attribution/methods/__init__.py": "import importlib\nimportlib.import_module(f'{__name__}.saliency')\n",
    "attribution/methods/saliency.py": "from lightning_explain.attribution.engine import TYPE_CHECKING\n",
    "callbacks/__init__.py": "",
    "callbacks/monitor.py": (
        "from lightning_explain.cli import main\n"
        "class Monitor:\n    def setup(self):\n        from lightning_explain.render import draw\n"
    ),
    "cli/__init__.py": "def main():\n    from lightning_explain.callbacks import monitor\n",
    "extra.py": "",  # a part of the package without a rule
}


def _broken_package(tmp_path: Path) -> tuple[dict[str, Path], list[Import]]:
    for name, text in BROKEN_PACKAGE.items():
        path = tmp_path / PACKAGE / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    modules = find_modules(tmp_path / PACKAGE)
    return modules, read_imports(modules)


def test_each_check_reports_what_is_broken_in_a_small_package(tmp_path):
    modules, imports = _broken_package(tmp_path)
    core = f"{PACKAGE}.core"

    cycles = find_cycles(imports)  # not engine <-> saliency (TYPE_CHECKING) nor cli <-> callbacks (inside main())
    assert len(cycles) == 1, cycles
    assert cycles[0].startswith(f"{core}.ring_a -> {core}.ring_b -> {core}.ring_c -> {core}.ring_a  (")
    assert f"{core}.ring_c:1 imports {core}.ring_a" in cycles[0]

    problems = layer_violations(imports, modules)
    reason = {layer: rule[1] for layer, rule in LAYER_RULES.items()}
    assert sorted(p for p in problems if " imports " in p) == sorted(
        [
            f"{core}.upward:1 imports {PACKAGE}.render.draw, but core may not ({reason['core']})",
            f"{PACKAGE}.render.draw:2 imports {core}.ring_a, but render may not ({reason['render']})",
            f"{PACKAGE}.callbacks.monitor:1 imports {PACKAGE}.cli, but callbacks may not ({reason['callbacks']})",
        ]
    )  # not render's TYPE_CHECKING import, nor cli's in main()
    missing = {"analysis", "overfit", "dashboard", "__main__", "_tfrecord", "synthetic"}
    assert sorted(p for p in problems if " imports " not in p) == sorted(
        ["extra: no rule in LAYER_RULES for this part of the package"]
        + [f"{layer}: LAYER_RULES has a rule for a part that does not exist" for layer in missing]
    )

    assert method_imports(imports) == [
        f"{PACKAGE}.attribution.engine:3 imports {METHODS_PACKAGE}.saliency (type_checking level)",
        f"{PACKAGE}.attribution.registry:3 in load() imports {METHODS_PACKAGE} (function level)",
    ]

    assert function_level_imports(imports) == [
        f"{PACKAGE}.attribution.registry:3 in load() imports {METHODS_PACKAGE}",
        f"{PACKAGE}.callbacks.monitor:4 in Monitor.setup() imports {PACKAGE}.render.draw",
    ]  # cli's function-level import is allowed
    assert (METHODS_PACKAGE, f"{METHODS_PACKAGE}.saliency") in {(i.source, i.target) for i in imports}
