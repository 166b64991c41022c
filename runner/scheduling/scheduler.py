"""The sweep loop: recover dead runs, claim runnable ones, launch, watch, report.

Resuming is the same loop as the first launch: whatever is UNHATCHED or INTERRUPTED (and CRASHED
with ``runner.retry_crashed``) is launched, anything COMPLETED is left alone, and a run another
live runner process holds is skipped. Every run is claimed atomically right before it is
launched, so two runners working on one sweep never run the same run twice.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from runner.config import secrets
from runner.config.schema import RunnerConf, validate
from runner.errors import ConfigError, CorruptStateError, LaunchError, StateError
from runner.execution import ranks, trackers
from runner.execution.tasks import load_task
from runner.execution.worker import ENTRY_ENV, HOOKS_ENV, execute, reconcile
from runner.launchers import RunHandle, create_launcher, launcher_config
from runner.notifiers.base import (
    Notifier,
    RunEnded,
    SweepFinished,
    SweepNotice,
    SweepProgress,
    SweepStarted,
    create_notifiers,
)
from runner.results.status import (
    CORRUPT,
    LiveScan,
    RunStatus,
    counts,
    long_lived,
    read_run,
    scan,
)
from runner.storage.failures import check_classes, classify
from runner.storage.recovery import recover
from runner.storage.state import State, claim
from runner.storage.store import RunRef, SweepStore

FAILURE_RATE_AFTER = 10  # ended runs before runner.max_failure_rate is judged


class RunWatch(Protocol):
    """Told of each run that one invocation starts (or adopts) and of its end."""

    def started(self, run: RunRef) -> None: ...

    def ended(self, run: RunRef) -> None: ...


@dataclass
class SweepResult:
    counts: dict[str, int]
    interrupted: bool = False
    corrupt: list[str] = field(default_factory=list)
    running_elsewhere: int = 0
    detached: bool = False  # handed over to a cluster without waiting (launcher.wait=false)
    launched: int = 0  # runs this invocation started (re-attached ones not counted)
    stopped: str = ""  # why no new run was started (the failure budget), if so
    full_disk: bool = False  # ... because the disk had less than runner.min_free_gb free

    @property
    def exit_code(self) -> int:
        if self.interrupted:
            return 130
        if self.detached:
            return 0
        finished = (self.counts.get("COMPLETED", 0) + self.counts.get("PRUNED", 0)
                    == sum(self.counts.values()))
        return 0 if finished else 1


def confined_to_run(exc: OSError) -> bool:
    """An OSError that concerns one run's files (permission, a file or folder gone), not the
    whole sweep (disk full, read-only file system)."""
    import errno

    return exc.errno in (errno.EACCES, errno.EPERM, errno.ENOENT, errno.ENOTDIR, errno.EISDIR)


def _describe(exc: OSError, ref: RunRef) -> str:
    from runner.errors import EnvironmentFault, describe_os_error

    return str(exc) if isinstance(exc, EnvironmentFault) else describe_os_error(
        exc, exc.filename or ref.dir, "using")


def check_execution(execution: dict[str, Any],
                    sources: dict[str, str] | None = None) -> RunnerConf:
    """Validate the runner, launcher, notifier and tracker sections; raises ConfigError naming
    the key (and, given ``sources``, the config file the section came from)."""
    def checked(section: str, check: Any) -> Any:
        try:
            return check(execution.get(section))
        except ConfigError as exc:
            where = (sources or {}).get(section)
            if where and where not in str(exc):
                raise ConfigError(f"{exc} ({section} config: {where})") from None
            raise

    runner_conf = checked("runner", lambda c: validate(c, RunnerConf, "runner"))
    checked("runner", lambda _: check_classes(list(runner_conf.retry_on)))
    _, launcher = checked("launcher", lambda c: launcher_config(c or {}))
    checked("launcher", lambda _: ranks.check(int(launcher.nproc_per_run), execution))
    checked("notifier", create_notifiers)
    checked("tracker", trackers.create_trackers)
    return runner_conf


def launchable(retry_crashed: bool) -> frozenset[State]:
    states = {State.UNHATCHED, State.INTERRUPTED}
    if retry_crashed:
        states.add(State.CRASHED)
    return frozenset(states)


def prepare(store: SweepStore, runner_conf: RunnerConf, console: Console,
            report_corrupt: bool = True, live: LiveScan | None = None) -> list[RunStatus]:
    """Scan the sweep, turn dead RUNNING leases into INTERRUPTED, report corrupt runs.
    ``live``: a loop's LiveScan of the sweep (each poll then reads the runs not ended only)."""
    look = live.rows if live is not None else (lambda: scan(store))
    rows = look()
    dead = [(r.ref.paths, r.lease) for r in rows if r.state == "RUNNING"]
    if dead and recover(dead, runner_conf.stale_after_s):
        rows = look()
    for row in rows if report_corrupt else []:
        if row.state == CORRUPT:
            console.print(f"[magenta]skipping run {row.ref.id}[/]: {row.error}")
    return rows


