"""runner's commands on a sweep that a Hydra app launched (``origin.by == "hydra"``).

Such a sweep's runs are the app's jobs: only the app can run them again (its task function,
its config tree), so ``resume`` names the app's command, and ``retrain-best`` runs the app with
the best setting's overrides and new seeds into a sibling sweep directory.
"""

from __future__ import annotations

import hashlib
import shlex
import subprocess
from pathlib import Path
from typing import Any

from runner.errors import RunnerError
from runner.hydra_plugin.job import job_overrides


def command_of(manifest: dict[str, Any]) -> list[str]:
    return [str(a) for a in (manifest.get("origin") or {}).get("command") or []]


def resume_refusal(manifest: dict[str, Any], root: Path) -> RunnerError:
    origin = manifest.get("origin") or {}
    return RunnerError(f"{root} holds the jobs of a Hydra app: resume it with the app's own "
                       f"command (in {origin.get('cwd')}): {shlex.join(command_of(manifest))}")


def rerun_refusal(manifest: dict[str, Any], run_dir: Path) -> RunnerError:
    command = command_of(manifest)[:2]
    overrides = job_overrides(run_dir)
    return RunnerError(f"{run_dir} is a job of a Hydra app: run it again with the app, e.g. "
                       f"{shlex.join([*command, *overrides])}")


def retrain_best(report: Any, seeds: int, console: Any, setting: Any = None,
                 said: str = "", pick: str | None = None) -> int:
    """Run the app again: the best setting's (or ``setting``'s: ``--pick``) own job overrides,
    seeds no job of the sweep used, into ``<sweep>-retrain-<digest>`` (re-running the same
    retrain resumes it)."""
    from runner.results.aggregate import seed_key, used_seeds

    if seeds < 1:
        raise RunnerError(f"--seeds must be >= 1, got {seeds}")
    best = setting or report.best
    store = report.store
    template = next((r for r in best.runs if r.value is not None), None)
    if template is None:
        raise RunnerError(f"no setting of {store.root} has a value of {report.metric}")
    ref = store.find(template.id)
    task_overrides = job_overrides(Path(ref.dir))
    key = seed_key(store)
    start = max(used_seeds(store, key), default=-1) + 1  # never one a job used
    new_seeds = ",".join(str(s) for s in range(start, start + seeds))
    kept = [o for o in task_overrides if o.lstrip("+~").split("=")[0] != key]
    seed_override = f"++{key}={new_seeds}"  # (set or added, whatever the app's config has)
    command = command_of(store.manifest)
    if len(command) < 2:
        raise RunnerError(f"{store.root} does not record the app's command")
    python, script, args = command[0], command[1], command[2:]
    # the app's Hydra settings, but nothing of the parent's sweep: its sweeper (kind, samples,
    # seeds, params) gives way to Hydra's basic one, which runs exactly the jobs listed here
    hydra_args = [a for a in args if a.startswith(("hydra", "--", "-"))
                  and a not in ("-m", "--multirun") and not a.startswith("hydra.sweep.dir=")
                  and not a.lstrip("+~").startswith(("hydra/sweeper", "hydra.sweeper"))]
    digest = hashlib.sha1(f"{report.metric}|{report.mode}|{seeds}".encode()
                          + (f"|{pick}".encode() if pick else b"")).hexdigest()[:6]
    target = store.root.with_name(f"{store.root.name}-retrain-{digest}")
    argv = [python, script, "-m", *hydra_args, "hydra/sweeper=basic", *kept, seed_override,
            f"hydra.sweep.dir={target}"]
    said = said or f"{best.label} (mean {report.metric} {best.stats()['mean']:.4g})"
    console.print(f"retraining {said} with {key} {new_seeds}: {shlex.join(argv)}")
    cwd = (store.manifest.get("origin") or {}).get("cwd") or None
    return subprocess.run(argv, cwd=cwd, check=False).returncode
