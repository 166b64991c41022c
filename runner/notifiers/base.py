"""Sweep events and the Notifier interface.

Events are emitted by the scheduler from the run store's state transitions (what the FLAG files
say after an attempt ended), not from try/except in the task, so a run killed by SIGKILL or the
OOM killer is reported like any other crash.
"""

from __future__ import annotations

import abc
import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runner.config.schema import NotifierConf, load_target
from runner.config.secrets import redact_obj
from runner.errors import ConfigError


@dataclass
class Event:
    sweep_dir: Path
    sweep_name: str

    @property
    def kind(self) -> str:
        return _KINDS[type(self)]


@dataclass
class SweepStarted(Event):
    total: int
    to_run: int
    counts: dict[str, int]
    to_propose: int = 0  # a study's trials not proposed yet (each when a slot frees)


@dataclass
class RunEnded(Event):
    run_id: str
    run_dir: Path
    values: dict[str, Any]
    state: str
    attempt: int
    duration_s: float | None
    summary: dict[str, Any] = field(default_factory=dict)
    reason: str = ""
    details: str = ""

    @property
    def kind(self) -> str:
        return {"COMPLETED": "run_completed", "CRASHED": "run_crashed",
                "PRUNED": "run_pruned"}.get(
            self.state, "run_interrupted")


@dataclass
class SweepProgress(Event):
    """The periodic digest (``digest_every_min``): where the sweep stands."""

    done: int
    crashed: int
    running: int
    left: int
    elapsed_s: float

    @property
    def eta_s(self) -> float | None:
        finished = self.done + self.crashed
        if not finished:
            return None
        return self.elapsed_s / finished * (self.left + self.running)


@dataclass
class SweepFinished(Event):
    counts: dict[str, int]
    duration_s: float
    interrupted: bool = False
    stopped: str = ""  # why no new run was started (a failure budget spent), if so


@dataclass
class SweepNotice(Event):
    """Something the launcher found that the user must be told (a node left out)."""

    text: str


_KINDS = {SweepStarted: "sweep_started", RunEnded: "run_ended", SweepFinished: "sweep_finished",
          SweepProgress: "sweep_progress", SweepNotice: "sweep_notice"}
EVENT_KINDS = ("sweep_started", "run_completed", "run_crashed", "run_interrupted",
               "run_pruned", "sweep_notice", "sweep_finished")


def redacted(event: Event) -> Event:
    """A copy of ``event`` whose texts hold no known secret: what every notifier receives."""
    changes = {f.name: redact_obj(getattr(event, f.name)) for f in dataclasses.fields(event)
               if isinstance(getattr(event, f.name), str | dict)}
    return dataclasses.replace(event, **changes)


class Notifier(abc.ABC):
    """Receives sweep events. ``events`` filters them (``all`` or a list of EVENT_KINDS)."""

    config_class: type = NotifierConf

    def __init__(self, conf: Any) -> None:
        self.conf = conf
        wanted = list(conf.events)
        bad = [e for e in wanted if e != "all" and e not in EVENT_KINDS]
        if bad:
            raise ConfigError(f"notifier events {bad} unknown; "
                              f"valid: all, {', '.join(EVENT_KINDS)}")
        self.events = set(EVENT_KINDS) if "all" in wanted else set(wanted)
        self._last_digest = time.monotonic()

    def maybe_digest(self, progress: SweepProgress) -> None:
        """Send a progress digest if ``digest_every_min`` has passed since the last one."""
        every = getattr(self.conf, "digest_every_min", None)
        if every and time.monotonic() - self._last_digest >= every * 60:
            self._last_digest = time.monotonic()
            self.handle(progress)

    def wants(self, event: Event) -> bool:
        return event.kind in self.events

    def notify(self, event: Event) -> None:
        if self.wants(event):
            self.handle(redacted(event))

    @abc.abstractmethod
    def handle(self, event: Event) -> None:
        """Deliver one event (never raise for a delivery problem: log it)."""

    def close(self) -> None:  # noqa: B027 (optional hook)
        """Flush pending deliveries."""


def create_notifiers(section: dict[str, Any] | None) -> list[Notifier]:
    """Build every notifier under ``notifier.<name>``."""
    out = []
    for name, cfg in (section or {}).items():
        cls, conf = load_target(cfg, f"notifier.{name}", Notifier)
        out.append(cls(conf))
    return out