class _Interrupts:
    """SIGTERM and SIGINT stop the sweep loop (KeyboardInterrupt), except while runs are being
    claimed and launched: there the first one waits until the batch is launched or given back,
    so no claim is left without its launch (a SLURM submission cut off mid-sbatch leaves runs
    that recovery only finds interrupted a minute later, and they run again); a second one
    stops at once."""

    def __init__(self) -> None:
        self.deferring = False
        self.waiting = False

    def handler(self, signum: int, frame: Any) -> None:
        if self.deferring and not self.waiting:
            self.waiting = True
            return
        raise KeyboardInterrupt

    @contextmanager
    def installed(self) -> Iterator[None]:
        previous = {sig: signal.signal(sig, self.handler)
                    for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    @contextmanager
    def deferred(self) -> Iterator[None]:
        self.deferring = True
        try:
            yield
        finally:
            self.deferring = False
        if self.waiting:
            self.waiting = False
            raise KeyboardInterrupt


class _Display:
    """Live progress (done / running / crashed / left, ETA) when on a terminal."""

    def __init__(self, console: Console, total: int, enabled: bool) -> None:
        self.progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(),
            TextColumn("{task.completed}/{task.total}"), TextColumn("{task.fields[states]}"),
            TimeElapsedColumn(), TimeRemainingColumn(),
            console=console, disable=not (enabled and console.is_terminal), transient=False)
        self.task = self.progress.add_task("runs", total=total, states="")

    def add(self, more: int) -> None:
        if more:
            total = self.progress.tasks[0].total or 0
            self.progress.update(self.task, total=total + more)

    def update(self, done: int, running: int, crashed: int, left: int) -> None:
        self.progress.update(self.task, completed=done,
                             states=f"running {running} · crashed {crashed} · left {left}")


