"""One run on several processes: ``launcher.nproc_per_run=N`` starts N ranks of the task with
torch's own elastic launcher (what ``torchrun --standalone`` runs), gloo or NCCL as the task
chooses.

The run's process is the run as ever: it holds the lease, the heartbeat and the FLAG file, and
in place of the task it runs ``run_ranks``, torch's elastic agent (``torch.distributed.
launcher.api.elastic_launch``). The agent starts the N ranks (see ``start_method``) with the
environment ``torch.distributed`` expects (``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``,
``LOCAL_WORLD_SIZE``, ``GROUP_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``) and a rendezvous on a
port the system picks, so that runs on one machine never meet. Each rank runs the task
(``task.fn``) with the run's config:

* ``runner.current_run()`` tells it ``rank``, ``local_rank`` and ``world_size``;
  ``runner.distributed()`` initialises the default process group (gloo on CPU, NCCL on GPUs);
* rank 0 owns the run's results: its ``runner.log`` records go to ``metrics.jsonl`` and
  ``progress.csv`` and to the run's trackers (``tracker=wandb``: one tracked run, rank 0's), its
  return value is the run's summary; other ranks' ``runner.log`` calls are dropped, their
  return values ignored;
* every rank's output reaches the run's ``stdout.log``/``stderr.log``, each line prefixed with
  its rank (``[default0]:``), and is kept per rank under ``ranks/``;
* a rank that raises ends the run CRASHED with that rank's traceback; the agent stops the other
  ranks. A rank killed from outside (SIGKILL, SIGTERM, SIGINT, SIGHUP: a user, an OOM killer)
  ends the run INTERRUPTED, saying which rank, and the next launch resumes it. Each rank dies
  with the run's process (SIGKILL of the run included), so a killed run leaves no rank behind,
  and a resume starts the ranks again.
"""

from __future__ import annotations

import os
import signal
import uuid
from typing import Any

from runner.errors import ConfigError, RunInterrupted, RunnerError
from runner.execution.tracebacks import HEADER, frames_below

NPROC_ENV = "RUNNER_NPROC_PER_RUN"
RANK_ENTRY_ENV = "RUNNER_RANK_ENTRY"  # what each rank runs (default: the task's fn)
RANK_TRACKERS_ENV = "RUNNER_RANK_TRACKERS"  # the run's trackers, which rank 0 runs
START_ENV = "RUNNER_RANK_START_METHOD"  # fork or spawn, instead of the choice start_method makes
ENTRY = "runner.execution.ranks:run_ranks"


class RankFailed(RunnerError):
    """A rank of a distributed run raised or died; its message holds that rank's traceback."""


class RankInterrupted(RunInterrupted):
    """A rank was killed (SIGKILL, SIGTERM, ...): the run is INTERRUPTED, and resumes."""

    def __init__(self, signum: int, reason: str) -> None:
        super().__init__(signum)
        self.reason = reason


# a rank ended by one of these was stopped from outside (a user, a node's OOM killer, the
# scheduler), not failed by its task: the run is INTERRUPTED and the next launch resumes it
_STOPPING = frozenset({signal.SIGKILL, signal.SIGTERM, signal.SIGINT, signal.SIGHUP})


def check(nproc_per_run: int, execution: dict[str, Any] | None = None) -> None:
    """Refuse what a distributed run cannot do yet, before anything is written."""
    if nproc_per_run <= 1:
        return
    try:
        import torch.distributed  # noqa: F401
    except ImportError:
        raise ConfigError("launcher.nproc_per_run > 1 starts its ranks with torch's elastic "
                          "launcher: install torch (pip install torch)") from None


