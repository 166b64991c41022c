"""The only code that runs user tasks: one attempt of one run, recorded in its FLAG files.

Launchers start it in a fresh process (``child_main`` through a fork server, or
``python -m runner.execution.worker RUN_DIR`` on a cluster node). It takes over the RUNNING lease,
captures stdout/stderr into the run directory, keeps a heartbeat, calls ``task.fn(cfg)`` and
ends the attempt:

* return value (a dict)   -> COMPLETED with the value as the run's summary        (exit 0)
* exception / sys.exit(n) -> CRASH.txt with the traceback and exit status          (exit 1 / n)
* SIGTERM / SIGINT        -> INTERRUPTED, resumable                                (exit 143 / 130)

A death it cannot record (SIGKILL, OOM killer, segfault) is recorded by the launcher from the
process's exit status (``reconcile``), or found later by stale-lease recovery.
"""

from __future__ import annotations

import argparse
import ctypes
import faulthandler
import os
import signal
import socket
import sys
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf  # imported here, once per fork server, not once per run

from runner.config.configfile import load_run_config
from runner.config.secrets import redact, redact_obj
from runner.errors import RunInterrupted, TrialPruned
from runner.execution import context
from runner.execution.tasks import load_task
from runner.execution.trackers import Tracker, finish_all, start_into
from runner.planning.run_id import id_from_dirname
from runner.storage.metrics import MetricsWriter, flatten, read_tail
from runner.storage.paths import RunPaths
from runner.storage.state import Lease, State, finish, process_create_time, update_lease

# 'module:function' a run calls instead of its config's task.fn (set by the launcher for sweeps
# whose runs are not runner tasks, e.g. a Hydra app's jobs); it takes the run's config too
ENTRY_ENV = "RUNNER_ENTRY"
# 'module:function,...' called with each run's context before the task (e.g. a study's judge)
HOOKS_ENV = "RUNNER_RUN_HOOKS"
EXIT_COMPLETED = 0
EXIT_CRASHED = 1
EXIT_LEASE_LOST = 75
EXIT_SIGINT = 128 + signal.SIGINT
EXIT_SIGTERM = 128 + signal.SIGTERM
_PR_SET_PDEATHSIG = 1


ATTEMPT_HEADER = "=== runner: attempt "  # the first line of each attempt in stdout.log


def _raise_interrupted(signum: int, frame: Any) -> None:
    raise RunInterrupted(signum)


class Heartbeat(threading.Thread):
    """Refreshes the lease; if the lease was taken over, stops this run (no double execution)."""

    def __init__(self, paths: RunPaths, token: str, interval: float) -> None:
        super().__init__(name="runner-heartbeat", daemon=True)
        self.paths, self.token, self.interval = paths, token, interval
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(self.interval):
            try:
                alive = update_lease(self.paths, self.token, heartbeat=time.time())
            except Exception:  # a transient I/O error must not kill the run
                continue
            if alive is None and not self.stop.is_set():
                print(f"runner: lease of {self.paths.root} was taken over; stopping",
                      file=sys.stderr, flush=True)
                os.kill(os.getpid(), signal.SIGTERM)
                return


def _ignore_stop_signals(installed: bool) -> None:
    """While the outcome is being recorded, a late SIGTERM must not turn it into a crash."""
    if installed:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1):
            signal.signal(sig, signal.SIG_IGN)


def summary_of(result: Any) -> dict[str, Any]:
    if result is None:
        return {}
    if isinstance(result, dict):
        return flatten(result)
    return flatten({"result": result})


def _tail(path: Path, lines: int = 60) -> str:
    return "\n".join((read_tail(path, 16384) or "").splitlines()[-lines:])


# How a stop signal ends an attempt: (state, reason), or None to leave the lease RUNNING (the
# SLURM array task requeues itself and takes the lease over again when it restarts).
InterruptPolicy = Callable[[int], "tuple[State, str] | None"]


def _default_interrupt(signum: int) -> tuple[State, str]:
    return State.INTERRUPTED, f"received {signal.Signals(signum).name}"


