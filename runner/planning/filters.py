"""Run filters: a safe expression over a run's config, or an importable predicate.

An expression such as ``task.lr < 0.01 and seed in (0, 1)`` is parsed with ``ast`` and evaluated
by a small interpreter here, never by ``eval``: only comparisons, boolean logic, arithmetic,
literals, key access and a few pure functions exist, and every operation's cost is bounded
*before it runs*: each operand's weight (every element reachable through nesting, each
occurrence counted, so ``[[0]*10000]*10000`` weighs 10^8) is at most ``MAX_WEIGHT``, a result's
weight, length and bits are predicted from its operands and refused above ``MAX_WEIGHT``,
``MAX_ITEMS`` and ``MAX_INT_BITS``, ``str()`` predicts the length of its text first, ``%``
formatting of strings is refused, a filter has at most ``MAX_NODES`` nodes, and the time budget
of the whole sweep is checked at every node, not between runs. So one operation costs at most a
few milliseconds of C-level work (the GIL is never held for longer), and a filter, which may come
from a chat command, can neither run code nor keep the process busy.

Error messages name the filter and the run's id, never a config value (a value may be a
host's secret read through an interpolation).

A predicate ``pkg.module:function`` is imported and called with the run's values dict; it is
the shell user's own code, and is refused where predicates are not allowed (chat).
"""

from __future__ import annotations

import ast
import importlib
import operator
import re
import time
from collections.abc import Callable, Mapping
from typing import Any

from runner.errors import SweepError

_PREDICATE = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
MAX_TEXT = 2000  # characters of one filter
MAX_NODES = 500  # syntax nodes of one filter
MAX_INT_BITS = 4096  # no integer result above this many bits
MAX_ITEMS = 10_000  # no string, list or tuple result above this length
MAX_WEIGHT = 100_000  # no operand or result reaching more elements than this (nesting counted)
BUDGET_S = 10.0  # evaluation time over the whole sweep

_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "abs": abs, "min": min, "max": max, "round": round, "len": len, "int": int, "float": float,
    "str": str,
}
_BINARY: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
    ast.Div: operator.truediv, ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_COMPARE: dict[type, Callable[[Any, Any], Any]] = {
    ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt, ast.LtE: operator.le,
    ast.Gt: operator.gt, ast.GtE: operator.ge, ast.In: lambda a, b: a in b,
    ast.NotIn: lambda a, b: a not in b, ast.Is: operator.is_, ast.IsNot: operator.is_not,
}
_UNARY: dict[type, Callable[[Any], Any]] = {
    ast.Not: operator.not_, ast.USub: operator.neg, ast.UAdd: operator.pos,
}


class _Refused(Exception):
    """An operation outside the cost bounds (its message says which)."""


class _OverBudget(Exception):
    """The sweep's time budget for the filter is spent."""


class _Missing(Exception):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _bits(value: Any) -> int:
    return value.bit_length() if isinstance(value, int) and not isinstance(value, bool) else 0


def _size(value: Any) -> int:
    return len(value) if isinstance(value, str | list | tuple) else 0


def _weight(value: Any, cap: int = MAX_WEIGHT) -> int:
    """Elements reachable from ``value`` (characters of strings, 64-bit words of integers,
    each occurrence of a shared item counted again), walked until ``cap`` is passed: what an
    operation over the whole value (a comparison, ``in``, ``min``) may cost."""
    total, stack = 0, [value]
    while stack and total <= cap:
        item = stack.pop()
        total += 1
        if isinstance(item, str | bytes):
            total += len(item)
        elif isinstance(item, int):
            total += item.bit_length() // 64
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            if len(item) > cap:
                return cap + 1
            stack.extend(item)
    return total


def _text_bound(value: Any, cap: int = MAX_ITEMS) -> int:
    """An upper bound on ``len(str(value))``, found by walking ``value`` until ``cap`` is
    passed (a container's items are shown as their repr: up to 10 characters a character)."""
    total, stack = 0, [(value, True)]
    while stack and total <= cap:
        item, top = stack.pop()
        if isinstance(item, str):
            total += len(item) if top else 10 * len(item) + 2
        elif isinstance(item, bool) or item is None:
            total += 5
        elif isinstance(item, int):
            total += item.bit_length() * 31 // 100 + 2
        elif isinstance(item, float):
            total += 25
        elif isinstance(item, dict):
            total += 2 + 4 * len(item)
            stack.extend((x, False) for pair in item.items() for x in pair)
        elif isinstance(item, list | tuple):
            if len(item) > cap:
                return cap + 1
            total += 2 + 2 * len(item)
            stack.extend((x, False) for x in item)
        else:
            total += cap + 1
    return total


