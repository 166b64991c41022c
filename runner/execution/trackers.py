"""Trackers mirror a run's config and metrics into an experiment tracker (WandB, ...).

They run inside the run's process, fed by ``runner.log`` (every record the task logs), and are
configured as ``tracker.<name>`` sections (``tracker=wandb``, ``tracker=[wandb,...]``). The
runner's own files stay the source of truth: a tracker is a mirror.
"""

from __future__ import annotations

import abc
import json
import os
from typing import TYPE_CHECKING, Any, Protocol

from runner.config.schema import load_target

if TYPE_CHECKING:
    from runner.execution.context import RunContext

ENV = "RUNNER_TRACKERS"  # how the launcher hands the tracker section to a run's process


class SharedService(Protocol):
    @property
    def env(self) -> dict[str, str]:
        """What each run's environment gets to find the service; waits until the service is
        up (an exception if it cannot come up)."""

    def close(self) -> None: ...


class Tracker(abc.ABC):
    config_class: type
    imports: tuple[str, ...] = ()  # heavy modules start() imports: preloaded once per sweep

    def __init__(self, conf: Any) -> None:
        self.conf = conf

    @classmethod  # noqa: B027 (optional hook)
    def check(cls, conf: Any) -> None:
        """Refuse, before anything is written, settings that cannot work (e.g. no API key)."""

    @classmethod
    def shared_service(cls, conf: Any) -> SharedService | None:
        """A helper process the sweep's runs on this machine share, started once per sweep by
        the launcher (e.g. WandB's service), or None. Runs find it through ``env``."""
        return None

    @abc.abstractmethod
    def start(self, ctx: RunContext) -> None:
        """Begin (or continue, on resume) the tracked run."""

    @abc.abstractmethod
    def log(self, record: dict[str, Any]) -> None:
        """One ``runner.log`` record: ``step``, ``time``, ``attempt`` and the metrics."""

    @abc.abstractmethod
    def finish(self, state: str, summary: dict[str, Any]) -> None:
        """End the attempt: COMPLETED (with the run's summary), CRASHED or INTERRUPTED."""


def create_trackers(section: dict[str, Any] | None) -> list[Tracker]:
    out = []
    for name, cfg in (section or {}).items():
        cls, conf = load_target(cfg, f"tracker.{name}", Tracker)
        cls.check(conf)
        out.append(cls(conf))
    return out


def preload_modules(section: dict[str, Any] | None) -> list[str]:
    """Modules the configured trackers import in every run, for the fork server to import once
    (``import wandb`` alone costs about 0.4 s per run)."""
    modules: list[str] = []
    for name, cfg in (section or {}).items():
        cls, _ = load_target(cfg, f"tracker.{name}", Tracker)
        modules += [cls.__module__, *cls.imports]
    return list(dict.fromkeys(modules))


def shared_services(section: dict[str, Any] | None) -> list[tuple[str, SharedService]]:
    """The configured trackers' shared services, started now (each may still be coming up:
    ``services_env`` waits for them). One that cannot start is left out (its runs start their
    own, as without it)."""
    services: list[tuple[str, SharedService]] = []
    for name, cfg in (section or {}).items():
        cls, conf = load_target(cfg, f"tracker.{name}", Tracker)
        try:
            service = cls.shared_service(conf)
        except Exception as exc:
            _no_service(name, exc)
            continue
        if service is not None:
            services.append((name, service))
    return services


def services_env(services: list[tuple[str, SharedService]]
                 ) -> tuple[dict[str, str], list[SharedService]]:
    """What every run's environment gets from the services once they are up, and the
    services that came up (one that did not is closed and left out)."""
    env: dict[str, str] = {}
    up = []
    for name, service in services:
        try:
            env.update(service.env)
        except Exception as exc:
            _no_service(name, exc)
            service.close()
            continue
        up.append(service)
    return env, up


def _no_service(name: str, exc: Exception) -> None:
    import sys

    print(f"runner: tracker.{name}: no shared service ({exc}); each run starts its own",
          file=sys.stderr, flush=True)


def env_value(section: dict[str, Any] | None) -> str:
    return json.dumps(section or {})


def from_env(var: str = ENV) -> list[Tracker]:
    raw = os.environ.get(var)
    return create_trackers(json.loads(raw)) if raw else []


def start_into(started: list[Tracker], ctx: RunContext, writer: Any, var: str = ENV) -> None:
    """Start the trackers handed over in ``var`` for ``ctx``, each fed by ``writer``'s records;
    each is added to ``started`` once started (so a later one's failure still finishes it)."""
    for tracker in from_env(var):
        tracker.start(ctx)
        started.append(tracker)
        writer.sinks.append(tracker.log)


def finish_all(trackers: list[Tracker], state: str, summary: dict[str, Any]) -> None:
    """A tracker is a mirror: its failure to finish is reported, never turned into the run's."""
    import sys

    from runner.config.secrets import redact

    for tracker in trackers:
        try:
            tracker.finish(state, summary)
        except Exception as exc:
            print(redact(f"runner: tracker {type(tracker).__name__} could not finish: {exc}"),
                  file=sys.stderr, flush=True)
