"""The package's shape: one owner of the run directory's names, no import cycle, a report without torch.

These read the source (with the ast module, so comments and docstrings do not count) and import modules in
fresh interpreters; they fail on a change that breaks the layout docs/architecture.md describes.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "actstudy"
RUN_FILE_NAMES = ("summary.json", "metrics.csv", "grad_by_step.csv", "activation_stats.csv", "config.yaml",
                  "error.txt", "checkpoint.pt", "overrides.yaml", "multirun.yaml")
STATUSES = ("completed", "diverged", "failed", "running")


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def docstring_nodes(tree: ast.AST) -> set[int]:
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                found.add(id(first.value))
    return found


def string_literals(path: Path) -> list[tuple[int, str]]:
    """(line, text) of every string constant in the code, f-string pieces included, docstrings left out."""
    tree = ast.parse(path.read_text())
    docstrings = docstring_nodes(tree)
    return [(node.lineno, node.value) for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings]


@pytest.mark.parametrize("name", [n for n in MODULES if n != "actstudy.rundir"])
def test_only_rundir_spells_a_run_file_name_or_a_status(name):
    """A file name anywhere inside a string (a path, a message), a status as a whole string."""
    offending = [f"line {line}: {text!r}" for line, text in string_literals(MODULES[name])
                 if text in STATUSES or any(file_name in text for file_name in RUN_FILE_NAMES)]
    assert not offending, f"{name} spells what actstudy/rundir.py owns: " + "; ".join(offending)


def test_rundir_spells_every_run_file_name_and_status():
    texts = {text for _, text in string_literals(MODULES["actstudy.rundir"])}
    assert set(RUN_FILE_NAMES) | set(STATUSES) <= texts


# --------------------------------------------------------------------------------------- import graph


def imported_modules(name: str, path: Path) -> set[str]:
    """The actstudy modules `name` imports anywhere in its code (inside functions too)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: from . import x, from ..y import z
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            for alias in node.names:
                # `from package import module` imports that module; `from module import name` the module
                found.add(f"{source}.{alias.name}" if f"{source}.{alias.name}" in MODULES else source)
    return {m for m in found if m in MODULES and m != name}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, str] = {}  # visiting | done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = "visiting"
        path.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == "visiting":
                return path[path.index(target):] + [target]
            if target not in state and (cycle := visit(target)):
                return cycle
        path.pop()
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_the_import_graph_reads_the_report_package():
    assert {"actstudy.report.html", "actstudy.report.loading"} <= imported_modules(
        "actstudy.report", MODULES["actstudy.report"])
    assert "actstudy.rundir" in imported_modules("actstudy.report.loading", MODULES["actstudy.report.loading"])


def test_no_import_cycle_in_the_package():
    graph = {name: imported_modules(name, path) for name, path in MODULES.items()}
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " → ".join(cycle)


def test_no_module_of_the_report_imports_a_private_name_of_another():
    for name, path in MODULES.items():
        if not name.startswith("actstudy.report"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("actstudy"):
                private = [a.name for a in node.names if a.name.startswith("_")]
                assert not private, f"{name} imports {private} from {node.module}"


def test_every_module_imports_on_its_own():
    """Each module imported first, into an interpreter that has loaded no other actstudy module."""
    code = (
        "import importlib, sys\n"
        f"for name in {sorted(set(MODULES) - {'actstudy.__main__'})!r}:\n"  # __main__ runs the CLI
        "    for loaded in [m for m in sys.modules if m == 'actstudy' or m.startswith('actstudy.')]:\n"
        "        del sys.modules[loaded]\n"
        "    importlib.import_module(name)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr


def test_the_report_does_not_import_torch():
    report_modules = [n for n in MODULES if n.startswith("actstudy.report")]
    code = (f"import importlib, sys\nfor name in {report_modules!r}:\n    importlib.import_module(name)\n"
            "assert 'torch' not in sys.modules, 'torch was imported'")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
