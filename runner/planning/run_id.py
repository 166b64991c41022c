"""Stable run identity: a run's id and directory name come from its swept values only.

Launch order, the time of day or the number of earlier attempts never enter the id, so a resumed
sweep finds every run in the directory it had, and re-running the same command can never
renumber or overwrite a run.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from typing import Any

ID_LENGTH = 12  # 48 bits: about 2e-5 chance of any collision among 100,000 runs (and checked)
_UNSAFE = re.compile(r"[^A-Za-z0-9._=,+-]+")


def canonical_values(values: Mapping[str, Any]) -> str:
    """One JSON text per set of values, independent of key order."""
    return json.dumps(values, sort_keys=True, separators=(",", ":"), default=str)


def run_id(values: Mapping[str, Any]) -> str:
    return hashlib.sha1(canonical_values(values).encode()).hexdigest()[:ID_LENGTH]


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def id_from_dirname(dirname: str) -> str:
    return dirname.rsplit("-", 1)[-1]


def run_dirname(values: Mapping[str, Any], max_slug: int = 60) -> str:
    """A readable, file-system-safe directory name: ``lr=0.01,seed=1-<id>``."""
    parts = [f"{key.rsplit('.', 1)[-1]}={_short(val)}" for key, val in values.items()]
    slug = _UNSAFE.sub("_", ",".join(parts))[:max_slug].strip("._-")
    rid = run_id(values)
    return f"{slug}-{rid}" if slug else rid
