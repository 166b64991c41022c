"""Stale-run recovery: a RUNNING lease whose process is gone becomes INTERRUPTED (resumable).

On the lease's own host the process is checked with psutil (pid *and* start time, so a recycled
pid is not mistaken for the run); a lease from another host is dead once its heartbeat is older
than ``runner.stale_after_s``. The change is made under the run's lock and only if the lease is
still the one found dead, so two runners recovering the same sweep at once cannot clash.
"""

from __future__ import annotations

import socket
import time

import psutil

from runner.paths import RunPaths
from runner.state import Lease, State, finish

_HOST = socket.gethostname()


def death_reason(lease: Lease, stale_after_s: float, now: float | None = None) -> str | None:
    """Why this lease's holder is dead, or None while it is (or may be) alive."""
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


def recover(paths_and_leases: list[tuple[RunPaths, Lease]], stale_after_s: float) -> int:
    """Mark dead leases INTERRUPTED; returns how many were recovered."""
    recovered = 0
    for paths, lease in paths_and_leases:
        reason = death_reason(lease, stale_after_s)
        if reason and finish(paths, lease.token, State.INTERRUPTED,
                             {"reason": f"found interrupted: {reason}"}):
            recovered += 1
    return recovered
