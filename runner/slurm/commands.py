"""The SLURM commands runner calls, and their output parsed.

Every call goes through ``_call`` so that a failure always becomes a ``SlurmError`` that quotes
the command and SLURM's own message. Polling is one ``squeue`` call for all the jobs of a sweep
(``query``), never one call per run.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runner.errors import SlurmError

# squeue states after which a job will not run again by itself
TERMINAL = frozenset({"BOOT_FAIL", "CANCELLED", "COMPLETED", "DEADLINE", "FAILED", "NODE_FAIL",
                      "OUT_OF_MEMORY", "PREEMPTED", "REVOKED", "SPECIAL_EXIT", "TIMEOUT"})
_SQUEUE_FORMAT = "%F|%K|%A|%T|%r|%N|%j"
# sbatch refusals that pass with time: a submit or queue limit of the user, the account or the
# QOS (QOSMaxSubmitJobPerUserLimit, AssocMaxSubmitJobLimit, ... all read "Job violates
# accounting/QOS policy"), the controller's job count (MaxJobCount: sbatch sleeps and tries
# again for up to two minutes, saying "temporarily unable to accept job" or "job queue full"),
# a busy or unreachable controller
_LIMITS = ("accounting/QOS policy", "MaxSubmitJob", "SubmitJobsLimit", "MaxJobCount",
           "Job count limit", "temporarily unable to accept", "job queue full")
_BUSY = ("temporarily unavailable", "Socket timed out", "Unable to contact slurm controller",
         "Zero Bytes were transmitted")


@dataclass(frozen=True)
class JobInfo:
    """One array task as squeue shows it."""

    array_job_id: str
    index: int
    job_id: str
    state: str
    reason: str
    node: str
    job_name: str = ""

    @property
    def ended(self) -> bool:
        return self.state in TERMINAL

    @property
    def name(self) -> str:
        return f"{self.array_job_id}_{self.index}"


def available() -> bool:
    return shutil.which("sbatch") is not None and shutil.which("squeue") is not None


def _call(args: list[str], cwd: str | Path | None = None, timeout: float = 60.0) -> str:
    try:
        proc = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)
    except FileNotFoundError:
        raise SlurmError(f"'{args[0]}' is not installed here: SLURM commands are needed for "
                         "launcher=slurm") from None
    except subprocess.TimeoutExpired as exc:  # (what it said so far comes as bytes)
        said = (exc.stderr or b"").decode(errors="replace") if isinstance(
            exc.stderr, bytes) else str(exc.stderr or "")
        lines = said.strip().splitlines()
        raise SlurmError(f"'{' '.join(args[:2])} ...' did not answer within {timeout:g}s" + (
            f"; it said: {lines[-1].strip()}" if lines else " (is slurmctld up?)")) from None
    if proc.returncode != 0:
        message = (proc.stderr or proc.stdout).strip() or f"exit status {proc.returncode}"
        raise SlurmError(f"{args[0]} failed: {message}")
    return proc.stdout


def refused_for_now(error: SlurmError) -> bool:
    """Whether sbatch refused for a limit or a busy controller (try again later), not for what
    was asked (a bad partition, a bad option: no later try helps)."""
    return refused_for_a_limit(error) or _says(error, _BUSY)


def refused_for_a_limit(error: SlurmError) -> bool:
    """Whether sbatch refused for a limit on how many jobs may wait (fewer at once may pass),
    not because the controller was busy or out of reach (the same may pass later)."""
    return _says(error, _LIMITS)


def _says(error: SlurmError, phrases: tuple[str, ...]) -> bool:
    text = str(error).lower()
    return any(words.lower() in text for words in phrases)


def parse_job_id(output: str) -> str:
    """The job id from ``sbatch --parsable`` output (``123`` or ``123;cluster``)."""
    match = re.fullmatch(r"\s*(\d+)(;\S+)?\s*", output)
    if not match:
        raise SlurmError(f"could not make sense of sbatch output {output.strip()!r}")
    return match.group(1)


def sbatch(script: Path, cwd: str | Path, extra: Iterable[str] = ()) -> str:
    """Submit ``script``; returns the job id. A rejection raises with SLURM's message."""
    return parse_job_id(_call(["sbatch", "--parsable", *extra, str(script)], cwd=cwd))


