"""The house: runner's modules import one another without a circle (function-level imports
count too), and the core imports no backend (a backend keeps its knowledge behind the launcher
interface and the registries that name it)."""

from __future__ import annotations

import ast
from pathlib import Path

from conftest import REPO

PACKAGE_DIRS = {"runner": REPO / "runner", "runner.integrations": REPO / "integrations",
                "runner.examples": REPO / "examples"}
BACKENDS = ("runner.slurm", "runner.launchers.slurm", "runner.launchers.pinned")
# the core: every module of these packages (the backends are reached through registries only)
CORE_PACKAGES = ("runner.config", "runner.planning", "runner.storage", "runner.execution",
                 "runner.scheduling", "runner.results")


def _modules() -> dict[str, Path]:
    out = {}
    for package, root in PACKAGE_DIRS.items():
        for path in root.rglob("*.py"):
            rel = path.relative_to(root).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            out[".".join([package, *parts])] = path
    return out


def _imports(path: Path, name: str, known: set[str]) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            base = node.module
            if node.level:  # relative
                parent = name.rsplit(".", node.level)[0]
                base = f"{parent}.{node.module}"
            targets = [base, *(f"{base}.{a.name}" for a in node.names)]
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def graph() -> dict[str, set[str]]:
    modules = _modules()
    known = set(modules)
    return {name: _imports(path, name, known) for name, path in modules.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def test_the_import_graph_has_no_circle() -> None:
    # packages import their own modules in __init__: a package and its modules are one room
    edges = {m: {t for t in ts if not m.startswith(t + ".") and not t.startswith(m + ".")}
             for m, ts in graph().items()}
    assert cycles(edges) == []


def test_the_core_imports_no_backend() -> None:
    edges = graph()
    core = [m for m in edges if m.startswith(tuple(p + "." for p in CORE_PACKAGES))]
    assert len(core) > 30
    for module in core:
        reached = {t for t in edges[module] if t.startswith(BACKENDS)}
        assert reached == set(), (module, reached)


def test_the_folder_list_draws_the_architecture() -> None:
    # every concept has its package (config, planning, storage, execution, scheduling, results,
    # launchers, cli, ...); only the public door and the exceptions stay at the top
    top = sorted(p.stem for p in (REPO / "runner").glob("*.py"))
    assert top == ["__init__", "__main__", "errors"], top
    packages = sorted(p.parent.name for p in (REPO / "runner").glob("*/__init__.py"))
    assert set(CORE_PACKAGES) | {"runner.cli", "runner.launchers"} <= {
        f"runner.{p}" for p in packages}, packages


def test_every_package_is_installed() -> None:
    # a package left out of pyproject's list imports from a checkout but not from a wheel
    import tomllib

    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
                 ["packages"])
    packages = {".".join(("runner", *p.parent.relative_to(REPO / "runner").parts))
                for p in (REPO / "runner").rglob("__init__.py")}
    assert packages - listed == set()


def test_a_sweep_from_the_command_line_imports_no_numpy(project) -> None:  # noqa: ANN001
    """The command everyone runs most stays light: a sweep of the toy task, from composing to
    printing its end, never imports numpy (a tenth of a second per launch; the results modules
    that need it are imported where they are used)."""
    import subprocess
    import sys

    code = ("import runpy, sys\nsys.argv = ['runner', *sys.argv[1:]]\ntry:\n"
            "    runpy.run_module('runner', run_name='__main__', alter_sys=True)\n"
            "except SystemExit:\n    pass\nprint('numpy' in sys.modules, file=sys.stderr)\n")
    proc = subprocess.run([sys.executable, "-c", code, *project.args("seed=1,2")[3:],
                           "runner.metric=score"], cwd=project.root, env=project.env(),
                          capture_output=True, text=True, timeout=120)
    assert "2 completed" in proc.stdout + proc.stderr, proc.stdout + proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == "False", proc.stderr