class _SweepLoop:
    """One invocation's work on a sweep: what it launches, watches and tallies."""

    def __init__(self, store: SweepStore, execution: dict[str, Any], console: Console,
                 only: set[str] | None = None, watch: RunWatch | None = None) -> None:
        self.store, self.console = store, console
        self.watch = watch
        self.runner_conf = validate(execution.get("runner"), RunnerConf, "runner")
        secrets.add_env_names(self.runner_conf.secret_env)  # known to every process from here
        # the launcher first: one that forks this process does so before any thread starts
        self.launcher = create_launcher(store, execution.get("launcher") or {}, self.runner_conf)
        self.notifiers = create_notifiers(execution.get("notifier"))
        self.launcher.extra_env[trackers.ENV] = trackers.env_value(execution.get("tracker"))
        if store.manifest.get("entry"):
            self.launcher.extra_env[ENTRY_ENV] = str(store.manifest["entry"])
        if store.manifest.get("run_hooks"):
            self.launcher.extra_env[HOOKS_ENV] = ",".join(store.manifest["run_hooks"])
        # where more runs come from while the sweep runs (a study's next trial), if anywhere
        self.source = (load_task(str(store.manifest["source"]))(store)
                       if store.manifest.get("source") and only is None else None)
        self.proposed = 0
        self.live = LiveScan(store)  # (what each poll reads: the runs not ended)
        self.only = only  # launch these runs only (e.g. one batch of a Hydra sweeper)
        # imported once by the fork server: the run hooks' modules (a study's judge, and
        # optuna with it) and, unless turned off, what the trackers import
        preload_trackers = self.runner_conf.preload_trackers
        self.launcher.preload = [
            *(str(h).partition(":")[0] for h in store.manifest.get("run_hooks") or []),
            *(trackers.preload_modules(execution.get("tracker")) if preload_trackers else [])]
        # e.g. one WandB service for every run of the sweep on this machine; the launcher
        # starts its fork server (which imports the trackers) while the services come up
        started = (trackers.shared_services(execution.get("tracker"))
                   if preload_trackers and self.launcher.runs_here else [])
        if started:
            self.launcher.warm_up()
        env, self.services = trackers.services_env(started)
        self.launcher.extra_env.update(env)
        self.allowed = launchable(self.runner_conf.retry_crashed)
        self.allowed_names = {s.value for s in self.allowed}
        self.name = str(store.manifest.get("name"))
        self.pending: list[RunRef] = []
        self.active: list[RunHandle] = []
        self.tried: set[str] = set()  # at most one attempt per run per invocation
        self.tally = {"done": 0, "crashed": 0, "ended": 0}
        self.stopped = ""  # the failure budget spent: why no new run starts
        self.detached = False  # handed over to a cluster without waiting (launcher.wait=false)
        self.full_disk = False  # ... spent on disk space (runner.min_free_gb), not on crashes
        self.retrying: dict[str, int] = {}  # run id -> retries this launch gave it
        launches = store.manifest.get("launches") or [{}]  # this launch's code, in each lease
        code = (launches[-1].get("code") or {}).get("id")
        self.code = {"code": code} if code else {}
        # runner.on_code_change=rerun: a COMPLETED run whose code is not this launch's runs again
        self.rerun_code = code if self.runner_conf.on_code_change == "rerun" and code else None
        if self.rerun_code:
            self.allowed = self.allowed | {State.COMPLETED}
        self.started = time.time()

    def begin(self) -> int:
        """Recover, find what to launch, adopt what a runner before us launched; returns how
        many runs another live runner holds."""
        rows = self._ours(prepare(self.store, self.runner_conf, self.console))
        self.pending = [r.ref for r in rows if self._runnable(r)]
        self.active = [h for h in (self.launcher.adopt(r.ref, r.lease) for r in rows
                                   if r.state == "RUNNING") if h is not None]
        if self.watch is not None:
            for handle in self.active:
                self.watch.started(handle.run)
        elsewhere = sum(1 for r in rows if r.state == "RUNNING") - len(self.active)
        to_propose = self.source.remaining() if self.source is not None else 0
        _emit(self.notifiers, SweepStarted(self.store.root, self.name, len(rows),
                                           len(self.pending), counts(rows), to_propose))
        if self.active:
            self.console.print(f"re-attached to {len(self.active)} run(s) launched before "
                               "(not launched again)")
        if elsewhere and self.launcher.watches_others:
            self.console.print(f"{elsewhere} run(s) are RUNNING in another live runner "
                               "process: waiting for them")
        return elsewhere

    def _propose(self) -> bool:
        """One more run from the source into ``pending`` (False: none, or no source)."""
        if self.source is None:
            return False
        ref = self.source.propose()
        if ref is False:  # not yet: it waits for runs still running
            return False
        if ref is None:
            said = getattr(self.source, "stopped", None)
            if said:
                self.console.print(f"[bold]the study stops proposing[/]: {said}")
            self.source = None  # exhausted: not asked again in this invocation
            return False
        self.pending.append(ref)
        self.proposed += 1
        return True

    def _ours(self, rows: list[RunStatus]) -> list[RunStatus]:
        return rows if self.only is None else [r for r in rows if r.ref.id in self.only]

    def _runnable(self, row: RunStatus) -> bool:
        if row.state in self.allowed_names:
            return True
        if row.state == "COMPLETED" and self.rerun_code and row.record is not None:
            ran = (row.record.data.get("launcher") or {}).get("code")
            return ran is not None and ran != self.rerun_code
        return False

    def budget_spent(self) -> str:
        """Why no new run may start (``runner.max_failures``, ``runner.failure_streak``,
        ``runner.min_free_gb``)."""
        conf, crashed = self.runner_conf, self.tally["crashed"]
        if conf.min_free_gb is not None:
            free = shutil.disk_usage(self.store.root).free / 1e9
            if free < conf.min_free_gb:
                self.full_disk = True
                return (f"{free:.2f} GB free on the disk of {self.store.root.parent}, under "
                        f"runner.min_free_gb={conf.min_free_gb:g}")
        if conf.max_failures is not None and crashed >= conf.max_failures:
            return (f"{crashed} runs crashed in this launch (runner.max_failures="
                    f"{conf.max_failures})")
        ended = self.tally["ended"]
        if conf.max_failure_rate is not None and ended >= FAILURE_RATE_AFTER and \
                crashed > conf.max_failure_rate * ended:
            return (f"{crashed} of the {ended} runs that ended in this launch crashed "
                    f"({100 * crashed / ended:.0f}%, over runner.max_failure_rate="
                    f"{conf.max_failure_rate:g})")
        if conf.failure_streak is not None and not self.tally["done"] and \
                crashed >= conf.failure_streak:
            return (f"the first {crashed} runs to end all crashed (runner.failure_streak="
                    f"{conf.failure_streak})")
        return ""

    def launch_pending(self) -> None:
        """Claim and launch runs while the launcher has room; every run claimed right before
        its launch, so two runners never launch the same run. Nothing new starts once the
        failure budget is spent."""
        launcher = self.launcher
        if not self.stopped:
            self.stopped = self.budget_spent()
            if self.stopped:
                withdrawn = launcher.withdraw(self.active)  # (a cluster's queued runs)
                back = (f"{len(withdrawn)} queued run(s) taken back from the cluster's queue "
                        f"(they run with the next launch), " if withdrawn else "")
                self.console.print(f"[red]no new run starts[/]: {self.stopped}; {back}the "
                                   f"{len(self.active) - len(withdrawn)} running end first")
        while len(self.active) < launcher.max_parallel and not self.stopped \
                and not launcher.held_s():
            if not self.pending and (len(self.active) >= launcher.proposal_slots
                                     or not self._propose()):
                break
            ref = self.pending.pop(0)
            self.tried.add(ref.id)
            try:
                allowed = (self.allowed | {State.CRASHED} if ref.id in self.retrying
                           else self.allowed)
                lease = claim(ref.paths, allowed, {**launcher.launcher_info(ref),
                                                        **self.code}, launcher.claim_phase)
            except CorruptStateError as exc:  # skip it, touch nothing, go on
                launcher.release(ref)
                self.console.print(f"[magenta]skipping run {ref.id}[/]: {exc}")
                continue
            except OSError as exc:
                launcher.release(ref)
                if not confined_to_run(exc):
                    raise  # disk full, read-only: the whole sweep must stop (it says why)
                self.console.print(f"[magenta]skipping run {ref.id}[/]: {_describe(exc, ref)}"
                                   "; the other runs go on")
                continue
            if lease is None:
                launcher.release(ref)  # another runner claimed it first
            else:
                self.active.append(launcher.launch(ref, lease))
                if self.watch is not None:
                    self.watch.started(ref)
        given_back = launcher.flush()
        for handle in given_back:  # refused for now (e.g. a queue limit): they go again later
            self.active.remove(handle)
            self.tried.discard(handle.run.id)
            if self.watch is not None:
                self.watch.ended(handle.run)
        if given_back:
            self.pending[:0] = [h.run for h in given_back]
            self.console.print(f"[yellow]not submitted now[/]: {escape(launcher.hold_reason)}; "
                               f"next try in {launcher.held_s():.0f}s")

    def show_progress(self, display: _Display) -> None:
        display.add(self.proposed)
        self.proposed = 0
        display.update(self.tally["done"], len(self.active), self.tally["crashed"],
                       len(self.pending))
        progress = SweepProgress(self.store.root, self.name, self.tally["done"],
                                 self.tally["crashed"], len(self.active), len(self.pending),
                                 time.time() - self.started)
        for notifier in self.notifiers:
            notifier.maybe_digest(progress)

    def tell_news(self) -> None:
        """What the launcher found that the user must know (a node left out of the sweep):
        printed here and sent to the notifiers."""
        for text in self.launcher.news():
            self.console.print(f"[yellow]notice[/]: {escape(text)}")
            _emit(self.notifiers, SweepNotice(self.store.root, self.name, text))

    def collect_ended(self) -> None:
        for handle in self.launcher.wait(self.active, timeout=1.0):
            self.active.remove(handle)
            if self.watch is not None:
                self.watch.ended(handle.run)
            try:
                row = _ended(self.store, handle, self.notifiers, self.tally)
            except OSError as exc:  # e.g. its directory was deleted while it ran
                if not confined_to_run(exc):
                    raise
                self.console.print(f"[magenta]run {handle.run.id}[/]: "
                                   f"{_describe(exc, handle.run)}; the other runs go on")
                continue
            self._maybe_retry(row)

    def _maybe_retry(self, row: RunStatus) -> None:
        """A crashed run whose failure is of a class ``runner.retry_on`` names runs again, up
        to ``runner.retries`` times in one launch (every attempt kept under attempts/)."""
        conf = self.runner_conf
        if row.state != "CRASHED" or not conf.retries or row.record is None:
            return
        kind = classify(row.record.data)
        done = self.retrying.get(row.ref.id, 0)
        if kind in conf.retry_on and done < conf.retries:
            self.console.print(f"retrying run {row.ref.id} ({kind} failure, retry {done + 1} "
                               f"of {conf.retries}): {row.reason}")
            self.retrying[row.ref.id] = done + 1
            self.pending.append(row.ref)

    def watch_others(self, display: _Display) -> bool:
        """Nothing of ours runs. Another runner may still hold runs of this sweep: watch them,
        and take over any that its death leaves INTERRUPTED. False once nothing is left."""
        rows = self._ours(prepare(self.store, self.runner_conf, self.console,
                                  report_corrupt=False, live=self.live))
        self.pending = [r.ref for r in rows if self._runnable(r) and r.ref.id not in self.tried]
        display.add(len(self.pending))
        if not self.pending and not any(r.state == "RUNNING" for r in rows):
            return False
        if not self.pending:
            time.sleep(max(1.0, len(rows) / 20000))
        return True

    def hand_over(self, display: _Display) -> bool:
        """Runs claimed elsewhere (pools on a cluster): keep enough of them alive for what is
        left, and wait while the launcher waits. False once nothing is left (or it does not
        wait)."""
        self.store.refresh()  # (the pools add a study's trials)
        rows = self._ours(prepare(self.store, self.runner_conf, self.console,
                                  report_corrupt=False, live=self.live))
        runnable = [r.ref.id for r in rows if self._runnable(r)]
        tally = counts(rows)
        running = tally["RUNNING"]
        self.tried.update(runnable, (r.ref.id for r in rows if r.state == "RUNNING"))
        left = len(runnable) + (self.source.remaining() if self.source is not None else 0)
        said = self.launcher.hand_over(left, running)
        if said:
            self.console.print(said)
        if not self.launcher.waits or not (left or running):
            return False
        display.update(tally["COMPLETED"], running, tally["CRASHED"], left)
        self.tell_news()
        time.sleep(self.launcher.handed_over_poll_s)
        return True

    def wait_handed_over(self, display: _Display) -> None:
        """The sweep loop when pools of the cluster claim the runs."""
        while self.hand_over(display):
            pass
        if not self.launcher.waits:
            self.detached = True
            self.console.print(f"handed the sweep over (launcher.wait=false); `python -m "
                               f"runner status {self.store.root}` follows it")

    def run_here(self, display: _Display, interrupts: _Interrupts) -> None:
        """The sweep loop when this process claims and launches the runs."""
        launcher, root = self.launcher, self.store.root
        while True:
            with interrupts.deferred():
                self.launch_pending()
            if not launcher.waits:
                self.detached = True
                self.console.print(f"handed {len(self.active)} run(s) over (launcher.wait="
                                   f"false); `python -m runner status {root}` follows them")
                left = len(self.pending) + (self.source.remaining()
                                            if self.source is not None else 0)
                if left:  # (a study's next trials, or runs held back by max_queued)
                    said = launcher.continue_elsewhere()
                    self.console.print(said or f"{left} run(s) are still to be submitted: "
                                       f"`python -m runner resume {root}` submits them")
                return
            self.show_progress(display)
            if self.active:
                self.collect_ended()
                self.tell_news()
            elif self.pending and launcher.held_s() and not self.stopped:
                time.sleep(min(1.0, launcher.held_s()))  # (the launcher asked to wait)
            elif self.stopped or not launcher.watches_others or not self.watch_others(display):
                return

    def interrupt(self) -> None:
        root = self.store.root
        if self.launcher.detach_on_interrupt:
            self.console.print(f"[yellow]interrupted[/]: {len(self.active)} run(s) stay with "
                               f"the cluster; `python -m runner resume {root}` re-attaches, "
                               f"`python -m runner cancel {root}` stops them")
        else:
            _stop_all(self.store, self.active, self.notifiers, self.tally, self.console)

    def close_notifiers(self) -> None:
        for notifier in self.notifiers:
            notifier.close()

    def finish(self, interrupted: bool, elsewhere: int, detached: bool) -> SweepResult:
        final = scan(self.store)  # parsed, not only listed: a corrupt FLAG is counted as such
        result = SweepResult(counts(final), interrupted,
                             [r.ref.id for r in final if r.state == CORRUPT], elsewhere,
                             detached, len(self.tried), self.stopped, self.full_disk)
        _emit(self.notifiers, SweepFinished(self.store.root, self.name, result.counts,
                                            time.time() - self.started, interrupted,
                                            self.stopped))
        self.close_notifiers()
        return result