def _operand(value: Any) -> Any:
    if _weight(value) > MAX_WEIGHT:
        raise _Refused(f"it would use a value of more than {MAX_WEIGHT} elements (too costly)")
    return value


def _check_result(value: Any) -> Any:
    if _bits(value) > MAX_INT_BITS:
        raise _Refused(f"it would compute an integer above {MAX_INT_BITS} bits (too costly)")
    if _size(value) > MAX_ITEMS:
        raise _Refused(f"it would build a sequence of more than {MAX_ITEMS} items (too costly)")
    return value


def _binary(op: ast.operator, a: Any, b: Any) -> Any:
    weight_a, weight_b = _weight(a), _weight(b)  # (each walk at most once per operation)
    if max(weight_a, weight_b) > MAX_WEIGHT:
        raise _Refused(f"it would use a value of more than {MAX_WEIGHT} elements (too costly)")
    if isinstance(op, ast.Pow):  # (a float power overflows at once instead)
        if _bits(a) > 1 and _bits(b) and b > 0 and _bits(a) * b > MAX_INT_BITS:
            raise _Refused(f"it would compute an integer above {MAX_INT_BITS} bits (too costly)")
    elif isinstance(op, ast.Mult):
        if _size(a) or _size(b):
            count = b if _size(a) else a
            if isinstance(count, int) and max(_size(a), _size(b)) * count > MAX_ITEMS:
                raise _Refused(f"it would build a sequence of more than {MAX_ITEMS} items "
                               "(too costly)")
            if isinstance(count, int) and (weight_a if _size(a) else weight_b) * count > \
                    MAX_WEIGHT:
                raise _Refused(f"it would build a value of more than {MAX_WEIGHT} elements "
                               "(too costly)")
        elif _bits(a) + _bits(b) > MAX_INT_BITS:
            raise _Refused(f"it would compute an integer above {MAX_INT_BITS} bits (too costly)")
    elif isinstance(op, ast.Mod) and isinstance(a, str | bytes):
        raise _Refused("'%' formatting of strings is not allowed")
    elif isinstance(op, ast.Add) and _size(a) + _size(b) > MAX_ITEMS:
        raise _Refused(f"it would build a sequence of more than {MAX_ITEMS} items (too costly)")
    elif isinstance(op, ast.Add) and weight_a + weight_b > MAX_WEIGHT:
        raise _Refused(f"it would build a value of more than {MAX_WEIGHT} elements (too costly)")
    return _check_result(_BINARY[type(op)](a, b))


def _call(name: str, args: list[Any]) -> Any:
    for arg in args:
        _operand(arg)
    if name == "str" and args and _text_bound(args[0]) > MAX_ITEMS:
        raise _Refused(f"str() would build a text of more than {MAX_ITEMS} characters "
                       "(too costly)")
    if name == "round" and len(args) > 1 and isinstance(args[1], int) and abs(args[1]) > 1000:
        raise _Refused("round() to more than 1000 digits is not allowed")
    return _check_result(_FUNCTIONS[name](*args))


def _attribute(value: Any, name: str) -> Any:
    if isinstance(value, dict):
        if name not in value:
            raise _Missing(name)
        return value[name]
    raise _Refused(f"'.{name}' on a {type(value).__name__} is not allowed (only config keys "
                   "have attributes)")


class _Interpreter:
    def __init__(self, names: Mapping[str, Any], deadline: float = float("inf")) -> None:
        self.names = names
        self.deadline = deadline

    def eval(self, node: ast.AST) -> Any:
        if time.monotonic() > self.deadline:
            raise _OverBudget()
        if isinstance(node, ast.Expression):
            return self.eval(node.body)
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.Name):
            if node.id in self.names:
                return self.names[node.id]
            raise _Missing(node.id)
        if isinstance(node, ast.Attribute):
            return _attribute(self.eval(node.value), node.attr)
        if isinstance(node, ast.Subscript):
            value, index = self.eval(node.value), _operand(self.eval(node.slice))
            return value[index]
        if isinstance(node, ast.Slice):
            return slice(*(self.eval(p) if p is not None else None
                           for p in (node.lower, node.upper, node.step)))
        if isinstance(node, ast.BoolOp):
            result: Any = None
            for value_node in node.values:
                result = self.eval(value_node)
                if isinstance(node.op, ast.And) and not result:
                    return result
                if isinstance(node.op, ast.Or) and result:
                    return result
            return result
        if isinstance(node, ast.UnaryOp):
            return _UNARY[type(node.op)](_operand(self.eval(node.operand)))
        if isinstance(node, ast.BinOp):
            return _binary(node.op, self.eval(node.left), self.eval(node.right))
        if isinstance(node, ast.Compare):
            left = _operand(self.eval(node.left))
            for op, right_node in zip(node.ops, node.comparators, strict=True):
                right = _operand(self.eval(right_node))
                if not _COMPARE[type(op)](left, right):
                    return False
                left = right
            return True
        if isinstance(node, ast.IfExp):
            return self.eval(node.body) if self.eval(node.test) else self.eval(node.orelse)
        if isinstance(node, ast.Tuple | ast.List):
            items = [self.eval(e) for e in node.elts]
            if sum(_weight(i) for i in items) > MAX_WEIGHT:
                raise _Refused(f"it would build a value of more than {MAX_WEIGHT} elements "
                               "(too costly)")
            return tuple(items) if isinstance(node, ast.Tuple) else items
        if isinstance(node, ast.Call):
            assert isinstance(node.func, ast.Name)
            return _call(node.func.id, [self.eval(a) for a in node.args])
        raise _Refused(f"{type(node).__name__} is not allowed")  # (refused at compile time)