def parse_squeue(output: str) -> list[JobInfo]:
    """Lines of ``squeue -h -r -o '%F|%K|%A|%T|%r|%N|%j'`` (one per array task)."""
    jobs = []
    for line in output.splitlines():
        parts = line.strip().split("|", 6)
        if len(parts) != 7:
            continue
        array_job, index, job, state, reason, node, name = parts
        if not index.isdigit() or not state:  # not an array task (N/A): not one of ours
            continue
        jobs.append(JobInfo(array_job, int(index), job, state.split()[0], reason, node, name))
    return jobs


def query(job_names: Iterable[str]) -> dict[tuple[str, int], JobInfo]:
    """Every task of the named jobs that SLURM still knows (pending, running or recently ended),
    keyed by (array job id, index). One squeue call."""
    names = sorted(set(job_names))
    if not names:
        return {}
    out = _call(["squeue", "-h", "-r", "-t", "all", f"--name={','.join(names)}",
                 "-o", _SQUEUE_FORMAT])
    return {(j.array_job_id, j.index): j for j in parse_squeue(out)}


def restarts(job_id: str) -> int | None:
    """How often SLURM restarted a job (requeued it, e.g. after a node failure), from
    ``scontrol show job``; None when SLURM no longer knows the job or cannot be asked."""
    try:
        out = _call(["scontrol", "-o", "show", "job", job_id])
    except SlurmError:
        return None
    match = re.search(r"\bRestarts=(\d+)", out)
    return int(match.group(1)) if match else None


def max_array_size() -> int:
    """The cluster's MaxArraySize: array indices must stay below it."""
    out = _call(["scontrol", "show", "config"])
    match = re.search(r"^MaxArraySize\s*=\s*(\d+)", out, re.M)
    return int(match.group(1)) if match else 1001


def submit_limit(user: str, qos: str | None = None,
                 account: str | None = None) -> tuple[int, str] | None:
    """The most jobs ``user`` may have queued or running at once as the accounting database
    says, and where that limit comes from: the association's MaxSubmitJobs (of ``account``,
    else of every account of the user: the smallest), and MaxSubmitJobsPerUser of the QOS the
    jobs run under (``qos``, else the association's default QOS, else 'normal'). None when it
    says none (no limit set, no slurmdbd, no sacctmgr): then only sbatch's refusals tell."""
    try:
        assocs = _call(["sacctmgr", "-n", "-P", "show", "assoc", f"user={user}",
                        "format=Account,MaxSubmit,DefaultQOS"], timeout=15)
    except SlurmError:
        return None
    limits: list[tuple[int, str]] = []
    qos_names = {qos} if qos else set()
    for line in assocs.splitlines():
        fields = [f.strip() for f in line.split("|")]
        if len(fields) < 3 or not fields[0] or (account and fields[0] != account.lower()):
            continue
        if fields[1].isdigit():
            limits.append((int(fields[1]), f"MaxSubmitJobs of the association of {user} "
                                           f"with account {fields[0]}"))
        if not qos:
            qos_names.add(fields[2] or "normal")
    for name in sorted(qos_names or {"normal"}):
        try:
            out = _call(["sacctmgr", "-n", "-P", "show", "qos", f"name={name}",
                         "format=MaxSubmitPU"], timeout=15)
        except SlurmError:
            continue
        for value in out.split():
            if value.strip("|").isdigit():
                limits.append((int(value.strip("|")), f"MaxSubmitJobsPerUser of QOS {name}"))
    return min(limits) if limits else None


def scancel(job_ids: Iterable[str]) -> None:
    ids = sorted(set(job_ids))
    if ids:
        _call(["scancel", *ids])


def scancel_pending(task_ids: Iterable[str]) -> None:
    """``scancel --state=PENDING``: of these array tasks, those still queued (SLURM checks the
    state itself, so a task that started meanwhile goes on)."""
    ids = sorted(set(task_ids))
    if ids:
        _call(["scancel", "--state=PENDING", *ids])


def requeue(job_id: str) -> None:
    _call(["scontrol", "requeue", job_id])


def job_env() -> dict[str, Any]:
    """This process's SLURM job, as the lease records it (empty outside SLURM)."""
    env = os.environ
    if "SLURM_JOB_ID" not in env:
        return {}
    facts = {"job_id": env["SLURM_JOB_ID"], "node": env.get("SLURMD_NODENAME", ""),
             "restarts": int(env.get("SLURM_RESTART_COUNT", "0") or 0)}
    if "SLURM_ARRAY_JOB_ID" in env:
        facts["array_job_id"] = env["SLURM_ARRAY_JOB_ID"]
        facts["job"] = f"{env['SLURM_ARRAY_JOB_ID']}_{env.get('SLURM_ARRAY_TASK_ID', '')}"
    return facts
