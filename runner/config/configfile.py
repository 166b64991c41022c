"""YAML reading and writing of run configs (light: no Hydra, so workers start fast)."""

from __future__ import annotations

from typing import Any

import yaml

from runner.errors import CorruptStateError
from runner.storage.paths import RunPaths

_Dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def dump_yaml(obj: Any) -> str:
    return yaml.dump(obj, Dumper=_Dumper, sort_keys=False, default_flow_style=False)


def load_yaml(text: str) -> Any:
    return yaml.load(text, Loader=_Loader)


def load_run_config(paths: RunPaths) -> dict[str, Any]:
    raw = paths.config.read_text()
    try:
        cfg = load_yaml(raw)
    except yaml.YAMLError as exc:
        raise CorruptStateError(paths.config, raw, f"not valid YAML: {exc}") from None
    if not isinstance(cfg, dict):
        raise CorruptStateError(paths.config, raw, "not a mapping")
    return cfg


def leaves(node: Any, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``; lists and scalars are leaves, as is ``{}``."""
    if isinstance(node, dict) and node:
        out: dict[str, Any] = {}
        for key, value in node.items():
            out.update(leaves(value, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: node}


_ABSENT = object()


def config_changes(before: dict[str, Any], after: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """(key, old, new) for every leaf added, removed or changed; ``MISSING`` marks an absent
    side."""
    a, b = leaves(before), leaves(after)
    out = []
    for key in sorted(a.keys() | b.keys()):
        old, new = a.get(key, _ABSENT), b.get(key, _ABSENT)
        if old is _ABSENT or new is _ABSENT or old != new or type(old) is not type(new):
            out.append((key, MISSING if old is _ABSENT else old,
                        MISSING if new is _ABSENT else new))
    return out


class _Missing:
    def __repr__(self) -> str:
        return "(absent)"


MISSING = _Missing()
