"""The launcher interface: start leased runs somewhere and tell when they end.

A launcher never decides *which* runs to start, and never writes FLAG files for a healthy run: the
scheduler claims a run (RUNNING lease) and hands it over, the worker records the outcome, and the
launcher only reports exit statuses (``RunHandle.poll``) so that the scheduler can record deaths
the worker could not. New backends subclass ``Launcher`` and ``RunHandle`` and add a dataclass
config in ``runner/config/schema.py`` plus a YAML file in ``conf/launcher/``.
"""

from __future__ import annotations

import abc
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from runner.config.schema import LauncherConf
from runner.storage.state import Lease

if TYPE_CHECKING:
    from runner.storage.store import RunRef, SweepStore


class RunHandle(abc.ABC):
    """One launched attempt of one run."""

    def __init__(self, run: RunRef, lease: Lease) -> None:
        self.run = run
        self.lease = lease

    @abc.abstractmethod
    def poll(self) -> int | None:
        """The exit status once the attempt has ended (negative: killed by that signal)."""

    @abc.abstractmethod
    def cancel(self) -> None:
        """Ask the attempt to stop (the worker records INTERRUPTED); escalate if it does not."""


class Launcher(abc.ABC):
    """Starts runs. Subclasses are built from their config section (``launcher.*``)."""

    config_class: type = LauncherConf  # the dataclass that validates ``launcher.*``
    # Ctrl-C leaves the runs running (a cluster keeps them; ``resume`` re-attaches) instead of
    # stopping them
    detach_on_interrupt = False
    claim_phase = "launching"  # the lease's phase until the worker takes it over
    requires = ""  # what ``is_available`` looks for, for the error when it is missing
    runs_here = True  # runs start on this machine (a helper process here can serve them)
    ranks = False  # starts launcher.nproc_per_run > 1 ranks per run (runner.execution.ranks)

    def __init__(self, store: SweepStore, conf: Any, runner_conf: Any) -> None:
        self.store = store
        self.conf = conf
        self.runner_conf = runner_conf
        self.extra_env: dict[str, str] = {}  # for every run (e.g. the tracker settings)
        self.preload: list[str] = []  # modules to import once for all runs, where that helps

    def run_cwd(self) -> str:
        """Where runs start: where the sweep was created; a sweep moved to another machine or
        folder runs from here instead."""
        recorded = self.store.manifest.get("cwd")
        return recorded if recorded and os.path.isdir(recorded) else os.getcwd()

    @classmethod  # noqa: B027 (optional hook)
    def check(cls, conf: Any) -> None:
        """Refuse, before anything is written, settings this machine cannot satisfy."""

    @classmethod
    def is_available(cls) -> bool:
        """False where this backend cannot work on this machine (e.g. no ``sbatch``)."""
        return True

    @property
    def max_parallel(self) -> int:
        value = getattr(self.conf, "max_parallel", None)
        return int(value) if value else (os.cpu_count() or 1)

    @property
    def proposal_slots(self) -> int:
        """How many runs a sweep's source (a study proposing trials) may have out at once: a
        trial is asked when one of them ends, not before."""
        return self.max_parallel

    def continue_elsewhere(self) -> str | None:
        """``wait=false`` while the sweep's source still has runs to propose: hand the sweep
        loop to the backend (SLURM: a job that runs it); what was done, or None."""
        return None

    def launcher_info(self, run: RunRef) -> dict[str, Any]:
        """Reserve what ``run`` will need; the facts are recorded in its lease (slot, job id)."""
        return {}

    def release(self, run: RunRef) -> None:  # noqa: B027 (optional hook)
        """Give back what ``launcher_info`` reserved when the run was not claimed after all."""

    @property
    def waits(self) -> bool:
        """False: return once the runs are handed over (a cluster runs them; fire and forget)."""
        return True

    @abc.abstractmethod
    def launch(self, run: RunRef, lease: Lease) -> RunHandle:
        """Start one leased run (or queue it for ``flush``)."""

    def flush(self) -> list[RunHandle]:
        """Start what ``launch`` queued (a batch backend submits it all in one call here).
        Returns the handles of runs it gave back instead (unclaimed, as they were: the
        scheduler refused them for now, see ``held_s``); the sweep loop starts them later."""
        return []

    def withdraw(self, handles: list[RunHandle]) -> list[RunHandle]:
        """Of runs launched but not started yet (a batch scheduler's queue), take back those it
        can now that no new run may start (the failure budget is spent): each ends
        INTERRUPTED, resumed by the next launch. The runs taken back (none here: a process
        launched here has started)."""
        return []

    def held_s(self) -> float:
        """Seconds before this launcher takes more runs (0: now), e.g. after the scheduler
        refused a submission for a limit; ``hold_reason`` says why."""
        return 0.0

    hold_reason = ""
    # a pool of the cluster's leaves when nothing is left to claim (False) instead of watching
    # the runs of other runners (True)
    watches_others = True

    @property
    def hands_over(self) -> bool:
        """Whether runs are claimed elsewhere (pools on a cluster's nodes): the sweep loop then
        claims none, keeps enough of them alive with ``hand_over`` and waits (``waits``)."""
        return False

    def hand_over(self, runnable: int, running: int) -> str:
        """Start what ``runnable`` more runs need (none are claimed here); what it did, said in
        a line (empty: nothing)."""
        return ""

    def warm_up(self) -> None:  # noqa: B027 (optional hook)
        """Start now what the first launch would start (a fork server's imports), so that it
        overlaps other start-up work."""

    @property
    def handed_over_poll_s(self) -> float:
        """Seconds between two looks at runs handed over (``hand_over``)."""
        return 5.0

    def news(self) -> list[str]:
        """What this launcher found since it was last asked that the user must be told (a node
        left out of the sweep): the sweep loop prints it and tells the notifiers."""
        return []

    def adopt(self, run: RunRef, lease: Lease) -> RunHandle | None:
        """A handle to watch a run that a runner before this one launched, if this backend can
        (a SLURM job outlives its runner); None leaves it to stale-lease recovery."""
        return None

    @abc.abstractmethod
    def wait(self, handles: Sequence[RunHandle], timeout: float) -> list[RunHandle]:
        """Block until at least one handle has ended or ``timeout``; return the ended ones."""

    def close(self) -> None:  # noqa: B027 (optional hook)
        """Release resources (called once, after the sweep loop)."""
