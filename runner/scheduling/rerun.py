"""``python -m runner rerun RUN_DIR [OVERRIDES]``: run one run again from its frozen config.

The original run is never touched: the re-run is a new one-run sweep beside its parent,
``<parent>-rerun-<run id>-<hash>``, linked to it in ``sweep.json`` (``parent``: the sweep, the run,
the overrides, whether it started from the checkpoint), so running the same command again resumes
it like any sweep. Overrides of the run's config (``task.lr=0.01``) are applied to the frozen
config and recorded; ``runner.*`` and ``launcher.*`` overrides only change how it runs.
``--from-checkpoint`` copies the run's ``checkpoints/`` into the new run before it starts.
"""

from __future__ import annotations

import copy
import hashlib
import json
import shutil
from typing import Any

from runner.config.compose import parse_overrides
from runner.config.configfile import load_run_config
from runner.config.schema import split_launch_overrides
from runner.errors import ConfigError
from runner.planning.run_id import run_dirname, run_id
from runner.planning.sweep import Plan, RunSpec, plain, set_dotted
from runner.storage.paths import RunPaths
from runner.storage.store import RunRef, SweepStore


def _apply(config: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """The frozen config with plain overrides applied (a key must exist unless written +key)."""
    out = copy.deepcopy(config)
    for o in parse_overrides(overrides):
        key = o.key_or_group
        if o.is_sweep_override():
            raise ConfigError(f"'{o.input_line}': a re-run is one run; give one value")
        node: Any = out
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.get(part) if isinstance(node, dict) else None
        exists = isinstance(node, dict) and parts[-1] in node
        if o.is_delete():
            if not exists:
                raise ConfigError(f"'~{key}': the run's config has no key '{key}'")
            del node[parts[-1]]
            continue
        if not exists and not o.is_add():
            raise ConfigError(f"the run's config has no key '{key}' (to add it, write +{key}=...)")
        set_dotted(out, key, plain(o.value()))
    return out


def rerun_plan(store: SweepStore, ref: RunRef, overrides: list[str],
               from_checkpoint: bool) -> Plan:
    run_overrides, _ = split_launch_overrides(overrides)
    config = _apply(load_run_config(ref.paths), run_overrides)
    changed = {str(o.key_or_group): plain(o.value()) for o in parse_overrides(run_overrides)
               if not o.is_delete()}
    values = {**ref.values, **changed}
    parent = store.manifest
    digest = hashlib.sha1(json.dumps([run_overrides, from_checkpoint]).encode()).hexdigest()[:6]
    execution = copy.deepcopy(parent.get("execution", {}))
    execution.setdefault("runner", {})["name"] = None
    spec = RunSpec(run_id(values), run_dirname(values), values, config)
    return Plan(
        name=f"{parent.get('name')}-rerun-{ref.id[:6]}-{digest}", kind="rerun", runs=[spec],
        axes=list(values), varying=[], execution=execution,
        overrides=list(parent.get("overrides", [])),
        fingerprint=hashlib.sha1(json.dumps([spec.id, config], default=str, sort_keys=True)
                                 .encode()).hexdigest(),
        notes=[f"re-run of {ref.id} from {store.root}"],
        parent={"sweep_dir": str(store.root), "name": parent.get("name"), "run": ref.id,
                "run_dir": ref.dir, "overrides": list(overrides),
                "from_checkpoint": from_checkpoint})


def copy_checkpoints(source: RunRef, target: RunPaths) -> int:
    """Copy the run's checkpoints into the re-run (once: never over the re-run's own)."""
    if not source.paths.checkpoints.is_dir() or target.checkpoints.exists():
        return 0
    shutil.copytree(source.paths.checkpoints, target.checkpoints)
    return sum(1 for p in target.checkpoints.rglob("*") if p.is_file())
