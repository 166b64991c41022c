"""Stale-run recovery: a RUNNING lease whose holder is gone becomes INTERRUPTED (resumable), or
CRASHED where how it ended says the run itself failed (a SLURM job out of memory, say).

On the lease's own host the process is checked with psutil (pid *and* start time, so a recycled
pid is not mistaken for the run); a lease from another host is dead once its heartbeat is older
than ``runner.stale_after_s``. A backend that knows better judges its own leases through one door,
``JUDGES`` (SLURM asks squeue once for all of them, ``runner.slurm.verdicts``): this module imports
no backend. The change is made under the run's lock and only if the
lease is still the one found dead, so two runners recovering the same sweep at once cannot clash.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import psutil

from runner.execution.tasks import load_task
from runner.storage.paths import RunPaths
from runner.storage.state import Lease, State, finish

_HOST = socket.gethostname()


@dataclass(frozen=True)
class Death:
    """How a dead lease ends: the state to record, why, and details for CRASH.txt."""

    state: State
    reason: str
    details: str = ""
    facts: dict[str, Any] | None = None  # what the cluster says of where it ran (its node)

    def payload(self, lease: Lease, base: dict[str, Any]) -> dict[str, Any]:
        """The terminal record's payload: ``base``, with the cluster's facts added to the
        lease's launcher facts."""
        return {**base, "launcher": {**lease.launcher, **self.facts}} if self.facts else base


# backend -> 'module:function' judging that backend's leases: (items, now) -> [(Death|None, seen)]
JUDGES: dict[str, str] = {"slurm": "runner.slurm.verdicts:observe",
                          "slurm-pool": "runner.slurm.verdicts:observe_pools"}


def backend_of(lease: Lease) -> str:
    return str(lease.launcher.get("backend") or "local")


def death_reason(lease: Lease, stale_after_s: float, now: float | None = None) -> str | None:
    """Why this (non-SLURM) lease's holder is dead, or None while it is (or may be) alive."""
    now = time.time() if now is None else now
    if lease.host == _HOST:
        try:
            proc = psutil.Process(lease.pid)
            alive = (abs(proc.create_time() - lease.create_time) < 1.0
                     and proc.status() != psutil.STATUS_ZOMBIE)
        except psutil.Error:
            alive = False
        return None if alive else f"process {lease.pid} on {lease.host} is gone"
    age = now - lease.heartbeat
    if age > stale_after_s:
        return (f"no heartbeat from {lease.host} for {age:.0f}s "
                f"(runner.stale_after_s={stale_after_s:g})")
    return None


def judge(items: Sequence[tuple[RunPaths, Lease]], stale_after_s: float,
          now: float | None = None) -> list[Death | None]:
    """A verdict per lease: None while its holder is (or may be) alive."""
    return [death for death, _ in observe(items, stale_after_s, now)]


def observe(items: Sequence[tuple[RunPaths, Lease]], stale_after_s: float,
            now: float | None = None) -> list[tuple[Death | None, str]]:
    """Per lease: its verdict, and what its cluster says of it (a SLURM job's state), if any."""
    now = time.time() if now is None else now
    out: list[tuple[Death | None, str]] = [(None, "")] * len(items)
    for backend in {backend_of(lease) for _, lease in items} & set(JUDGES):
        mine = [i for i, (_, lease) in enumerate(items) if backend_of(lease) == backend]
        seen = load_task(JUDGES[backend])([items[i] for i in mine], now)
        for i, verdict in zip(mine, seen, strict=True):
            out[i] = verdict
    for i, (_, lease) in enumerate(items):
        if backend_of(lease) not in JUDGES:
            reason = death_reason(lease, stale_after_s, now)
            out[i] = (Death(State.INTERRUPTED, reason) if reason else None, "")
    return out


def recover(paths_and_leases: list[tuple[RunPaths, Lease]], stale_after_s: float) -> int:
    """Record every dead lease's end; returns how many were recovered."""
    recovered = 0
    verdicts = judge(paths_and_leases, stale_after_s)
    for (paths, lease), death in zip(paths_and_leases, verdicts, strict=True):
        if death is None:
            continue
        payload: dict[str, Any] = {"reason": f"found {death.state.value.lower()}: {death.reason}"}
        if death.state is State.CRASHED:
            payload["duration_s"] = time.time() - lease.started
        if finish(paths, lease.token, death.state, death.payload(lease, payload),
                  death.details):
            recovered += 1
    return recovered
