"""Local processes, ``max_parallel`` at a time.

With ``start_method=forkserver`` (the default) each run is forked from a fork server that imported
runner (and the modules of ``runner.preload``, e.g. torch) once per sweep, so a run pays no
interpreter start-up or import cost. ``start_method=spawn`` starts each run as a fresh ``python -m
runner.execution.worker`` process instead. Either way a run ends the moment its process exits (the
fork server reports exits as they happen; spawned runs are watched through pidfds), so a freed slot
is reused at once.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from runner.config.schema import LocalLauncherConf
from runner.launchers.base import Launcher, RunHandle
from runner.storage.state import Lease, State, finish

if TYPE_CHECKING:
    from runner.launchers.forkserver import ForkServer
    from runner.storage.store import RunRef, SweepStore


class LocalRunHandle(RunHandle):
    def __init__(self, run: RunRef, lease: Lease, launcher: LocalLauncher,
                 timeout_s: float | None) -> None:
        super().__init__(run, lease)
        self.launcher = launcher
        self.pid: int | None = None
        self.code: int | None = None
        self.popen: subprocess.Popen[bytes] | None = None
        self.deadline = time.monotonic() + timeout_s if timeout_s else None
        self.timeout_min = (timeout_s or 0) / 60

    def poll(self) -> int | None:
        if self.popen is not None and self.code is None:
            self.code = self.popen.poll()
        if self.code is None and self.deadline and time.monotonic() > self.deadline:
            self.deadline = None
            # recorded before the kill, so the worker's own INTERRUPTED record is refused
            finish(self.run.paths, self.lease.token, State.CRASHED,
                   {"reason": f"timed out after launcher.timeout_min={self.timeout_min:g}",
                    "exit_status": "timeout", "duration_s": time.time() - self.lease.started})
            self.cancel()
        return self.code

    def cancel(self) -> None:
        """SIGTERM the run's process group, SIGKILL it after ``launcher.kill_grace_s``."""
        if self.launcher.wait_until(self, lambda: self.pid is not None or self.code is not None,
                                    5.0) and self.code is None:
            assert self.pid is not None
            _signal_group(self.pid, signal.SIGTERM)
            if not self.launcher.wait_until(self, lambda: self.poll() is not None,
                                            float(self.launcher.conf.kill_grace_s)):
                _signal_group(self.pid, signal.SIGKILL)
                self.launcher.wait_until(self, lambda: self.poll() is not None, 10.0)


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)  # the run leads its own group: its children get it too
    except (ProcessLookupError, PermissionError):
        try:
            os.kill(pid, sig)  # not yet its own group leader
        except ProcessLookupError:
            pass


class LocalLauncher(Launcher):
    """Runs as child processes of this machine."""

    config_class = LocalLauncherConf
    ranks = True

    def __init__(self, store: SweepStore, conf: Any, runner_conf: Any) -> None:
        super().__init__(store, conf, runner_conf)
        self.cwd = self.run_cwd()
        self._server: ForkServer | None = None
        self._by_token: dict[str, LocalRunHandle] = {}
        if conf.start_method == "fork":  # now, while this process has no threads of ours
            from runner.launchers.forkserver import ForkServer

            self._server = ForkServer(self._preload(), fork=True)

    def _preload(self) -> list[str]:
        return list(dict.fromkeys([*self.runner_conf.preload, *self.preload]))

    def env_for(self, run: RunRef) -> dict[str, str]:
        """Environment variables of one run (pinned launchers add CPU/GPU assignments)."""
        from runner.execution.ranks import rank_env

        return rank_env(int(self.conf.nproc_per_run),
                        {**self.extra_env, "RUNNER_RUN_DIR": run.dir, "RUNNER_RUN_ID": run.id})

    def warm_up(self) -> None:
        if self.conf.start_method != "spawn":
            self.server  # noqa: B018 (started here: it imports runner and the preloads)

    @property
    def server(self) -> ForkServer:
        if self._server is None:
            from runner.launchers.forkserver import ForkServer

            self._server = ForkServer(self._preload())
        return self._server

    def launch(self, run: RunRef, lease: Lease) -> RunHandle:
        timeout_s = self.conf.timeout_min * 60 if self.conf.timeout_min else None
        handle = LocalRunHandle(run, lease, self, timeout_s)
        heartbeat = float(self.runner_conf.heartbeat_s)
        if self.conf.start_method == "spawn":
            handle.popen = subprocess.Popen(
                [sys.executable, "-m", "runner.execution.worker", run.dir, "--token", lease.token,
                 "--heartbeat-s", str(heartbeat), "--parent-pid", str(os.getpid())],
                cwd=self.cwd, env={**os.environ, **self.env_for(run)}, start_new_session=True,
                stdin=subprocess.DEVNULL)
            handle.pid = handle.popen.pid
        else:
            self._by_token[lease.token] = handle
            self.server.start(lease.token, [run.dir, lease.token, heartbeat, self.cwd,
                                            self.env_for(run)])
        return handle

    def _pump(self, timeout: float) -> None:
        """Take the fork server's news (pids, exit statuses) for up to ``timeout`` seconds."""
        if self._server is None:
            time.sleep(timeout)
            return
        for msg in self._server.messages(timeout):
            handle = self._by_token.get(msg["key"])
            if handle is None:
                continue
            if "pid" in msg:
                handle.pid = msg["pid"]
            if "code" in msg:
                handle.code = msg["code"]
                del self._by_token[msg["key"]]

    def _wait_spawned(self, handles: list[LocalRunHandle], timeout: float) -> None:
        fds = []
        try:
            for h in handles:
                if h.popen is not None and h.code is None:
                    try:
                        fds.append(os.pidfd_open(h.popen.pid))
                    except ProcessLookupError:
                        pass
            if fds:
                select.select(fds, [], [], timeout)
            else:
                time.sleep(min(timeout, 0.05))
        finally:
            for fd in fds:
                os.close(fd)

    def wait_until(self, handle: LocalRunHandle, done: Any, timeout: float) -> bool:
        end = time.monotonic() + timeout
        while not done():
            left = end - time.monotonic()
            if left <= 0:
                return False
            if handle.popen is not None:
                self._wait_spawned([handle], min(left, 0.1))
            else:
                self._pump(min(left, 0.1))
        return True

    def wait(self, handles: Sequence[RunHandle], timeout: float) -> list[RunHandle]:
        local = [h for h in handles if isinstance(h, LocalRunHandle)]
        ended: list[RunHandle] = [h for h in local if h.poll() is not None]
        if ended:
            return ended
        deadlines = [h.deadline for h in local if h.deadline]
        if deadlines:
            timeout = max(0.0, min(timeout, min(deadlines) - time.monotonic() + 0.01))
        if any(h.popen is None for h in local):
            self._pump(timeout)
        else:
            self._wait_spawned(local, timeout)
        return [h for h in local if h.poll() is not None]

    def close(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
