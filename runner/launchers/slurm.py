"""SLURM: all pending runs of a sweep go out as one ``sbatch`` job array per submission.

The scheduler claims each run as usual (a RUNNING lease naming the submission and the run's array
index) and hands it over with ``launch``; ``flush`` then writes the submission's files and calls
``sbatch`` once (more calls only where the array is larger than the cluster's MaxArraySize; each
later chunk waits for the one before, so ``max_parallel`` holds across chunks). On the node, array
task ``i`` runs ``runner.slurm.array_task`` on run ``i``, which records the run in its FLAG files
like the local launcher's worker. Watching is one ``squeue`` call per ``poll_s`` for the whole
sweep. A sweep whose runner is gone (Ctrl-C, a reboot of the login node, ``wait=false``) is picked
up again by ``resume``, which adopts the leases of live jobs instead of submitting them again.
"""

from __future__ import annotations

import getpass
import math
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runner.config.schema import SlurmLauncherConf
from runner.errors import ConfigError, CorruptStateError, SlurmError
from runner.execution.ranks import rank_env
from runner.launchers.base import Launcher, RunHandle
from runner.slurm import commands, submissions
from runner.slurm.bad_nodes import BadNodes
from runner.slurm.script import ArraySpec, job_name, render_script
from runner.slurm.verdicts import judge
from runner.storage.atomic import make_folders, write_text_atomic
from runner.storage.paths import SweepPaths
from runner.storage.recovery import backend_of
from runner.storage.state import (
    FlagRecord,
    Lease,
    State,
    StateWatch,
    finish,
    read_state,
    unclaim,
    update_lease,
)

if TYPE_CHECKING:
    from runner.storage.store import RunRef, SweepStore


def run_env(conf: SlurmLauncherConf, env: dict[str, str]) -> dict[str, str]:
    """A run's environment: its ranks on its node (``nproc_per_run``) or on its ``nodes``."""
    if conf.nodes > 1:
        from runner.slurm import nodes

        return rank_env(int(conf.nproc_per_run), env, nodes.ENTRY,
                        **{nodes.NODES_ENV: str(conf.nodes)})
    return rank_env(int(conf.nproc_per_run), env)

STUDY_SLOTS = 8  # trials out at once when a study's launcher.max_parallel is not set
DRIVER = "loop"  # the submission directory of the sweep loop's own job (wait=false)


class SlurmRunHandle(RunHandle):
    def __init__(self, run: RunRef, lease: Lease, index: int) -> None:
        super().__init__(run, lease)
        self.index = index
        self.code: int | None = None
        self.flag = StateWatch(run.paths)  # (a queued task's FLAG is not read at every poll)
        self.lease_data: dict[str, Any] | None = None  # (what ``lease`` was last read from)

    @property
    def job(self) -> str | None:
        job = self.lease.launcher.get("array_job_id")
        return f"{job}_{self.index}" if job else None

    def poll(self) -> int | None:
        return self.code

    def cancel(self) -> None:
        if self.job and self.code is None:
            commands.scancel([self.job])


class _RefusedForNow(SlurmError):
    """sbatch refused for a limit or a busy controller: the runs wait and go again later."""

    def __init__(self, message: str, limit: bool) -> None:
        super().__init__(message)
        self.limit = limit  # (a limit on waiting jobs, not a busy controller)


@dataclass
class _Batch:
    """Runs claimed for one submission, not yet submitted."""

    submission: submissions.Submission
    handles: list[SlurmRunHandle] = field(default_factory=list)
    reserved: int = 0