def execute(paths: RunPaths, token: str, *, heartbeat_s: float = 10.0,
            install_signals: bool = True, launcher_facts: dict[str, Any] | None = None,
            on_interrupt: InterruptPolicy = _default_interrupt) -> int:
    """Run one attempt of the run in ``paths`` under lease ``token``; returns the exit code.

    ``launcher_facts`` are merged into the lease (e.g. the SLURM job that runs it).
    """
    now = time.time()
    lease = update_lease(paths, token, pid=os.getpid(), create_time=process_create_time(
        os.getpid()), host=socket.gethostname(), phase="running", heartbeat=now,
        launcher=dict(launcher_facts or {}))
    if lease is None:
        print(f"runner: run {paths.root} is not leased to this worker; nothing done",
              file=sys.stderr)
        return EXIT_LEASE_LOST
    if install_signals:
        signal.signal(signal.SIGTERM, _raise_interrupted)
        signal.signal(signal.SIGINT, signal.default_int_handler)
    print(f"{ATTEMPT_HEADER}{lease.attempt} of {paths.root.name} (pid {os.getpid()}) ===",
          flush=True)
    beat = Heartbeat(paths, token, heartbeat_s)
    beat.start()
    started = time.time()
    writer = None
    trackers: list[Tracker] = []
    try:
        cfg = load_run_config(paths)
        writer = MetricsWriter(paths, lease.attempt)
        ctx = context.RunContext(id_from_dirname(paths.root.name), paths, lease.attempt,
                                 OmegaConf.create(cfg), writer, lease_token=token)
        context._set_current(ctx)
        start_into(trackers, ctx, writer)
        for hook in filter(None, os.environ.get(HOOKS_ENV, "").split(",")):
            load_task(hook)(ctx)
        fn = load_task(os.environ.get(ENTRY_ENV) or cfg.get("task", {}).get("fn", ""))
        _cap_torch_threads()
        result = fn(ctx.config)
        # the body is done: record it before anything else can happen (closing files,
        # trackers), so that the only window in which a kill re-runs the body on resume is
        # the COMPLETED write itself (at-least-once at the body boundary)
        summary = redact_obj(summary_of(result))  # trackers mirror it: no secret in it
        _complete(paths, token, summary, started, beat, install_signals)
    except TrialPruned as exc:  # the study's pruner stopped it: final, not a crash
        _ignore_stop_signals(install_signals)
        finish_all(trackers, "PRUNED", {})
        beat.stop.set()
        finish(paths, token, State.PRUNED,
               {"reason": str(exc), "pruned_at": exc.at,
                "summary": redact_obj({exc.metric: exc.value}),
                "duration_s": time.time() - started})
        return EXIT_COMPLETED
    except (RunInterrupted, KeyboardInterrupt) as exc:
        _ignore_stop_signals(install_signals)
        signum = exc.signum if isinstance(exc, RunInterrupted) else signal.SIGINT
        finish_all(trackers, "INTERRUPTED", {})
        beat.stop.set()
        outcome = on_interrupt(signum)
        if outcome is not None:
            state, reason = outcome
            reason = getattr(exc, "reason", None) or reason  # (e.g. which rank was killed)
            finish(paths, token, state, {"reason": reason, "duration_s": time.time() - started},
                   traceback.format_exc() if state is State.CRASHED else "")
        return 128 + signum
    except SystemExit as exc:
        code = exc.code
        if code in (None, 0):
            summary = {}
            _complete(paths, token, summary, started, beat, install_signals)
        else:
            _ignore_stop_signals(install_signals)
            finish_all(trackers, "CRASHED", {})
            status = code if isinstance(code, int) else EXIT_CRASHED
            beat.stop.set()
            finish(paths, token, State.CRASHED,
                   {"reason": f"the task called sys.exit({code!r})", "exit_status": status,
                    "duration_s": time.time() - started}, traceback.format_exc())
            return status
    except BaseException as exc:
        _ignore_stop_signals(install_signals)
        finish_all(trackers, "CRASHED", {})
        beat.stop.set()
        finish(paths, token, State.CRASHED,
               {"reason": f"{type(exc).__name__}: {exc}", "exit_status": EXIT_CRASHED,
                "duration_s": time.time() - started}, traceback.format_exc())
        print(redact(traceback.format_exc()), end="", file=sys.stderr, flush=True)
        return EXIT_CRASHED
    finally:
        beat.stop.set()
        context._set_current(None)
        if writer is not None:
            writer.close()
        sys.stdout.flush()
        sys.stderr.flush()
    finish_all(trackers, "COMPLETED", summary)
    return EXIT_COMPLETED


