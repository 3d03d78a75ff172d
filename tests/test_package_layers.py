"""ember's packages are layers: none imports a package that imports it back, even lazily inside a
function (docs/architecture.md, "Package layers"). A package is a folder `ember/<name>/` or a module
`ember/<name>.py`; tests (`*_test.py`) may import anything and are not counted."""
import ast
from collections import defaultdict
from pathlib import Path

import pytest

EMBER = Path(__file__).parents[1] / "ember"


ROOT = "ember (the root package, which loads every package on first use)"


def _package(module: str):
    """The package of ember a dotted module name lies in; ROOT for `ember` itself and the names it
    exports (`ember.Model`); None outside ember."""
    parts = module.split(".")
    if parts[0] != "ember":
        return None
    if len(parts) < 2:
        return ROOT
    name = parts[1]
    if (EMBER / name).is_dir() or (EMBER / f"{name}.py").is_file():
        return name
    return ROOT if len(parts) == 2 else None


def _imported_modules(node, module: str, is_package: bool) -> set:
    """The absolute names an import statement in `module` may load: `from x import y` loads x, and x.y
    when y is a module; a relative import is resolved against `module`."""
    if isinstance(node, ast.Import):
        return {alias.name for alias in node.names}
    if not isinstance(node, ast.ImportFrom):
        return set()
    base = node.module or ""
    if node.level:
        parent = module.split(".")[: len(module.split(".")) - node.level + is_package]
        base = ".".join(parent + ([node.module] if node.module else []))
    # `from ember import io` loads the module ember.io alone, not the root's lazy exports.
    return ({base} if base != "ember" else set()) | {f"{base}.{alias.name}" for alias in node.names}


def import_edges() -> dict:
    """{(importing package, imported package): ["file:line: statement", ...]} over ember's modules."""
    edges = defaultdict(list)
    for path in sorted(EMBER.rglob("*.py")):
        if path.name.endswith("_test.py") or path.name == "conftest.py":
            continue
        relative = path.relative_to(EMBER.parent)
        is_package = path.name == "__init__.py"
        module = ".".join((relative.parent if is_package else relative.with_suffix("")).parts)
        importer = _package(module)
        if importer == ROOT:  # ember/__init__.py: it loads on first use the packages its strings name
            named = {node.value for node in ast.walk(ast.parse(path.read_text())) if isinstance(node, ast.Constant)
                     and isinstance(node.value, str)}
            for package in {_package(name if name.startswith("ember.") else f"ember.{name}") for name in named}:
                if package not in (None, ROOT):
                    edges[ROOT, package].append(f"{relative}: loads ember.{package} on first use")
            continue
        source = path.read_text()
        lines = source.splitlines()
        statements = (node for node in ast.walk(ast.parse(source, str(relative))) if hasattr(node, "lineno"))
        for node in sorted(statements, key=lambda node: node.lineno):
            imported = {_package(name) for name in _imported_modules(node, module, is_package)}
            for package in sorted(imported - {None, importer}):
                edges[importer, package].append(f"{relative}:{node.lineno}: {lines[node.lineno - 1].strip()}")
    return edges


def _reaches(graph: dict, start: str, goal: str) -> bool:
    seen, todo = set(), [start]
    while todo:
        package = todo.pop()
        if package == goal:
            return True
        if package not in seen:
            seen.add(package)
            todo.extend(graph.get(package, ()))
    return False


def edges_in_cycles(edges: dict) -> dict:
    """The edges (a, b) whose b imports, directly or not, a again."""
    graph = defaultdict(set)
    for importer, imported in edges:
        graph[importer].add(imported)
    return {edge: lines for edge, lines in edges.items() if _reaches(graph, edge[1], edge[0])}


def test_no_package_imports_one_that_imports_it_back():
    cycles = edges_in_cycles(import_edges())
    if cycles:
        report = [f"{importer} -> {imported}:\n    " + "\n    ".join(lines)
                  for (importer, imported), lines in sorted(cycles.items())]
        pytest.fail("expected no import cycle between ember's packages; these imports form one "
                    "(docs/architecture.md, \"Package layers\", says which way each must go):\n" + "\n".join(report),
                    pytrace=False)


def test_the_walk_sees_every_form_of_import():
    source = ("import ember.define.model\n"
              "from ember.keras import files\n"
              "def load():\n"
              "    from ember.saving.registry import class_path\n"
              "    from .. import io\n"
              "    from . import registry\n")
    found = set()
    for node in ast.walk(ast.parse(source)):
        found |= {_package(name) for name in _imported_modules(node, "ember.saving.model_file", False)}
    assert found - {None} == {"define", "keras", "saving", "io"}
    assert _package("ember") == ROOT and _package("ember.Model") == ROOT  # they reach the root's exports


def test_a_cycle_names_its_import_lines():
    edges = {("saving", "define"): ["ember/saving/x.py:3: from ember.define import Sequential"],
             ("define", "saving"): ["ember/define/y.py:5: from ember.saving import registry"],
             ("define", "io"): ["ember/define/z.py:7: from ember.io import atomic_write"]}
    assert edges_in_cycles(edges) == {edge: edges[edge] for edge in [("saving", "define"), ("define", "saving")]}
