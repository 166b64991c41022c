"""``task.fn``: a reference ``package.module:function`` (or ``package.module.function``).

``check_task`` verifies a reference *without importing* the module (it reads the module's source
with ``ast``), so a typo stops the sweep before anything launches and the parent process never
pays for importing torch. ``load_task`` imports it, in the run's process.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
from collections.abc import Callable
from typing import Any

from runner.errors import TaskImportError


def split_ref(ref: str) -> tuple[str, str]:
    if not isinstance(ref, str) or not ref.strip():
        raise TaskImportError(f"task.fn must be 'package.module:function', got {ref!r}")
    ref = ref.strip()
    if ":" in ref:
        module, _, attr = ref.partition(":")
    else:
        module, _, attr = ref.rpartition(".")
    if not module or not attr or not attr.isidentifier():
        raise TaskImportError(f"task.fn={ref!r} is not of the form 'package.module:function'")
    return module, attr


def check_task(ref: str) -> None:
    """Raise TaskImportError if ``ref`` clearly cannot be loaded (module or name missing)."""
    module, attr = split_ref(ref)
    top, _, rest = module.partition(".")
    if top in RENAMED and importlib.util.find_spec(top) is None:
        module = f"{RENAMED[top]}.{rest}" if rest else RENAMED[top]
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError) as exc:
        raise TaskImportError(f"task.fn={ref!r}: cannot find module '{module}': {exc}") from None
    if spec is None:
        raise TaskImportError(f"task.fn={ref!r}: no module named '{module}' (is it installed, or "
                              "is the current directory its project root?)")
    if not spec.origin or not spec.origin.endswith(".py"):
        return  # compiled or namespace module: checked when the run imports it
    try:
        with open(spec.origin, encoding="utf-8") as f:
            tree = ast.parse(f.read())
    except (OSError, SyntaxError, ValueError):
        return  # a syntax error is reported by the run with its traceback
    names = _top_level_names(tree)
    if "*" not in names and attr not in names:
        raise TaskImportError(f"task.fn={ref!r}: module '{module}' ({spec.origin}) defines no "
                              f"'{attr}'")


def _top_level_names(tree: ast.Module) -> set[str]:
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names.update(t.id for t in targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.Import | ast.ImportFrom):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, ast.If | ast.Try):
            return names | {"*"}  # conditional definitions: too dynamic to be sure
    return names


# packages that runner installs under its own name now; sweeps frozen before still name them so
RENAMED = {"integrations": "runner.integrations", "examples": "runner.examples"}


def import_module(name: str) -> Any:
    """``importlib.import_module``, also for names frozen before a package was renamed."""
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        top, _, rest = name.partition(".")
        if top not in RENAMED or exc.name not in (top, name):
            raise
        return importlib.import_module(f"{RENAMED[top]}.{rest}" if rest else RENAMED[top])


def load_task(ref: str) -> Callable[..., Any]:
    module, attr = split_ref(ref)
    try:
        fn = getattr(import_module(module), attr)
    except AttributeError:
        raise TaskImportError(f"task.fn={ref!r}: module '{module}' has no '{attr}'") from None
    if not callable(fn):
        raise TaskImportError(f"task.fn={ref!r} is not callable")
    return fn


def source_files(refs: set[str], cap: int = 50) -> list[str]:
    """The task functions' own source files (found without importing): each module's file and
    the Python files beside it, so an edit to a task package outside git changes the code
    id too."""
    import os

    out: list[str] = []
    for ref in sorted(r for r in refs if isinstance(r, str)):
        try:
            module, _ = split_ref(ref)
            spec = importlib.util.find_spec(module)
        except (TaskImportError, ImportError, ValueError):
            continue
        origin = getattr(spec, "origin", None) if spec is not None else None
        if not origin or not origin.endswith(".py") or not os.path.isfile(origin):
            continue
        folder = os.path.dirname(origin)
        beside = sorted(os.path.join(folder, n) for n in os.listdir(folder) if n.endswith(".py"))
        for path in [origin, *beside]:
            if path not in out and len(out) < cap and os.path.getsize(path) < 1_000_000:
                out.append(path)
    return out
