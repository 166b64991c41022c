"""Run filters: a safe expression over a run's config, or an importable predicate.

An expression such as ``task.lr < 0.01 and seed in (0, 1)`` is parsed with ``ast`` and only
comparisons, boolean logic, arithmetic, literals, attribute access and a few pure functions are
allowed, so a filter (which may come from a chat command) can never run arbitrary code.
A predicate ``pkg.module:function`` is imported and called with the run's values dict.
"""

from __future__ import annotations

import ast
import importlib
import re
from collections.abc import Callable, Mapping
from typing import Any

from runner.errors import SweepError

_PREDICATE = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
_ALLOWED = (
    ast.Expression, ast.BoolOp, ast.And, ast.Or, ast.UnaryOp, ast.Not, ast.USub, ast.UAdd,
    ast.BinOp, ast.Add, ast.Sub, ast.Mult, ast.Div, ast.FloorDiv, ast.Mod, ast.Pow,
    ast.Compare, ast.Eq, ast.NotEq, ast.Lt, ast.LtE, ast.Gt, ast.GtE, ast.In, ast.NotIn,
    ast.Is, ast.IsNot, ast.Constant, ast.Name, ast.Load, ast.Attribute, ast.Tuple, ast.List,
    ast.Call, ast.IfExp, ast.Subscript,
)
_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "abs": abs, "min": min, "max": max, "round": round, "len": len, "int": int, "float": float,
    "str": str,
}


class _Namespace(dict[str, Any]):
    """Attribute access over a nested dict: ``task.lr``. A missing key names itself."""

    def __getattr__(self, name: str) -> Any:
        try:
            return _wrap(self[name])
        except KeyError:
            raise SweepError(f"filter refers to unknown key '{name}'") from None


def _wrap(value: Any) -> Any:
    return _Namespace(value) if isinstance(value, dict) else value


RunFilter = Callable[[Mapping[str, Any], Mapping[str, Any]], bool]


def compile_filter(text: str) -> RunFilter:
    """Compile a filter; the result takes (values, config) and returns True to keep the run."""
    text = text.strip()
    if _PREDICATE.match(text):
        return _import_predicate(text)
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError as exc:
        raise SweepError(f"sweep.filter '{text}' is not a valid expression: {exc.msg}") from None
    for node in ast.walk(tree):
        if not isinstance(node, _ALLOWED):
            raise SweepError(f"sweep.filter '{text}': {type(node).__name__} is not allowed "
                             "(use comparisons, and/or/not, arithmetic and literals)")
        if isinstance(node, ast.Call) and not (
            isinstance(node.func, ast.Name) and node.func.id in _FUNCTIONS
        ):
            raise SweepError(f"sweep.filter '{text}': only {', '.join(_FUNCTIONS)} may be called")
        if isinstance(node, ast.Attribute) and node.attr.startswith("_"):
            raise SweepError(f"sweep.filter '{text}': private attribute '{node.attr}'")
    code = compile(tree, "<sweep.filter>", "eval")

    def keep(values: Mapping[str, Any], config: Mapping[str, Any]) -> bool:
        names = _Namespace({k: _wrap(v) for k, v in config.items()})
        for key, value in values.items():  # swept group choices are not config keys
            names.setdefault(key, value)

        class _Names(dict[str, Any]):
            def __missing__(self, key: str) -> Any:
                if key in _FUNCTIONS:
                    return _FUNCTIONS[key]
                raise SweepError(f"sweep.filter '{text}' refers to unknown key '{key}'")

        try:
            return bool(eval(code, {"__builtins__": {}}, _Names(names)))
        except SweepError:
            raise
        except Exception as exc:
            raise SweepError(f"sweep.filter '{text}' failed on run {dict(values)}: "
                             f"{type(exc).__name__}: {exc}") from None

    return keep


def _import_predicate(text: str) -> RunFilter:
    module_name, _, attr = text.partition(":")
    try:
        fn = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise SweepError(f"sweep.filter '{text}': cannot import predicate: {exc}") from None
    if not callable(fn):
        raise SweepError(f"sweep.filter '{text}' is not callable")
    return lambda values, config: bool(fn(dict(values)))