class SlurmLauncher(Launcher):
    """Submits runs to SLURM as job arrays and watches them with batched squeue calls."""
    runs_here = False  # on the cluster's nodes

    config_class = SlurmLauncherConf
    ranks = True  # the array task runs the ranks: on its node (runner.execution.ranks) or on
    #               launcher.nodes nodes (runner.slurm.nodes)
    detach_on_interrupt = True  # Ctrl-C leaves the jobs to SLURM; `resume` re-attaches
    claim_phase = "queued"
    requires = "SLURM's sbatch and squeue on the PATH (run it on a login node)"

    def __init__(self, store: SweepStore, conf: Any, runner_conf: Any) -> None:
        super().__init__(store, conf, runner_conf)
        self._batches: list[_Batch] = []
        self._array_limit: int | None = None
        self._next_poll = 0.0
        self._hold_s = 0.0  # the last wait after a refusal for a limit (0: none)
        self._held_until = 0.0
        self.bad_nodes = BadNodes(store.root, int(conf.bad_node_after))
        self._pools_ended: set[str] = set()  # pools whose end bad_nodes has seen
        self._site_limit: tuple[int, str] | None = None  # (queue_limit's, once read)
        self._batch_cap: int | None = None  # runs per submission after a refusal for a limit
        self._news: list[str] = []  # (for news(), besides the bad nodes')

    @classmethod
    def is_available(cls) -> bool:
        return commands.available()

    @classmethod
    def check(cls, conf: Any) -> None:
        for key in ("cpus_per_run", "gpus_per_run", "max_requeue", "signal_delay_s"):
            if getattr(conf, key) < 0:
                raise ConfigError(f"launcher.{key}={getattr(conf, key)} must be >= 0")
        if conf.max_parallel is not None and conf.max_parallel < 1:
            raise ConfigError(f"launcher.max_parallel={conf.max_parallel} must be >= 1")
        if conf.poll_s <= 0:
            raise ConfigError(f"launcher.poll_s={conf.poll_s} must be > 0")
        if conf.runs_per_job > 1 and conf.nodes > 1:
            raise ConfigError(f"launcher.runs_per_job={conf.runs_per_job} packs runs of one "
                              f"node each into a job; launcher.nodes={conf.nodes} gives a run "
                              "several nodes: choose one of them")
        if conf.nodes > 1:
            try:
                import torch.distributed  # noqa: F401
            except ImportError:
                raise ConfigError(f"launcher.nodes={conf.nodes} starts a run's ranks on each "
                                  "node with torch's elastic launcher: install torch (pip "
                                  "install torch)") from None

    @property
    def hands_over(self) -> bool:
        return int(self.conf.runs_per_job) > 1  # pools claim the runs (runner.slurm.pool)

    @property
    def handed_over_poll_s(self) -> float:
        return float(self.conf.poll_s)

    def hand_over(self, runnable: int, running: int) -> str:
        """Pools enough for the runs left: those alive, minus their free slots, plus new ones
        for the rest (one sbatch call), within max_parallel and max_queued."""
        from runner.slurm import pool

        if not runnable:
            if running:
                return ""
            idle = pool.cancel_pending_pools(self.store.root)  # (nothing left for them)
            return f"cancelled {idle} pool(s) still queued: nothing is left for them" \
                if idle else ""
        k = int(self.conf.runs_per_job)
        known = pool.pools(self.store.root)
        for info in known:  # (a node where pools fail is left out like one where runs do)
            if info.ended and info.name not in self._pools_ended:
                self._pools_ended.add(info.name)
                self.bad_nodes.saw_pool(info.name, info.node, info.state)
        alive = sum(1 for j in known if not j.ended)
        free = max(0, alive * k - running)
        more = min(math.ceil(max(0, runnable - free) / k),
                   pool.pools_needed(self.conf, runnable + running, self.queue_limit) - alive,
                   self.array_limit)  # (one array, under MaxArraySize; more later if needed)
        if more <= 0 or self.held_s():
            return ""
        more = min(more, self._batch_cap or more)
        try:
            job = pool.submit_pools(self.store, self.conf, more, self.run_cwd(), {},
                                    self._exclude())
        except SlurmError as exc:
            if not commands.refused_for_now(exc):
                raise
            self._refused(more, f"{exc}; submitted again later ({more} pool(s))",
                          commands.refused_for_a_limit(exc))
            return f"not submitted now: {self.hold_reason}; next try in {self.held_s():.0f}s"
        self._hold_s = 0.0
        return (f"submitted {more} pool(s) of {k} slot(s) as job {job}: each runs the next "
                f"runnable run whenever a slot frees ({runnable} to run, {running} running, "
                f"{alive} pool(s) alive before)")

    @property
    def max_parallel(self) -> int:
        """Every pending run is submitted at once (SLURM enforces %max_parallel), or at most
        ``queue_limit`` of them, more as runs end (one sbatch per poll at most)."""
        return self.queue_limit or sys.maxsize

    @property
    def queue_limit(self) -> int | None:
        """``launcher.max_queued``, else the limit the cluster's accounting sets on this user's
        queued jobs (read once; the sweep says which), else None."""
        if self.conf.max_queued:
            return int(self.conf.max_queued)
        if self._site_limit is None:
            found = commands.submit_limit(getpass.getuser(), self.conf.qos, self.conf.account)
            self._site_limit = found or (0, "")
            if found:
                self._news.append(f"at most {found[0]} of the sweep's jobs are queued at once: "
                                  f"the {found[1]} (launcher.max_queued=N sets another)")
        return self._site_limit[0] or None

    @property
    def waits(self) -> bool:
        return bool(self.conf.wait)

    @property
    def proposal_slots(self) -> int:
        return int(self.conf.max_parallel or STUDY_SLOTS)

    def continue_elsewhere(self) -> str | None:
        """Submit the sweep loop itself as a small job (one CPU): it submits the runs still to
        come as slots free (a study's next trials, proposed then; runs held back by
        ``launcher.max_queued``), so ``wait=false`` finishes the sweep. At most one such job is
        live per sweep; ``cancel`` stops it with the rest."""
        from runner.slurm.script import render_driver_script

        paths = submissions.paths_of(self.store.root, DRIVER)
        previous = submissions.read(paths)
        if previous is not None and previous.job_id:
            jobs = commands.query([previous.job_name])
            if any(not j.ended for j in jobs.values()):
                return (f"the sweep loop job {previous.job_id} is still queued or running: it "
                        "goes on submitting the sweep's runs as slots free")
        sub = submissions.Submission(DRIVER, job_name(self.conf.job_name or str(
            self.store.manifest.get("name")), f"loop{submissions.Submission.new_id()[:6]}"),
            time.time(), 0)
        make_folders(paths.logs)
        cwd = self.run_cwd()
        write_text_atomic(paths.script, render_driver_script(
            self.conf, job_name=sub.job_name, paths=paths, sweep_root=str(self.store.root),
            cwd=cwd, python=self.conf.python or sys.executable, env=self.extra_env))
        submissions.write(paths, sub)
        sub.job_id = commands.sbatch(paths.script, cwd, self._exclude())
        submissions.write(paths, sub)
        return (f"submitted the sweep loop as job {sub.job_id}: it goes on submitting the "
                f"sweep's runs as slots free (log: {paths.logs / 'driver.out'})")

    @property
    def array_limit(self) -> int:
        if self._array_limit is None:
            self._array_limit = commands.max_array_size()
        return self._array_limit

    # ------------------------------------------------------------ claiming and submitting

    def launcher_info(self, run: RunRef) -> dict[str, Any]:
        batch = self._batches[-1] if self._batches else None
        if batch is None or batch.reserved >= min(self.array_limit,
                                                  self._batch_cap or self.array_limit):
            sub_id = submissions.Submission.new_id()
            name = job_name(self.conf.job_name or str(self.store.manifest.get("name")), sub_id)
            batch = _Batch(submissions.Submission(sub_id, name, time.time(), 0))
            self._batches.append(batch)
        batch.reserved += 1
        return {"backend": "slurm", "submission": batch.submission.id,
                "index": batch.reserved - 1, "max_requeue": int(self.conf.max_requeue)}

    def release(self, run: RunRef) -> None:
        self._batches[-1].reserved -= 1  # the claim right after launcher_info failed

    def launch(self, run: RunRef, lease: Lease) -> RunHandle:
        handle = SlurmRunHandle(run, lease, int(lease.launcher["index"]))
        self._batches[-1].handles.append(handle)
        return handle

    def flush(self) -> list[RunHandle]:
        """Submit every batch claimed since the last flush (one sbatch call per batch). A
        submission the scheduler refuses for a limit gives its runs (and the later batches')
        back, unclaimed, and holds further submissions for a while (from ``poll_s``, doubling
        up to 10 min)."""
        previous: str | None = None
        given_back: list[RunHandle] = []
        for batch in self._batches:
            if not batch.handles:  # (a batch whose only claim failed has none)
                continue
            if given_back:
                self._give_back(batch, "")
                given_back += batch.handles
                continue
            try:
                previous = self._submit(batch, previous)
            except _RefusedForNow as exc:
                self._refused(len(batch.handles), f"{exc} ({len(batch.handles)} run(s) wait)",
                              exc.limit)
                given_back += batch.handles
            else:
                self._hold_s = 0.0
        self._batches = []
        return given_back

    def _refused(self, jobs: int, reason: str, limit: bool) -> None:
        """A submission of ``jobs`` jobs (array tasks) was refused for a limit (``limit``) or a
        busy controller: hold further ones (from ``poll_s``, doubling up to 10 minutes), and
        after a limit never offer that many at once again, which a limit below it would refuse
        for ever (a busy controller takes the same number later)."""
        self._hold_s = min(max(2 * self._hold_s, float(self.conf.poll_s)), 600.0)
        self._held_until = time.monotonic() + self._hold_s
        self.hold_reason = reason
        if jobs > 1 and limit:
            self._batch_cap = jobs // 2
            self._news.append(f"SLURM refused {jobs} of the sweep's jobs at once for a limit: "
                              f"at most {self._batch_cap} per submission from now on")

    def held_s(self) -> float:
        return max(0.0, self._held_until - time.monotonic())

    def withdraw(self, handles: list[RunHandle]) -> list[RunHandle]:
        """Every array task of these runs that SLURM still queues is cancelled (``scancel
        --state=PENDING``): SLURM then says CANCELLED and the next poll ends the run
        INTERRUPTED, to run with the next launch. A task that starts meanwhile is left alone."""
        mine = [h for h in handles if isinstance(h, SlurmRunHandle) and h.code is None
                and h.job]
        if not mine:
            return []
        try:
            jobs = self._tasks()
            queued = [h for h in mine if h.job in jobs and jobs[h.job].state == "PENDING"]
            commands.scancel_pending(str(h.job) for h in queued)
        except SlurmError:
            return []  # (not reachable now: they run, as they would have)
        return list(queued)

    def _tasks(self) -> dict[str, commands.JobInfo]:
        """Every array task of this sweep that SLURM knows, by ``<job>_<index>`` (one squeue)."""
        return {j.name: j for j in commands.query(submissions.job_names(self.store.root)).values()}

    def _exclude(self) -> list[str]:
        excluded = self.bad_nodes.excluded()
        return [f"--exclude={','.join(excluded)}"] if excluded else []

    def news(self) -> list[str]:
        said, self._news, self.bad_nodes.news = [*self._news, *self.bad_nodes.news], [], []
        return said

    def _give_back(self, batch: _Batch, error: str) -> None:
        for handle in batch.handles:  # nothing runs: give every run back as it was
            unclaim(handle.run.paths, handle.lease.token)
        if error:
            batch.submission.error = error
            submissions.write(submissions.paths_of(self.store.root, batch.submission.id),
                              batch.submission)

    def _submit(self, batch: _Batch, after: str | None) -> str:
        sub = batch.submission
        sub.runs = len(batch.handles)
        paths = submissions.paths_of(self.store.root, sub.id)
        make_folders(paths.logs)
        submissions.write_tasks(paths, [(h.run.dir, h.lease.token) for h in batch.handles],
                                {"submission": sub.id, "sweep": str(self.store.root)})
        cwd = self.run_cwd()
        write_text_atomic(paths.script, render_script(
            self.conf, job_name=sub.job_name,
            array=ArraySpec(len(batch.handles), self.conf.max_parallel), paths=paths,
            cwd=cwd, python=self.conf.python or sys.executable,
            env=run_env(self.conf, self.extra_env),
            heartbeat_s=float(self.runner_conf.heartbeat_s)))
        submissions.write(paths, sub)
        extra = [f"--dependency=afterany:{after}"] if after else []
        try:
            job = commands.sbatch(paths.script, cwd, extra + self._exclude())
        except SlurmError as exc:
            self._give_back(batch, str(exc))
            if commands.refused_for_now(exc):
                raise _RefusedForNow(f"{exc}; submitted again later",
                                     commands.refused_for_a_limit(exc)) from None
            left_out = self.bad_nodes.excluded()
            why = (f"; nodes left out as bad: {', '.join(left_out)} (launcher.bad_node_after=0 "
                   "uses them again)" if left_out else "")
            raise SlurmError(f"{exc} (script: {paths.script}){why}; no run was started, the "
                             "sweep is as it was") from None
        sub.job_id = job
        submissions.write(paths, sub)
        for handle in batch.handles:
            facts = {"array_job_id": job, "job": f"{job}_{handle.index}"}
            handle.lease.launcher.update(facts)
            update_lease(handle.run.paths, handle.lease.token, launcher=facts)
        return job

    @classmethod
    def dry_run_script(cls, conf: Any, sweep_root: str, runs: int, env: dict[str, str],
                       heartbeat_s: float) -> str:
        """The script a submission of ``runs`` runs would get (``runner.dry_run=true``)."""
        paths = submissions.paths_of(sweep_root, "<submission>")
        return render_script(conf, job_name=job_name(conf.job_name or os.path.basename(
            sweep_root), "<submission>"), array=ArraySpec(runs, conf.max_parallel),
            paths=paths, cwd=os.getcwd(), python=conf.python or sys.executable,
            env=run_env(conf, env), heartbeat_s=heartbeat_s)

    def adopt(self, run: RunRef, lease: Lease) -> RunHandle | None:
        """Watch a run that an earlier runner submitted (resume re-attaches, never resubmits)."""
        if backend_of(lease) != "slurm":
            return None
        return SlurmRunHandle(run, lease, int(lease.launcher.get("index", -1)))

    # ------------------------------------------------------------ watching

    def wait(self, handles: Sequence[RunHandle], timeout: float) -> list[RunHandle]:
        mine = [h for h in handles if isinstance(h, SlurmRunHandle)]
        left = self._next_poll - time.monotonic()
        if left > 0:
            time.sleep(min(timeout, left))
            if time.monotonic() < self._next_poll:
                return []
        self._next_poll = time.monotonic() + float(self.conf.poll_s)
        self._poll(mine)
        return [h for h in mine if h.code is not None]


    def _held(self, handles: list[SlurmRunHandle]) -> list[SlurmRunHandle]:
        """Of runs whose FLAG has ended, those whose array task SLURM still holds (pending,
        running or completing). A run left INTERRUPTED whose job SLURM requeued itself
        (preemption, a lost node) has not ended here: the job's restart carries it on (a restart
        that fails ends the job, and the run with it). Under a ``queue_limit`` a run that
        ended keeps its place until its task has left the queue, so the sweep never has more
        than that many tasks queued or running, as the site's limits count them."""
        if not handles:
            return []
        try:
            jobs = self._tasks()
        except SlurmError:
            return []
        return [h for h in handles if h.job in jobs and not jobs[h.job].ended]

    def _poll(self, handles: list[SlurmRunHandle]) -> None:
        """FLAG files first (the worker records most ends), then one squeue for the rest."""
        live: list[tuple[SlurmRunHandle, Lease]] = []
        ended: list[tuple[SlurmRunHandle, FlagRecord]] = []
        for handle in handles:
            try:
                record = handle.flag.read()
            except CorruptStateError:
                handle.code = 1
                continue
            if record.state is State.RUNNING and (
                    record.data["token"] == handle.lease.token or _same_job(record, handle)):
                if record.data is not handle.lease_data:  # (a new read)
                    handle.lease = record.lease  # requeues and job ids as the node wrote them
                    handle.lease_data = record.data
                live.append((handle, handle.lease))
            else:
                ended.append((handle, record))
        limited = bool(ended) and self.queue_limit is not None
        back = set(self._held([h for h, r in ended if r.state is State.INTERRUPTED or limited]))
        for handle, record in ended:
            if handle not in back:
                handle.code = 0
                self.bad_nodes.saw(handle.run.id, record.state, record.data)
        if not live:
            return
        now = time.time()
        verdicts = judge([(h.flag.paths, lease) for h, lease in live], now)
        for (handle, lease), death in zip(live, verdicts, strict=True):
            if death is None:
                continue
            payload = death.payload(lease, {"reason": death.reason,
                                            "duration_s": now - lease.started})
            if not finish(handle.run.paths, lease.token, death.state, payload, death.details):
                # the worker recorded the end between the FLAG's read and squeue's answer (a
                # short run): its record stands, and says what happened on the node
                try:
                    record = read_state(handle.flag.paths)
                except CorruptStateError:
                    handle.code = 1
                    continue
                handle.code = 0
                self.bad_nodes.saw(handle.run.id, record.state, record.data)
                continue
            handle.code = 0 if death.state is State.INTERRUPTED else 1
            self.bad_nodes.saw(handle.run.id, death.state, payload)


def _same_job(record: FlagRecord, handle: SlurmRunHandle) -> bool:
    """Whether a run's RUNNING lease is its own job's again (a restart of that array task after
    SLURM requeued it took the run over: its lease names the task, as ``commands.job_env``
    says it)."""
    return bool(handle.job) and (record.data.get("launcher") or {}).get("job") == handle.job


def cancel_sweep(sweep_root: str | Path,
                 timeout: float = 60.0) -> tuple[list[str], list[str]]:
    """``scancel`` every queued or running job of a sweep and wait until SLURM has ended them.

    Returns the cancelled array job ids and those still not ended after ``timeout``. Running
    workers record INTERRUPTED themselves; recovery finds the queued ones' leases interrupted.
    """
    if not SweepPaths(Path(sweep_root)).slurm.is_dir():
        return [], []
    names = submissions.job_names(sweep_root)
    live = {j.array_job_id for j in commands.query(names).values() if not j.ended}
    cancelled = sorted(live)
    commands.scancel(live)
    deadline = time.monotonic() + timeout
    while live and time.monotonic() < deadline:
        time.sleep(0.5)
        live = {j.array_job_id for j in commands.query(names).values() if not j.ended}
    return cancelled, sorted(live)
