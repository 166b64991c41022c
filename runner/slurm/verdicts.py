"""Is a run's SLURM job still alive, and if not, how did it end? One squeue call per sweep.

A RUNNING lease of a SLURM run names its submission and array index. Its holder may live on any
node, so pids prove nothing here: SLURM's view decides. A job that SLURM still queues or runs is
alive; one that ended while the FLAG still says RUNNING (the worker could not record it: node
failure, scancel of a pending task, out of memory, SIGKILL after the time limit) gets a verdict.
If SLURM cannot be asked (no SLURM on this machine), every lease counts as alive: nothing is
recovered on a guess.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from runner.errors import SlurmError
from runner.slurm import commands, submissions
from runner.slurm.commands import JobInfo
from runner.storage.metrics import read_tail
from runner.storage.paths import RunPaths
from runner.storage.recovery import Death
from runner.storage.state import Lease, State

_INTERRUPTING = {"CANCELLED": "was cancelled", "NODE_FAIL": "ended with a node failure",
                 "BOOT_FAIL": "failed to boot its node", "PREEMPTED": "was preempted",
                 "DEADLINE": "passed its deadline", "REVOKED": "was revoked",
                 "SPECIAL_EXIT": "was held after a special exit"}
_ONE_NODE = re.compile(r"[\w.-]+")  # (not a list or range of several nodes)


def sweep_root(paths: RunPaths) -> Path:
    return paths.root.parent.parent  # <sweep>/runs/<run dir>


def judge(items: Sequence[tuple[RunPaths, Lease]], now: float) -> list[Death | None]:
    """A verdict per SLURM lease (None: alive, or SLURM cannot be asked)."""
    return [death for death, _ in observe(items, now)]


def observe(items: Sequence[tuple[RunPaths, Lease]],
            now: float) -> list[tuple[Death | None, str]]:
    """Per lease: its verdict, and SLURM's word on its job (``PENDING (Priority)``, ``RUNNING
    on node3``; empty when SLURM cannot be asked) for ``status`` to show."""
    subs: dict[tuple[str, str], submissions.Submission | None] = {}
    keys = []  # (sweep directory, submission) per lease, as text: cheap to hash
    for paths, lease in items:
        key = (str(paths.root).rsplit("/", 2)[0], str(lease.launcher.get("submission", "")))
        keys.append(key)
        if key not in subs:
            subs[key] = submissions.read(submissions.paths_of(*key)) if key[1] else None
    try:
        jobs = commands.query(s.job_name for s in subs.values() if s)
    except SlurmError as exc:
        return [(None, f"SLURM not reachable: {exc}")] * len(items)
    by_name = {j.job_name: j.array_job_id for j in jobs.values()}
    out: list[tuple[Death | None, str]] = []
    for (paths, lease), key in zip(items, keys, strict=True):
        sub = subs.get(key)
        job = job_of(lease, sub, by_name)
        info = jobs.get((job, int(lease.launcher.get("index", -1)))) if job else None
        note = ""
        if info is not None:
            where = f" on {info.node}" if info.node and info.state == "RUNNING" else ""
            why = f" ({info.reason})" if info.reason not in ("", "None") else ""
            note = f"{info.state}{why}{where}"
        death = _verdict(paths, lease, sub, job, info, now)
        if death is not None and info is not None and _ONE_NODE.fullmatch(info.node) and \
                not lease.launcher.get("node"):  # (ended before its worker said where)
            death = replace(death, facts={"node": info.node})
        out.append((death, note))
    return out


def job_of(lease: Lease, sub: submissions.Submission | None,
           by_name: dict[str, str]) -> str | None:
    """The array job id of a lease: from the lease, its submission, or SLURM by job name."""
    job = lease.launcher.get("array_job_id") or (sub.job_id if sub else None)
    if not job and sub is not None:
        job = by_name.get(sub.job_name)
    return str(job) if job else None


def _verdict(paths: RunPaths, lease: Lease, sub: submissions.Submission | None,
             job: str | None, info: JobInfo | None, now: float) -> Death | None:
    """``job``: the lease's array job id, if known; ``info``: SLURM's view of its task."""
    index = int(lease.launcher.get("index", -1))
    if job is None:
        created = sub.created if sub else lease.started
        if now - created < submissions.NEVER_SUBMITTED_S:
            return None  # sbatch may still be answering
        return Death(State.INTERRUPTED, "its submission never reached SLURM (the submitting "
                                        "runner stopped before sbatch answered)")
    name = f"SLURM job {job}_{index}"
    if info is None:
        return Death(State.INTERRUPTED, f"{name} is no longer known to SLURM")
    if not info.ended:
        return None
    if info.state in _INTERRUPTING:
        return Death(State.INTERRUPTED, f"{name} {_INTERRUPTING[info.state]}")
    log = _log_tail(sweep_root(paths), lease, index) + _stderr_tail(paths)
    if info.state == "TIMEOUT":
        requeues = int(lease.launcher.get("requeues", 0))
        limit = int(lease.launcher.get("max_requeue", 0))
        reason = (f"{name} was killed by its time limit (launcher.timeout_min) after "
                  f"{requeues} requeue(s)")
        if requeues < limit:
            return Death(State.INTERRUPTED, reason)
        return Death(State.CRASHED, f"{reason}; launcher.max_requeue={limit} used up", log)
    if info.state == "OUT_OF_MEMORY":
        return Death(State.CRASHED, f"{name} ran out of memory (raise launcher.mem_gb)", log)
    # (by array task: the task holding the array's own id would name the whole array)
    restarted = commands.restarts(f"{info.array_job_id}_{info.index}")
    asked = int(lease.launcher.get("requeues", 0))  # the requeues runner itself asked for
    if restarted is not None and restarted > asked:
        # SLURM requeued the job on its own (its node was lost, or it was preempted): the
        # attempt that ran was cut off with its node, and the restart failed before the
        # worker could record anything (e.g. "Job credential revoked")
        return Death(State.INTERRUPTED, f"{name} was requeued by SLURM ({restarted - asked} "
                                        f"time(s): a lost node or preemption) and its restart "
                                        f"ended {info.state} before the worker ran", log)
    return Death(State.CRASHED, f"{name} ended {info.state} without the worker recording a "
                                "result (see the job's log below)", log)


def _stderr_tail(paths: RunPaths) -> str:
    text = read_tail(paths.stderr, 8192)
    if not text:
        return ""
    return f"\n\nlast lines of {paths.stderr}:\n" + "\n".join(text.splitlines()[-40:])


def _log_tail(root: Path, lease: Lease, index: int) -> str:
    sub_id = str(lease.launcher.get("submission", ""))
    if not sub_id:
        return ""
    path = submissions.paths_of(root, sub_id).log(index)
    text = read_tail(path, 8192) or ""
    return f"last lines of {path}:\n" + "\n".join(text.splitlines()[-40:])


def observe_pools(items: Sequence[tuple[RunPaths, Lease]],
                  now: float) -> list[tuple[Death | None, str]]:
    """Per lease of a run in a pool (``launcher.runs_per_job``): alive while its pool's job
    runs and has not been restarted since the claim; a pool that ended, or was requeued, took
    the run with it (INTERRUPTED: it runs again)."""
    names = {str(lease.launcher.get("job_name", "")) for _, lease in items} - {""}
    try:
        jobs = commands.query(names)
    except SlurmError as exc:
        return [(None, f"SLURM not reachable: {exc}")] * len(items)
    by_job = {f"{j.array_job_id}_{j.index}": j for j in jobs.values()}
    restarts: dict[str, int | None] = {}
    out: list[tuple[Death | None, str]] = []
    for _, lease in items:
        job = str(lease.launcher.get("job", ""))
        info = by_job.get(job)
        name = f"its pool, SLURM job {job},"
        if info is None:
            out.append((Death(State.INTERRUPTED, f"{name} is no longer known to SLURM"), ""))
            continue
        note = f"pool {job} {info.state}" + (f" on {info.node}" if info.node else "")
        if info.ended:
            out.append((Death(State.INTERRUPTED, f"{name} ended {info.state}"), note))
            continue
        if job not in restarts:
            restarts[job] = commands.restarts(job)
        now_restarts = restarts[job]
        if now_restarts is not None and now_restarts > int(lease.launcher.get("restarts", 0)):
            out.append((Death(State.INTERRUPTED, f"{name} was requeued since the run started"),
                        note))
            continue
        out.append((None, note))
    return out
