"""``python -m runner.slurm.array_task TASKS_JSON``: what one SLURM array task runs on its node.

Task ``i`` takes entry ``i`` of the submission's ``tasks.json`` (a run directory and the token of
the lease the submitting runner claimed for it) and runs the worker on it, so the run is recorded
in its FLAG files exactly as with the local launcher. On top of that it handles SLURM's ways:

* ``SIGUSR1`` (``--signal=B:USR1@T``, the time limit is near): if ``--max-requeue`` allows, the
  task gets ``RunInterrupted`` (it may checkpoint), the lease stays RUNNING, and the job requeues
  itself; when SLURM starts it again, it takes the same lease over and the task resumes from its
  checkpoint. With no requeue left the task runs on, and a kill by the time limit is a crash.
* ``SIGTERM`` otherwise (``scancel``, preemption): INTERRUPTED, resumable; never requeued here.
* A restart after SLURM requeued the job itself (node failure, preemption) finds the run
  INTERRUPTED or still leased to it and carries on.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path
from typing import Any

from runner.errors import RunInterrupted, SlurmError
from runner.execution.worker import (
    EXIT_LEASE_LOST,
    _default_interrupt,
    _redirect_output,
    execute,
)
from runner.planning.run_id import id_from_dirname
from runner.slurm import commands
from runner.slurm.submissions import read_tasks
from runner.storage.paths import RunPaths
from runner.storage.state import Lease, State, claim, finish, read_state, update_lease


class TimeLimitPolicy:
    """Decides what SLURM's warning signal and a later SIGTERM mean for this attempt."""

    def __init__(self, requeues: int, max_requeue: int) -> None:
        self.requeues, self.max_requeue = requeues, max_requeue
        self.requeue = False
        self.warned = False

    def on_warning(self, signum: int, frame: Any) -> None:
        if self.requeues < self.max_requeue:
            self.requeue = True
            print(f"runner: SLURM's time-limit warning; requeue {self.requeues + 1} of "
                  f"{self.max_requeue} (the task may checkpoint now)", file=sys.stderr,
                  flush=True)
            raise RunInterrupted(signum)
        self.warned = True
        print(f"runner: SLURM's time-limit warning; no requeue left "
              f"(launcher.max_requeue={self.max_requeue}): running on", file=sys.stderr,
              flush=True)

    def outcome(self, signum: int) -> tuple[State, str] | None:
        if signum == signal.SIGUSR1 and self.requeue:
            return None  # the lease stays RUNNING; the job requeues itself
        if signum == signal.SIGTERM and self.warned:
            return State.CRASHED, (f"killed by SLURM's time limit (launcher.timeout_min) after "
                                   f"{self.requeues} requeue(s); launcher.max_requeue="
                                   f"{self.max_requeue} used up")
        return _default_interrupt(signum)


def take_over(paths: RunPaths, token: str, facts: dict[str, Any]) -> Lease | None:
    """The lease this task runs under, or None if the run is not this task's to run."""
    record = read_state(paths)
    if record.state is State.RUNNING:
        if record.data.get("token") == token:
            return record.lease
        print(f"runner: {paths.root} is RUNNING under another lease; nothing done",
              file=sys.stderr)
        return None
    if record.state in (State.INTERRUPTED, State.UNHATCHED):
        # SLURM restarted this job on its own (node failure, preemption), or the script was
        # submitted by hand: claim the run again; the flock makes a concurrent resume lose
        return claim(paths, frozenset({State.INTERRUPTED, State.UNHATCHED}), facts,
                     phase="running")
    print(f"runner: {paths.root} is already {record.state.value}; nothing to do",
          file=sys.stderr)
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m runner.slurm.array_task")
    parser.add_argument("tasks", type=Path)
    parser.add_argument("--max-requeue", type=int, default=0)
    parser.add_argument("--heartbeat-s", type=float, default=10.0)
    parser.add_argument("--index", type=int, help="default: $SLURM_ARRAY_TASK_ID")
    args = parser.parse_args(argv)
    index = args.index if args.index is not None else int(os.environ["SLURM_ARRAY_TASK_ID"])
    tasks = read_tasks(args.tasks)
    run_dir, token = tasks["runs"][index]
    paths = RunPaths(Path(run_dir))
    facts = {"backend": "slurm", "submission": tasks.get("submission", ""), "index": index,
             "max_requeue": args.max_requeue, **commands.job_env()}
    lease = take_over(paths, token, facts)
    if lease is None:
        return 0 if read_state(paths).state is State.COMPLETED else EXIT_LEASE_LOST
    policy = TimeLimitPolicy(int(lease.launcher.get("requeues", 0)), args.max_requeue)
    os.environ.update({"RUNNER_RUN_DIR": str(paths.root),
                       "RUNNER_RUN_ID": id_from_dirname(paths.root.name)})
    _redirect_output(paths)
    signal.signal(signal.SIGUSR1, policy.on_warning)
    try:
        code = execute(paths, lease.token, heartbeat_s=args.heartbeat_s, launcher_facts=facts,
                       on_interrupt=policy.outcome)
    except RunInterrupted:  # the warning came before the task started: requeue all the same
        code = 128 + signal.SIGUSR1
    if policy.requeue and code == 128 + signal.SIGUSR1:
        return _requeue(paths, lease.token, policy, facts)
    return code


def _requeue(paths: RunPaths, token: str, policy: TimeLimitPolicy, facts: dict[str, Any]) -> int:
    update_lease(paths, token, phase="requeued", launcher={"requeues": policy.requeues + 1})
    try:
        # this array task alone: the task that holds the array's own id (the last one) would
        # requeue every task of the array by that id
        commands.requeue(str(facts.get("job") or facts.get("job_id", "")))
    except SlurmError as exc:
        finish(paths, token, State.INTERRUPTED, {"reason": f"could not requeue: {exc}"})
        return 1
    print(f"runner: requeued SLURM job {facts.get('job', facts.get('job_id'))}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
