"""Sweeps started from chat: overrides checked before anything starts, then a subprocess.

Text from chat is split like a command line (``shlex``, no shell ever runs it) and parsed with
Hydra's override grammar; the whole sweep is then composed and validated exactly as
``python -m runner`` would, so a typo comes back as the same clear error and nothing starts.
Overrides that could run arbitrary code or write elsewhere are refused, and so is anything that
looks like a token or key: those never travel through chat.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from runner.errors import ConfigError
from runner.secrets import redact

# settings that run code or shell lines of the caller's choosing, or write outside outputs/
FORBIDDEN = ("task.fn", "hydra", "runner.output_dir", "runner.preload", "launcher.python",
             "launcher.setup", "launcher.sbatch_extra", "launcher._target_", "notifier",
             "tracker")
_SECRETISH = re.compile(r"token|secret|passw|api_?key|webhook|(^|[._])key($|[._])", re.I)
_COMPOSE_LOCK = threading.Lock()  # Hydra's global state: one composition at a time


def parse_chat_overrides(text: str) -> list[str]:
    """Overrides from a chat message, checked; raises ConfigError naming what is refused."""
    from runner.compose import parse_overrides

    if redact(text) != text:
        raise ConfigError("that text contains a secret this host knows: tokens and keys are "
                          "never accepted in chat (the message was not stored)")
    try:
        args = shlex.split(text)
    except ValueError as exc:
        raise ConfigError(f"cannot split the overrides: {exc}") from None
    if not args:
        raise ConfigError("no overrides given, e.g. `+sweep=grid task.lr=0.1,0.01`")
    options = [a for a in args if a.startswith("-")]
    if options:
        raise ConfigError(f"options are not taken from chat: {', '.join(options)}")
    for override in parse_overrides(args):
        key = override.key_or_group.lstrip("+~")
        if any(key == f or key.startswith(f + ".") or key.startswith(f + "/")
               for f in FORBIDDEN):
            raise ConfigError(f"'{key}' cannot be set from chat (it could run code or write "
                              "elsewhere); set it in the config files instead")
        if _SECRETISH.search(key):
            raise ConfigError(f"'{key}' looks like a token or key: those are never accepted in "
                              "chat; the host reads them from its environment or a file")
    return args


@dataclass
class Launched:
    name: str
    runs: int
    proc: subprocess.Popen[bytes]
    log: Path
    started: float
    by: int


class Launches:
    """Sweeps this bot started, each ``python -m runner ...`` in its own process group."""

    def __init__(self, workdir: Path, log_dir: Path, max_running: int) -> None:
        self.workdir, self.log_dir, self.max_running = workdir, log_dir, max_running
        self.items: list[Launched] = []

    def running(self) -> list[Launched]:
        return [item for item in self.items if item.proc.poll() is None]

    def plan(self, args: list[str]) -> object:
        """Compose and validate the sweep (no file written); raises ConfigError/SweepError."""
        from runner.compose import composer
        from runner.scheduler import check_execution
        from runner.sweep import expand
        from runner.tasks import check_task

        conf_dir = self.workdir / "conf"
        # (the bot's own paths are absolute: changing directory here is safe)
        with _COMPOSE_LOCK, contextlib.chdir(self.workdir), composer(
                conf_dir if conf_dir.is_dir() else None) as comp:
            plan = expand(comp, args)
        check_execution(plan.execution)
        for fn in sorted({str(r.config.get("task", {}).get("fn")) for r in plan.runs}):
            check_task(fn)
        return plan

    def start(self, argv: list[str], name: str, runs: int, user_id: int) -> Launched:
        if len(self.running()) >= self.max_running:
            raise ConfigError(f"{self.max_running} sweeps started from chat are still running "
                              "(bot.max_launches); wait for one to finish")
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = self.log_dir / f"{time.strftime('%Y%m%d-%H%M%S')}-{name[:60]}.log"
        # a wandb service the bot started (source:wandb) is the bot's own: runs start theirs
        env = {k: v for k, v in os.environ.items() if k != "WANDB_SERVICE"}
        with open(log, "ab") as out:
            proc = subprocess.Popen([sys.executable, "-m", "runner", *argv], cwd=self.workdir,
                                    env=env, stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        item = Launched(name, runs, proc, log, time.time(), user_id)
        self.items.append(item)
        return item