def start_method() -> str:
    """How an agent starts its ranks (torchrun's ``--start-method``). Forked where torch has no
    GPU support (its CPU build): the ranks share the agent's imports instead of importing torch
    again, about 1.5 s of CPU less per rank. Spawned, as torchrun does, by a build with CUDA or
    ROCm: the agent asks torch whether CUDA is available, which initialises the driver, and a
    forked process cannot use a driver its parent initialised. ``RUNNER_RANK_START_METHOD``
    (fork or spawn) chooses otherwise."""
    import torch

    chosen = os.environ.get(START_ENV)
    if chosen:
        if chosen not in ("fork", "spawn"):
            raise RunnerError(f"{START_ENV}={chosen}: ranks start by fork or spawn")
        return chosen
    return "spawn" if torch.version.cuda or getattr(torch.version, "hip", None) else "fork"


def rank_env(nproc_per_run: int, env: dict[str, str], entry: str = ENTRY,
             **more: str) -> dict[str, str]:
    """A run's environment with its task started as ``nproc_per_run`` ranks by ``entry`` (a
    backend that starts ranks on several nodes gives its own, and what it needs in ``more``)."""
    if nproc_per_run <= 1 and entry == ENTRY:
        return env
    from runner.execution import trackers
    from runner.execution.worker import ENTRY_ENV

    # the trackers are rank 0's, which logs the run's metrics; the run's own process has none
    return {**env, NPROC_ENV: str(nproc_per_run), RANK_ENTRY_ENV: env.get(ENTRY_ENV, ""),
            ENTRY_ENV: entry, RANK_TRACKERS_ENV: env.get(trackers.ENV, ""), trackers.ENV: "",
            **more}


def run_ranks(cfg: Any) -> Any:
    """The run's process: start the ranks, wait for them, return rank 0's result."""
    from torch.distributed.elastic.multiprocessing import DefaultLogsSpecs, Std
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    import runner

    ctx = runner.current_run()
    nproc = int(os.environ[NPROC_ENV])
    entry = os.environ.get(RANK_ENTRY_ENV) or str(cfg.task.fn)
    logs = ctx.paths.root / "ranks"
    logs.mkdir(mode=0o755, exist_ok=True)
    conf = LaunchConfig(
        min_nodes=1, max_nodes=1, nproc_per_node=nproc,
        run_id=f"{ctx.run_id}-{ctx.attempt}-{uuid.uuid4().hex[:8]}",
        rdzv_backend="c10d", rdzv_endpoint="localhost:0",  # a free port: runs never meet
        max_restarts=0, monitor_interval=0.1, start_method=start_method(), role="rank",
        logs_specs=DefaultLogsSpecs(log_dir=str(logs), redirects=Std.ALL, tee=Std.ALL))
    try:
        results = elastic_launch(conf, rank_main)(str(ctx.paths.root), entry, ctx.attempt,
                                                 os.getpid(), ctx.lease_token)
    except ChildFailedError as exc:
        raise failure_error(first_failure(exc), nproc) from None
    return results.get(0)


def first_failure(exc: Any) -> dict[str, Any]:
    """The first rank that failed, of torch's ``ChildFailedError``, as plain data (rank, exit
    code, message, traceback, time): what a node tells the run on another node."""
    rank, failure = exc.get_first_failure()
    message = failure.message
    if isinstance(message, dict):
        trace = str((message.get("extraInfo") or {}).get("py_callstack") or "")
        text = str(message.get("message") or "")
    else:
        trace, text = "", str(message or "")
    return {"rank": int(rank), "exitcode": int(failure.exitcode), "message": text,
            "trace": trace, "time": float(failure.timestamp or 0)}


def failure_error(failure: dict[str, Any], world: int) -> BaseException:
    """The run's end for a failed rank: INTERRUPTED (the run resumes) for a rank killed from
    outside, else CRASHED with the rank's traceback from the task's frame on."""
    rank, code = failure["rank"], failure["exitcode"]
    if code < 0 and -code in _STOPPING:  # killed, not failed: the run resumes
        name = signal.Signals(-code).name
        return RankInterrupted(-code, f"rank {rank} of {world} was killed by {name}")
    failed = RankFailed(f"rank {rank} of {world} failed: "
                        f"{failure['message'] or f'exit status {code}'}")
    if failure["trace"]:
        failed.add_note(f"the rank's traceback:\n{_task_frames(failure['trace'])}")
    return failed


