"""Sweep events on the terminal (rich)."""

from __future__ import annotations

from typing import Any

from rich.console import Console

from runner.config import secrets
from runner.notifiers.base import (
    Event,
    Notifier,
    RunEnded,
    SweepFinished,
    SweepProgress,
    SweepStarted,
)


def format_values(values: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in values.items()) or "(no swept values)"


class ConsoleNotifier(Notifier):
    def __init__(self, conf: Any, console: Console | None = None) -> None:
        super().__init__(conf)
        self.console = console or secrets.console(stderr=True, highlight=False, soft_wrap=True)

    def handle(self, event: Event) -> None:
        c = self.console
        if isinstance(event, SweepStarted):
            more = (f", and {event.to_propose} trial(s) to propose as slots free"
                    if event.to_propose else "")
            c.print(f"[bold]sweep[/] {event.sweep_name}: {event.to_run} of {event.total} runs to "
                    f"launch ({_counts(event.counts)}){more} in {event.sweep_dir}")
        elif isinstance(event, RunEnded):
            style = {"COMPLETED": "green", "CRASHED": "red"}.get(event.state, "yellow")
            c.print(f"[{style}]{event.state}[/] {event.run_id} {format_values(event.values)}"
                    + (f": {event.reason}" if event.reason else ""))
            if event.state == "CRASHED":
                c.print(f"  log: {event.run_dir / 'stderr.log'}")
        elif isinstance(event, SweepProgress):
            eta = f", about {event.eta_s:.0f}s left" if event.eta_s is not None else ""
            c.print(f"progress: {event.done} done, {event.crashed} crashed, {event.running} "
                    f"running, {event.left} waiting ({event.elapsed_s:.0f}s{eta})")
        elif isinstance(event, SweepFinished):
            verb = "interrupted" if event.interrupted else "stopped" if event.stopped else \
                "finished"
            c.print(f"[bold]sweep {verb}[/] in {event.duration_s:.1f}s: {_counts(event.counts)}"
                    + (f" ({event.stopped})" if event.stopped else ""))


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{n} {state.lower()}" for state, n in counts.items() if n) or "no runs"
