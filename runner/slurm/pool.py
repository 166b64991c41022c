"""Runs packed into allocations: ``launcher=slurm launcher.runs_per_job=K``.

Sites ask that many short runs be packed into few allocations. With ``runs_per_job=K`` the
sweep is submitted as one job array of *pools*: each array task holds K runs' worth of CPUs,
GPUs and memory, and runs runner's own sweep loop on its node (``python -m runner.slurm.pool``)
with a pinned launcher that cuts the allocation into K slots, as ``launcher=pinned`` cuts a
machine. A pool claims the next runnable run from the store (the same atomic claim as any
runner: pools never run a run twice) whenever a slot frees, proposes a study's next trial there,
and leaves when nothing is left to claim. Warned that its time limit is near
(``--signal=B:USR1``), a pool requeues itself: its runs are stopped as by Ctrl-C (INTERRUPTED,
after their checkpoint) and the requeued pool resumes them.

A pool's runs are leased as ``backend: slurm-pool`` with the pool's job: a runner elsewhere
judges them by asking SLURM about that job (``verdicts.observe_pools``), so a run whose pool was
cancelled, preempted or lost with its node is INTERRUPTED at once, not after
``runner.stale_after_s``. The submitting runner keeps enough pools alive while it waits
(``launcher.wait=true``) and submits new ones for what dead pools left; with ``wait=false`` it
submits them and leaves (no sweep loop job: the pools propose a study's trials themselves).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runner.errors import RunnerError, SlurmError
from runner.launchers.pinned import PinnedLauncher
from runner.slurm import commands, submissions
from runner.slurm.script import job_name, render_pool_script
from runner.storage.atomic import make_folders, write_text_atomic

if TYPE_CHECKING:
    from runner.storage.store import RunRef, SweepStore

POOL_PREFIX = "pool-"  # submission directories of pool arrays: slurm/pool-<id>/
BACKEND = "slurm-pool"


class PoolLauncher(PinnedLauncher):
    """The launcher inside a pool: the allocation's CPUs and GPUs cut into slots; each run's
    lease names the pool's job."""

    watches_others = False  # a pool leaves when nothing is left to claim

    def launcher_info(self, run: RunRef) -> dict[str, Any]:
        # the pool's job as an array task records it (job, job_id, node, restarts), and its name
        return {**super().launcher_info(run), "backend": BACKEND, **commands.job_env(),
                "job_name": os.environ.get("SLURM_JOB_NAME", "")}


def pool_execution(execution: dict[str, Any], slots: int) -> dict[str, Any]:
    """A pool's execution settings: the sweep's, its launcher the pool's slots."""
    slurm = execution["launcher"]
    launcher = {"_target_": f"{__name__}.PoolLauncher", "max_parallel": slots,
                "cpus_per_run": int(slurm.get("cpus_per_run", 1)),
                "gpus_per_run": int(slurm.get("gpus_per_run", 0)),
                "nproc_per_run": int(slurm.get("nproc_per_run", 1))}
    if slurm.get("timeout_min"):
        launcher["timeout_min"] = slurm["timeout_min"]
    runner = {**execution.get("runner", {}), "progress": False}
    return {**execution, "launcher": launcher, "runner": runner,
            "notifier": _runs_only(execution.get("notifier") or {})}


def _runs_only(notifiers: dict[str, Any]) -> dict[str, Any]:
    """The sweep's notifiers, told of runs only: the sweep's start and end are the submitting
    runner's to tell (P pools would say them P times)."""
    from runner.notifiers.base import EVENT_KINDS

    out = {}
    for name, conf in notifiers.items():
        if not isinstance(conf, dict):
            out[name] = conf
            continue
        events = list(conf.get("events") or ["all"])
        if "all" in events:
            events = list(EVENT_KINDS)
        out[name] = {**conf, "events": [e for e in events if e.startswith("run_")
                                        or e == "sweep_notice"]}
    return out


def pools(sweep_root: Path) -> list[commands.JobInfo]:
    """Every pool of the sweep that SLURM still knows, queued, running or recently ended (one
    squeue call)."""
    return list(commands.query(submissions.job_names(sweep_root, POOL_PREFIX)).values())


def cancel_pending_pools(sweep_root: Path) -> int:
    """``scancel`` the sweep's pools that have not started (the sweep ended without them)."""
    pending = [j.name for j in pools(sweep_root) if j.state == "PENDING"]
    commands.scancel(pending)
    return len(pending)


def pools_needed(conf: Any, work: int, queue_limit: int | None) -> int:
    """How many pools ``work`` runs (runnable, running, still to propose) need at most, within
    ``launcher.max_parallel`` and ``queue_limit`` jobs queued (``launcher.max_queued``, or the
    site's limit: ``SlurmLauncher.queue_limit``)."""
    wanted = math.ceil(work / int(conf.runs_per_job))
    if conf.max_parallel:
        wanted = min(wanted, math.ceil(int(conf.max_parallel) / int(conf.runs_per_job)))
    if queue_limit:
        wanted = min(wanted, queue_limit)
    return wanted


def submit_pools(store: SweepStore, conf: Any, count: int, cwd: str,
                 env: dict[str, str], extra: list[str]) -> str:
    """One sbatch call: an array of ``count`` pools. Returns the job id."""
    sub_id = POOL_PREFIX + submissions.Submission.new_id()
    sub = submissions.Submission(sub_id, job_name(conf.job_name or str(
        store.manifest.get("name")), sub_id), time.time(), count)
    paths = submissions.paths_of(store.root, sub_id)
    make_folders(paths.logs)
    write_text_atomic(paths.script, render_pool_script(
        conf, job_name=sub.job_name, pools=count, paths=paths, sweep_root=str(store.root),
        cwd=cwd, python=conf.python or sys.executable, env=env))
    submissions.write(paths, sub)
    try:
        sub.job_id = commands.sbatch(paths.script, cwd, extra)
    except SlurmError as exc:  # (kept with the submission: why it never ran)
        sub.error = str(exc)
        submissions.write(paths, sub)
        raise
    submissions.write(paths, sub)
    return sub.job_id


def main(argv: list[str] | None = None) -> int:
    """``python -m runner.slurm.pool SWEEP --slots K``: one pool, inside its allocation."""
    from runner.config import secrets
    from runner.scheduling.scheduler import run_sweep
    from runner.storage.store import SweepStore

    parser = argparse.ArgumentParser(prog="python -m runner.slurm.pool")
    parser.add_argument("sweep", type=Path)
    parser.add_argument("--slots", type=int, required=True)
    args = parser.parse_args(argv)
    store = SweepStore(args.sweep)
    console = secrets.console(stderr=True, highlight=False)
    console.print(f"=== runner: pool of {args.slots} slot(s) on "
                  f"{os.environ.get('SLURMD_NODENAME', '?')} for {store.root}")
    try:
        result = run_sweep(store, pool_execution(store.manifest["execution"], args.slots),
                           console)
    except RunnerError as exc:  # (its runs are found interrupted and run again)
        console.print(f"error: {exc}")
        return 1
    return 130 if result.interrupted else 0


if __name__ == "__main__":
    sys.exit(main())
