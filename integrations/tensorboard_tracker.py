"""TensorBoard event files for every run: one log directory per sweep, one subfolder per run.

``tracker=tensorboard`` writes ``<sweep>/tensorboard/<run directory>/events.out.tfevents.*`` (or
under ``tracker.tensorboard.log_dir``) with every numeric metric the task logs through
``runner.log``, at its step, and the run's resolved config as text; ``tensorboard --logdir
<sweep>/tensorboard`` then shows the whole sweep. tensorboardX is imported only in the run's
process, only when this tracker is used.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runner.execution.trackers import Tracker


@dataclass
class TensorboardTrackerConf:
    _target_: str = "runner.integrations.tensorboard_tracker.TensorboardTracker"
    log_dir: str | None = None  # default: <sweep>/tensorboard
    flush_secs: float = field(default=10.0, metadata={"min": 0.0})


class TensorboardTracker(Tracker):
    config_class = TensorboardTrackerConf
    imports = ("tensorboardX",)

    def start(self, ctx: Any) -> None:
        from omegaconf import OmegaConf
        from tensorboardX import SummaryWriter

        root = Path(self.conf.log_dir) if self.conf.log_dir else ctx.sweep_dir / "tensorboard"
        self.log_dir = root / ctx.run_dir.name
        self.writer = SummaryWriter(logdir=str(self.log_dir), flush_secs=self.conf.flush_secs)
        if ctx.attempt == 1:
            self.writer.add_text("config", "```\n" + OmegaConf.to_yaml(ctx.config) + "```", 0)

    def log(self, record: dict[str, Any]) -> None:
        step = int(record["step"])
        for key, value in record.items():
            if key in ("step", "time", "attempt"):
                continue
            if isinstance(value, int | float) and not isinstance(value, bool):
                self.writer.add_scalar(key, value, step, walltime=record.get("time"))

    def finish(self, state: str, summary: dict[str, Any]) -> None:
        lines = [f"state: {state}", *(f"{k}: {v}" for k, v in summary.items())]
        self.writer.add_text("summary", "\n\n".join(lines), 0)
        self.writer.close()