def _task_frames(trace: str) -> str:
    """A rank's traceback from the task's own frame on (the elastic wrapper's and
    ``rank_main``'s left out)."""
    rest = frames_below(trace, "rank_main", last=False)
    return trace.rstrip() if rest is None else "\n".join([HEADER, *rest])


def rank_main(run_dir: str, entry: str, attempt: int, agent: int, token: str = "") -> Any:
    """One rank: the task with the run's config; rank 0 logs, every rank dies with the run;
    each rank signs its process and host into the run's lease (``rank<N>``)."""
    from pathlib import Path

    from omegaconf import OmegaConf

    from runner.config.configfile import load_run_config
    from runner.execution import context
    from runner.execution.tasks import load_task
    from runner.execution.worker import die_with_parent
    from runner.planning.run_id import id_from_dirname
    from runner.storage.paths import RunPaths

    die_with_parent(agent)
    _default_signals()
    paths = RunPaths(Path(run_dir))
    rank = int(os.environ.get("RANK", "0"))
    if token:  # (merged into the lease's launcher facts: each rank its own key)
        import socket

        from runner.storage.state import update_lease

        update_lease(paths, token, launcher={f"rank{rank}": {
            "pid": os.getpid(), "host": socket.gethostname(),
            "local_rank": int(os.environ.get("LOCAL_RANK", "0"))}})
    writer: Any = None
    if rank == 0:
        from runner.storage.metrics import MetricsWriter

        writer = MetricsWriter(paths, attempt)
    sink: Any = writer if writer is not None else _Dropped()
    ctx = context.RunContext(id_from_dirname(paths.root.name), paths, attempt,
                             OmegaConf.create(load_run_config(paths)), sink)
    ctx.info.update(rank=rank, local_rank=int(os.environ.get("LOCAL_RANK", "0")),
                    world_size=int(os.environ.get("WORLD_SIZE", "1")))
    context._set_current(ctx)
    tracked: list[Any] = []  # rank 0 mirrors the run's records into the run's trackers
    if rank == 0:
        from runner.execution.trackers import start_into

        start_into(tracked, ctx, writer, RANK_TRACKERS_ENV)
    state, summary = "CRASHED", {}
    try:
        result = load_task(entry)(ctx.config)
        if tracked:
            from runner.config.secrets import redact_obj
            from runner.execution.worker import summary_of

            state, summary = "COMPLETED", redact_obj(summary_of(result))
    except KeyboardInterrupt:
        state = "INTERRUPTED"
        raise
    finally:
        if tracked:
            from runner.execution.trackers import finish_all

            finish_all(tracked, state, summary)
        if writer is not None:
            writer.close()
    return result if rank == 0 else None


def _default_signals() -> None:
    """A forked rank starts with the handlers of a fresh interpreter, as a spawned one does, not
    with its agent's (torch's, which turn a SIGTERM into an exception, a crash rather than a
    kill; the worker's and a SLURM task's, which speak for the run, not for one rank)."""
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2,
                signal.SIGCHLD):
        signal.signal(sig, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.set_wakeup_fd(-1)


class _Dropped:
    """Where the ``runner.log`` calls of ranks other than 0 go."""

    def log(self, metrics: Any, step: int | None = None) -> dict[str, Any]:
        return {}

    def close(self) -> None:
        pass


def init(backend: str | None = None) -> Any:
    """``runner.distributed()``: the default process group of this run's ranks (gloo on CPU,
    NCCL when CUDA is available, unless ``backend`` says), initialised once; returns
    ``torch.distributed``."""
    import torch
    import torch.distributed as dist

    if not dist.is_initialized():
        if "RANK" not in os.environ:
            raise RunnerError("runner.distributed() is for runs started with "
                              "launcher.nproc_per_run > 1 (no RANK in the environment)")
        chosen = backend or ("nccl" if torch.cuda.is_available() else "gloo")
        if chosen == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(chosen)
    return dist