_ALLOWED = (
    ast.Expression, ast.BoolOp, ast.And, ast.Or, ast.UnaryOp, ast.Not, ast.USub, ast.UAdd,
    ast.BinOp, ast.Add, ast.Sub, ast.Mult, ast.Div, ast.FloorDiv, ast.Mod, ast.Pow,
    ast.Compare, ast.Eq, ast.NotEq, ast.Lt, ast.LtE, ast.Gt, ast.GtE, ast.In, ast.NotIn,
    ast.Is, ast.IsNot, ast.Constant, ast.Name, ast.Load, ast.Attribute, ast.Tuple, ast.List,
    ast.Call, ast.IfExp, ast.Subscript, ast.Slice,
)

RunFilter = Callable[[Mapping[str, Any], Mapping[str, Any]], bool]


def is_predicate(text: str) -> bool:
    return bool(_PREDICATE.match(text.strip()))


def compile_filter(text: str, *, predicates: bool = True) -> RunFilter:
    """Compile a filter; the result takes (values, config) and returns True to keep the run.

    ``predicates=False`` refuses ``pkg.module:function`` (filters from chat are expressions).
    """
    text = text.strip()
    if is_predicate(text):
        if not predicates:
            raise SweepError(f"sweep.filter '{text}': importable predicates are not accepted "
                             "here; write an expression such as \"task.lr < 0.01\"")
        return _import_predicate(text)
    if len(text) > MAX_TEXT:
        raise SweepError(f"sweep.filter is {len(text)} characters long; at most {MAX_TEXT}")
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError as exc:
        raise SweepError(f"sweep.filter '{text}' is not a valid expression: {exc.msg}") from None
    nodes = list(ast.walk(tree))
    if len(nodes) > MAX_NODES:
        raise SweepError(f"sweep.filter has {len(nodes)} syntax nodes; at most {MAX_NODES}")
    for node in nodes:
        if not isinstance(node, _ALLOWED):
            raise SweepError(f"sweep.filter '{text}': {type(node).__name__} is not allowed "
                             "(use comparisons, and/or/not, arithmetic and literals)")
        if isinstance(node, ast.Call) and not (
            isinstance(node.func, ast.Name) and node.func.id in _FUNCTIONS and not node.keywords
        ):
            raise SweepError(f"sweep.filter '{text}': only {', '.join(_FUNCTIONS)} may be called")
        if isinstance(node, ast.Attribute) and node.attr.startswith("_"):
            raise SweepError(f"sweep.filter '{text}': private attribute '{node.attr}'")
    spent = [0.0]

    def overspent() -> SweepError:
        return SweepError(f"sweep.filter '{text}' took more than {BUDGET_S:g}s over the sweep; "
                          "simplify it")

    def keep(values: Mapping[str, Any], config: Mapping[str, Any]) -> bool:
        names: dict[str, Any] = {**_FUNCTIONS, **config}
        for key, value in values.items():  # swept group choices are not config keys
            names.setdefault(key, value)
        if spent[0] > BUDGET_S:
            raise overspent()
        start = time.monotonic()
        try:
            return bool(_Interpreter(names, start + BUDGET_S - spent[0]).eval(tree))
        except _OverBudget:
            raise overspent() from None
        except _Missing as exc:
            raise SweepError(f"sweep.filter '{text}' refers to unknown key '{exc.key}'") from None
        except _Refused as exc:
            raise SweepError(f"sweep.filter '{text}' refused: {exc}") from None
        except Exception as exc:  # never quote the values involved: they may be anything
            from runner.planning.run_id import run_id

            raise SweepError(f"sweep.filter '{text}' failed on run {run_id(values)} with "
                             f"{type(exc).__name__} (check the types of the keys it uses)"
                             ) from None
        finally:
            spent[0] += time.monotonic() - start

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