def run_sweep(store: SweepStore, execution: dict[str, Any], console: Console | None = None,
              only: set[str] | None = None, watch: RunWatch | None = None) -> SweepResult:
    """Launch what is left of the sweep (of the runs in ``only``, if given) and watch it end;
    ``watch`` is told of each run this process starts or adopts and of its end."""
    console = console or secrets.console(stderr=True, highlight=False)
    # what exists now (the manifest, a Hydra sweep's composed configs: half a million objects
    # for 500 jobs) lives as long as the sweep: no full collection of this loop (nor of a run
    # forked from it) walks it again and again
    with long_lived():
        return _run_sweep(store, execution, console, only, watch)


def _run_sweep(store: SweepStore, execution: dict[str, Any], console: Console,
               only: set[str] | None, watch: RunWatch | None) -> SweepResult:
    loop = _SweepLoop(store, execution, console, only, watch)
    elsewhere = loop.begin()
    interrupted = False
    display = _Display(console, len(loop.pending) + len(loop.active),
                       loop.runner_conf.progress)
    try:
        interrupts = _Interrupts()
        with interrupts.installed(), display.progress:
            if loop.launcher.hands_over:  # (pools of the cluster claim the runs)
                loop.wait_handed_over(display)
            else:
                loop.run_here(display, interrupts)
    except KeyboardInterrupt:
        interrupted = True
        loop.interrupt()
    except BaseException:
        loop.close_notifiers()
        raise
    finally:
        loop.launcher.close()
        for service in loop.services:
            service.close()
    return loop.finish(interrupted, elsewhere, loop.detached)


