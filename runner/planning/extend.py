"""Growing a sweep in place (``python -m runner extend SWEEP_DIR 'seed=range(5)'``): its
recorded command with wider axes, expanded again; the runs it lacks are frozen into it.

An extension may only add runs: every run of the sweep must come out of the wider command with
the config it was frozen with. A ``conf/`` or code default that changed since the freeze, a new
axis (which would rename every run) or a narrower one is refused, naming what differs, so a sweep
never mixes runs of two configs under one name.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from runner.config.compose import composer, parse_overrides
from runner.config.configfile import config_changes, load_run_config
from runner.config.schema import LAUNCH_SECTIONS
from runner.errors import ConfigError, CorruptStateError, SweepError
from runner.planning.sweep import Plan, RunSpec, expand, override_key
from runner.storage.store import SweepStore

# sweep kinds that grow otherwise: a study by sweep.n_trials (resume), a Hydra sweep by its app
GROWS_OTHERWISE = {"optuna": "a study grows with `python -m runner resume {root} "
                             "sweep.n_trials=N`"}


@contextlib.contextmanager
def _in(folder: str | None) -> Iterator[None]:
    """Compose from the folder the sweep was started in (its ./conf), if it is still there."""
    before = os.getcwd()
    if folder and Path(folder).is_dir():
        os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(before)


def extended_overrides(recorded: list[str], extra: list[str], seed_key: str) -> list[str]:
    """The recorded command with each of ``extra`` replacing the override of the same key (a
    seed axis given replaces ``sweep.seeds``), or added."""
    keys = {override_key(o) for o in parse_overrides(extra)}
    if seed_key in keys:
        keys.add("sweep.seeds")
    kept = [text for text, o in zip(recorded, parse_overrides(recorded), strict=True)
            if override_key(o) not in keys]
    return [*kept, *extra]


def extension(store: SweepStore, extra: list[str]) -> tuple[Plan, list[RunSpec]]:
    """The sweep's wider plan and the runs it adds; refuses, before anything is written, an
    extension that would change or drop a frozen run."""
    manifest = store.manifest
    root = store.root
    origin = (manifest.get("origin") or {}).get("by")
    if origin == "hydra":
        raise SweepError(f"{root} is a Hydra app's sweep: run the app again with the wider "
                         "sweep (it resumes and adds the jobs it lacks)")
    kind = str(manifest.get("kind"))
    if kind in GROWS_OTHERWISE:
        raise SweepError(GROWS_OTHERWISE[kind].format(root=root))
    if manifest.get("parent"):
        raise SweepError(f"{root} was made from another sweep (retrain-best or rerun), not "
                         "from a command line: run that command again with more seeds")
    if not extra:
        raise SweepError("give the wider axes, e.g. 'seed=range(5)' or task.lr=0.1,0.01,0.001")
    exec_keys = [o for o in extra if o.lstrip("+~").split(".")[0].split("=")[0]
                 in LAUNCH_SECTIONS]
    if exec_keys:
        raise SweepError(f"{exec_keys[0]}: extend takes the sweep's axes; give how it runs "
                         "(runner.*, launcher.*) to `resume`")
    seed_key = str(((manifest.get("execution") or {}).get("sweep") or {}).get("seed_key")
                   or "seed")
    overrides = list(manifest.get("overrides") or [])
    for earlier in [*(e.get("overrides") or [] for e in manifest.get("extensions", [])), extra]:
        overrides = extended_overrides(overrides, list(earlier), seed_key)
    dirs = [d for d in manifest.get("config_dirs") or [] if Path(d).is_dir()]
    with _in(manifest.get("cwd")), composer(dirs[0] if dirs else None) as comp:
        plan = expand(comp, overrides, manifest.get("config_name", "config"))
    if plan.kind != kind:
        raise SweepError(f"the extended command makes a {plan.kind} sweep; {root} is a {kind} "
                         "sweep")
    planned = {r.id: r for r in plan.runs}
    frozen = store.runs()
    dropped = [ref for ref in frozen if ref.id not in planned]
    if dropped:
        raise SweepError(
            f"the extended command leaves out {len(dropped)} of the sweep's {len(frozen)} runs "
            f"(e.g. {_values(dropped[0].values)}): extend only widens axes; a new axis or a "
            "narrower one is a new sweep (runner.name=<new name>)")
    for ref in frozen:
        try:
            config = load_run_config(ref.paths)
        except (OSError, CorruptStateError) as exc:
            raise SweepError(f"run {ref.id}: its frozen config cannot be read ({exc})") from None
        changes = list(config_changes(config, planned[ref.id].config))
        if changes:
            key, old, new = changes[0]
            raise ConfigError(
                f"the config changed since {root} was frozen ({key}: {old!r} -> {new!r}"
                + (f", and {len(changes) - 1} more key(s)" if len(changes) > 1 else "")
                + "): runs added now would not be comparable with the frozen ones. Restore "
                "the config, or start a new sweep (runner.name=<new name>)")
    listed = {ref.id for ref in frozen}
    return plan, [r for r in plan.runs if r.id not in listed]


def _values(values: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in values.items()) or "its run"
