"""YAML reading and writing of run configs (light: no Hydra, so workers start fast)."""

from __future__ import annotations

from typing import Any

import yaml

from runner.errors import CorruptStateError
from runner.paths import RunPaths

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
