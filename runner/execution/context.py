"""What a task sees of runner while it runs: ``runner.log()`` and ``runner.current_run()``.

A task is a plain callable ``fn(cfg)``. Inside a run it may call::

    import runner
    runner.log({"loss": 0.3, "val": {"acc": 0.9}}, step=10)   # metrics.jsonl + progress.csv
    ctx = runner.current_run()
    ckpt = ctx.checkpoint_dir / "model.pt"                    # found again on resume
    if ctx.resumed and ckpt.exists(): ...
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runner.errors import RunnerError
from runner.storage.metrics import MetricsWriter
from runner.storage.paths import RunPaths


@dataclass
class RunContext:
    """The run being executed in this process."""

    run_id: str
    paths: RunPaths
    attempt: int
    config: Any
    writer: MetricsWriter
    info: dict[str, Any] = field(default_factory=dict)
    lease_token: str = field(default="", repr=False)  # (the run's lease: its ranks sign in)

    @property
    def run_dir(self) -> Path:
        return self.paths.root

    @property
    def sweep_dir(self) -> Path:
        return self.paths.root.parent.parent

    @property
    def checkpoint_dir(self) -> Path:
        """A directory that survives resumes: save checkpoints here."""
        self.paths.checkpoints.mkdir(mode=0o755, exist_ok=True)  # (nobody else's to replace)
        return self.paths.checkpoints

    @property
    def resumed(self) -> bool:
        """True when an earlier attempt of this run started (its checkpoints may exist)."""
        return self.attempt > 1

    @property
    def rank(self) -> int:
        """This process's rank in the run (0 unless launcher.nproc_per_run > 1)."""
        return int(self.info.get("rank", 0))

    @property
    def local_rank(self) -> int:
        return int(self.info.get("local_rank", 0))

    @property
    def world_size(self) -> int:
        """The run's number of ranks (launcher.nproc_per_run x nodes)."""
        return int(self.info.get("world_size", 1))

    def log(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        self.writer.log(metrics, step)


_current: RunContext | None = None


def current_run() -> RunContext:
    if _current is None:
        raise RunnerError("runner.current_run() was called outside a run: start the task "
                          "through `python -m runner`, or call runner.log() only inside it")
    return _current


def log(metrics: Mapping[str, Any], step: int | None = None) -> None:
    """Record metrics of the current run at ``step`` (default: previous step + 1)."""
    current_run().log(metrics, step)


def _set_current(ctx: RunContext | None) -> None:
    global _current
    _current = ctx