def _stop_all(store: SweepStore, active: list[RunHandle], notifiers: list[Notifier],
              tally: dict[str, int], console: Console) -> None:
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # cleanup is bounded; finish it
    try:
        console.print(f"[yellow]interrupted[/]: stopping {len(active)} running run(s); they "
                      "stay resumable")
        gone: LaunchError | None = None
        for handle in active:
            try:
                handle.cancel()
            except LaunchError as exc:  # the fork server was stopped too (a job's SIGTERM
                gone = exc              # reaches every process): its runs ended with it
        for handle in active:
            try:
                _ended(store, handle, notifiers, tally)
            except LaunchError as exc:
                gone = exc
        if gone is not None:
            console.print(f"[yellow]{escape(str(gone))}[/]")
    finally:
        signal.signal(signal.SIGINT, previous)


def _ended(store: SweepStore, handle: RunHandle, notifiers: list[Notifier],
           tally: dict[str, int]) -> RunStatus:
    reconcile(handle.run.paths, handle.lease, handle.poll())
    row = read_run(handle.run)
    tally["ended"] += row.state in ("COMPLETED", "CRASHED", "PRUNED")
    if row.state == "COMPLETED":
        tally["done"] += 1
    elif row.state == "CRASHED":
        tally["crashed"] += 1
    details = row.record.data.get("details", "") if row.record else ""
    _emit(notifiers, RunEnded(
        store.root, str(store.manifest.get("name")), row.ref.id, row.ref.paths.root,
        row.ref.values, row.state, row.record.attempt if row.record else 0,
        row.duration(time.time()), row.summary, row.reason, details))
    return row