def _complete(paths: RunPaths, token: str, summary: dict[str, Any], started: float,
              beat: Heartbeat, install_signals: bool) -> None:
    _ignore_stop_signals(install_signals)
    beat.stop.set()
    finish(paths, token, State.COMPLETED,
           {"summary": summary, "duration_s": time.time() - started})


def reconcile(paths: RunPaths, lease: Lease, exit_code: int | None) -> None:
    """Record the end of an attempt whose worker could not record it itself."""
    if exit_code is None:
        return
    if exit_code < 0:
        sig = signal.Signals(-exit_code)
        if sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            finish(paths, lease.token, State.INTERRUPTED, {"reason": f"killed by {sig.name}"})
            return
        hint = " (the out-of-memory killer or a user sends this)" if sig == signal.SIGKILL else ""
        reason = f"killed by {sig.name}{hint}"
    else:
        reason = f"worker exited with status {exit_code} without recording a result"
    finish(paths, lease.token, State.CRASHED,
           {"reason": reason, "exit_status": exit_code,
            "duration_s": time.time() - lease.started},
           "last lines of stderr.log:\n" + _tail(paths.stderr))


def _redirect_output(paths: RunPaths) -> None:
    for fd, path in ((1, paths.stdout), (2, paths.stderr)):
        target = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o644)
        os.dup2(target, fd)
        os.close(target)
    for stream in (sys.stdout, sys.stderr):
        getattr(stream, "reconfigure", lambda **kw: None)(line_buffering=True)
    faulthandler.enable()  # a segfault leaves its Python traceback in stderr.log


def die_with_parent(parent: int) -> None:
    """Ask the kernel to SIGKILL this process when ``parent`` (the process that forked or
    spawned it, its pid taken *before* the fork) dies, then make sure it has not died already:
    a parent killed between the fork and the request is never told of, so this process would
    run on as an orphan. Checking against the pid from before the fork cannot miss it (after
    the request, the kernel kills us; before it, the parent is no longer ``parent``)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:
        os._exit(EXIT_LEASE_LOST)


def _apply_pinning() -> None:
    """Pin this run to the CPUs its launcher slot gave it (``RUNNER_CPUS``)."""
    cpus = os.environ.get("RUNNER_CPUS")
    if cpus:
        os.sched_setaffinity(0, {int(c) for c in cpus.split(",")})


def _cap_torch_threads() -> None:
    """torch read its thread count when the fork server imported it: cap it to this slot."""
    torch = sys.modules.get("torch")
    threads = os.environ.get("OMP_NUM_THREADS")
    if torch is not None and threads and os.environ.get("RUNNER_CPUS"):
        torch.set_num_threads(int(threads))


def child_main(run_dir: str, token: str, heartbeat_s: float, cwd: str,
               env: dict[str, str]) -> int:
    """Entry point of a run process forked by the local launcher's fork server (which asked
    the kernel to kill it with the server before it got here: ``die_with_parent``)."""
    os.setpgid(0, 0)  # its own process group: cancel() reaches the task's children too
    os.environ.update(env)
    _apply_pinning()
    if cwd:
        os.chdir(cwd)
        if cwd not in sys.path:
            sys.path.insert(0, cwd)
    paths = RunPaths(Path(run_dir))
    _redirect_output(paths)
    return execute(paths, token, heartbeat_s=heartbeat_s)


def main(argv: list[str] | None = None) -> int:
    """``python -m runner.execution.worker RUN_DIR --token T``: one leased attempt, in this
    process."""
    parser = argparse.ArgumentParser(prog="python -m runner.execution.worker")
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--token", required=True)
    parser.add_argument("--heartbeat-s", type=float, default=10.0)
    parser.add_argument("--parent-pid", type=int, default=None,
                        help="the launcher's pid: this run dies with it")
    args = parser.parse_args(argv)
    die_with_parent(args.parent_pid if args.parent_pid is not None else os.getppid())
    _apply_pinning()
    paths = RunPaths(args.run_dir.resolve())
    _redirect_output(paths)
    return execute(paths, args.token, heartbeat_s=args.heartbeat_s)


if __name__ == "__main__":
    sys.exit(main())
