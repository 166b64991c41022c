"""A Hydra job's return value on disk as JSON, never a pickle: reading a run folder can never
run code, whoever wrote it.

What JSON holds exactly comes back exactly: None, booleans, numbers (NaN and infinities
included), strings, lists, and dicts with string keys. A few more types come back as themselves
through a tagged form (tuples, dicts with other keys, OmegaConf containers, exceptions of a
built-in type); anything else comes back as a ``ReturnedValue`` holding its type's name and its
text. Every text is redacted like everything runner writes.
"""

from __future__ import annotations

import builtins
import math
import re
from typing import Any

from runner.config.secrets import redact

TAG = "$runner"  # a dict {"$runner": kind, ...} is a tagged value (a user's own dict is escaped)
MAX_DEPTH = 100


class ReturnedValue(str):
    """A value that JSON cannot hold, as text (``repr``), with its type's name."""

    type_name: str

    def __new__(cls, text: str, type_name: str) -> ReturnedValue:
        obj = super().__new__(cls, text)
        obj.type_name = type_name
        return obj


def encode(value: Any, depth: int = 0) -> Any:
    """``value`` as a JSON-able object (see the module's docstring)."""
    if depth > MAX_DEPTH:
        return _text(value)
    if value is None or isinstance(value, bool | int | str):
        return redact(value) if isinstance(value, str) else value
    if isinstance(value, float):
        return value if math.isfinite(value) else {TAG: "float", "text": repr(value)}
    if isinstance(value, list):
        return [encode(v, depth + 1) for v in value]
    if isinstance(value, tuple):
        return {TAG: "tuple", "items": [encode(v, depth + 1) for v in value]}
    if isinstance(value, dict):
        if all(isinstance(k, str) for k in value) and TAG not in value:
            return {redact(k): encode(v, depth + 1) for k, v in value.items()}
        return {TAG: "dict", "items": [[encode(k, depth + 1), encode(v, depth + 1)]
                                       for k, v in value.items()]}
    if isinstance(value, BaseException):
        return {TAG: "exception", "type": type(value).__name__,
                "module": type(value).__module__, "message": redact(str(value))}
    try:
        from omegaconf import DictConfig, ListConfig, OmegaConf

        if isinstance(value, DictConfig | ListConfig):
            return {TAG: "omegaconf",
                    "value": encode(OmegaConf.to_container(value, resolve=False), depth + 1)}
    except ImportError:
        pass
    return _text(value)


def _text(value: Any) -> dict[str, Any]:
    try:
        text = repr(value)
    except Exception as exc:  # a repr that fails: its type is all we know
        text = f"<{type(value).__name__}: repr failed with {type(exc).__name__}>"
    return {TAG: "text", "type": f"{type(value).__module__}.{type(value).__qualname__}",
            "text": redact(text)}


class JobException(Exception):
    """A job's exception of a class that is not a builtin, read back by its name and module
    only (nothing is imported): it prints as the job's did (``omegaconf.errors.
    ConfigAttributeError: Key 'pork' not in 'MySQLConfig'``)."""


NAME = re.compile(r"[A-Za-z_]\w{0,99}")
MODULE = re.compile(r"[A-Za-z_][\w.]{0,199}")


def decode(obj: Any) -> Any:
    """The value ``encode`` wrote (no import, no code: only the types listed above)."""
    if isinstance(obj, list):
        return [decode(v) for v in obj]
    if not isinstance(obj, dict):
        return obj
    kind = obj.get(TAG)
    if kind is None:
        return {k: decode(v) for k, v in obj.items()}
    if kind == "float":
        return float(str(obj.get("text")))
    if kind == "tuple":
        return tuple(decode(v) for v in obj.get("items") or [])
    if kind == "dict":
        return {_hashable(decode(k)): decode(v) for k, v in obj.get("items") or []}
    if kind == "omegaconf":
        from omegaconf import OmegaConf

        return OmegaConf.create(decode(obj.get("value")))
    if kind == "exception":
        cls = getattr(builtins, str(obj.get("type")), None)
        message = str(obj.get("message", ""))
        if isinstance(cls, type) and issubclass(cls, Exception):
            try:
                return cls(message)
            except Exception:
                pass
        name, module = str(obj.get("type")), str(obj.get("module") or "")
        if NAME.fullmatch(name) and MODULE.fullmatch(module):  # a class of the job's own
            return type(name, (JobException,), {"__module__": module})(message)
        return RuntimeError(f"{name}: {message}")
    return ReturnedValue(str(obj.get("text", "")), str(obj.get("type", "?")))


def _hashable(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value