def _emit(notifiers: list[Notifier], event: Any) -> None:
    for notifier in notifiers:
        notifier.notify(event)


def debug_run(store: SweepStore, execution: dict[str, Any], which: Any,
              console: Console) -> int:
    """Run one run inside this process, so breakpoint() and pdb work. Returns its exit code."""
    runner_conf = validate(execution.get("runner"), RunnerConf, "runner")
    secrets.add_env_names(runner_conf.secret_env)
    rows = prepare(store, runner_conf, console)
    every = frozenset(s for s in State if s is not State.RUNNING)
    candidates = [r.ref for r in rows if r.state in {s.value for s in launchable(True)}]
    if which in (True, "true", "first"):
        if not candidates:
            raise StateError("runner.debug: no run left to run (all COMPLETED or RUNNING)")
        ref: RunRef = candidates[0]
    elif which == "random":
        if not candidates:
            raise StateError("runner.debug: no run left to run (all COMPLETED or RUNNING)")
        ref = random.choice(candidates)
    else:
        ref = store.find(str(which))
    lease = claim(ref.paths, every, {"debug": True})
    if lease is None:
        raise StateError(f"runner.debug: run {ref.id} is RUNNING elsewhere")
    os.environ[trackers.ENV] = trackers.env_value(execution.get("tracker"))
    console.print(f"[bold]debug[/]: running {ref.id} {ref.values} in this process "
                  f"({ref.paths.root})")
    code = execute(ref.paths, lease.token, heartbeat_s=runner_conf.heartbeat_s,
                   install_signals=False)
    row = read_run(ref)
    console.print(f"{ref.id}: {row.state} {row.reason or row.summary}")
    return code
