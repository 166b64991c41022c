"""Local processes, ``max_parallel`` at a time.

Each run is a separate process forked from a fork server that imported runner (and the modules of
``runner.preload``, e.g. torch) once per sweep, so a run pays no interpreter start-up or import
cost. ``start_method=spawn`` gives each run a fresh interpreter instead. Ended runs are noticed the
moment they exit (their process sentinels are waited on), so a freed slot is reused at once.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import os
import signal
import time
from collections.abc import Sequence
from multiprocessing.context import BaseContext
from multiprocessing.process import BaseProcess
from typing import Any

from runner import worker
from runner.config_schema import LocalLauncherConf
from runner.launchers.base import Launcher, RunHandle
from runner.state import Lease, State, finish
from runner.store import RunRef, SweepStore

_FORKSERVER_PRELOAD: list[str] | None = None


class LocalRunHandle(RunHandle):
    def __init__(self, run: RunRef, lease: Lease, process: BaseProcess, grace_s: float,
                 timeout_s: float | None) -> None:
        super().__init__(run, lease)
        self.process = process
        self.grace_s = grace_s
        self.deadline = time.monotonic() + timeout_s if timeout_s else None
        self.timeout_min = (timeout_s or 0) / 60
        self.timed_out = False

    def poll(self) -> int | None:
        if self.process.exitcode is None and self.deadline and time.monotonic() > self.deadline:
            self.timed_out = True
            # recorded before the kill, so the worker's own INTERRUPTED record is refused
            finish(self.run.paths, self.lease.token, State.CRASHED,
                   {"reason": f"timed out after launcher.timeout_min={self.timeout_min:g}",
                    "exit_status": "timeout", "duration_s": time.time() - self.lease.started})
            self.cancel()
        return self.process.exitcode

    def cancel(self) -> None:
        """SIGTERM the run's process group, SIGKILL it after ``grace_s``."""
        pid = self.process.pid
        if pid is None or self.process.exitcode is not None:
            return
        _signal_group(pid, signal.SIGTERM)
        self.process.join(self.grace_s)
        if self.process.exitcode is None:
            _signal_group(pid, signal.SIGKILL)
            self.process.join(5)


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def _context(start_method: str, preload: list[str]) -> BaseContext:
    global _FORKSERVER_PRELOAD
    ctx = multiprocessing.get_context(start_method)
    if start_method == "forkserver":
        wanted = ["runner.worker", *preload]
        if _FORKSERVER_PRELOAD is not None and _FORKSERVER_PRELOAD != wanted:
            # a fork server is per interpreter; restart it to honour a new preload list
            from multiprocessing import forkserver

            forkserver._forkserver._stop()  # type: ignore[attr-defined]
        ctx.set_forkserver_preload(wanted)
        _FORKSERVER_PRELOAD = wanted
    return ctx


class LocalLauncher(Launcher):
    """Runs as child processes of this machine."""

    config_class = LocalLauncherConf

    def __init__(self, store: SweepStore, conf: Any, runner_conf: Any) -> None:
        super().__init__(store, conf, runner_conf)
        self.ctx = _context(conf.start_method, list(runner_conf.preload))
        self.cwd = store.manifest.get("cwd", "")

    def env_for(self, run: RunRef) -> dict[str, str]:
        """Environment variables of one run (pinned launchers add CPU/GPU assignments)."""
        return {"RUNNER_RUN_DIR": str(run.paths.root), "RUNNER_RUN_ID": run.id}

    def launch(self, run: RunRef, lease: Lease) -> RunHandle:
        process = self.ctx.Process(  # type: ignore[attr-defined]
            target=worker.child_main,
            args=(str(run.paths.root), lease.token, float(self.runner_conf.heartbeat_s),
                  self.cwd, self.env_for(run)),
            name=f"runner-{run.id}",
            daemon=False,
        )
        process.start()
        timeout_s = self.conf.timeout_min * 60 if self.conf.timeout_min else None
        return LocalRunHandle(run, lease, process, float(self.conf.kill_grace_s), timeout_s)

    def wait(self, handles: Sequence[RunHandle], timeout: float) -> list[RunHandle]:
        local = [h for h in handles if isinstance(h, LocalRunHandle)]
        ended = [h for h in local if h.poll() is not None]
        if ended:
            return list(ended)
        deadlines = [h.deadline for h in local if h.deadline]
        if deadlines:
            timeout = max(0.0, min(timeout, min(deadlines) - time.monotonic() + 0.01))
        multiprocessing.connection.wait([h.process.sentinel for h in local], timeout)
        return [h for h in local if h.poll() is not None]
