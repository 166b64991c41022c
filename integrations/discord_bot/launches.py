"""Sweeps started from chat: overrides checked before anything starts, then a subprocess.

``plan()`` composes and validates the whole sweep exactly as ``python -m runner`` would (so a typo
comes back as the same clear error and nothing starts), with the bot's limits (``bot.max_runs``,
no importable filter predicates), and then checks its effect against ``ChatPolicy``. Only then
is ``python -m runner ...`` started, in its own process group, without the bot's own token in
its environment.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from runner.config.secrets import ENV_DIGESTS, digest
from runner.errors import ConfigError, RunnerError
from runner.integrations.discord_bot.chat_policy import ChatPolicy

_COMPOSE_LOCK = threading.Lock()  # Hydra's global state: one composition at a time


@dataclass
class Launched:
    name: str
    runs: int
    proc: subprocess.Popen[bytes]
    log: Path
    started: float
    by: int


def open_log(path: Path, private: bool = True) -> int:
    """A log file opened for appending (a descriptor), never through a symlink; ``private``:
    created 0600 in a folder created 0700 (an older, wider file is narrowed)."""
    path.parent.mkdir(mode=0o700 if private else 0o777, parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW,
                 0o600 if private else 0o666)
    if private:
        os.fchmod(fd, 0o600)
    return fd


class Launches:
    """Sweeps this bot started, each ``python -m runner ...`` in its own process group."""

    def __init__(self, workdir: Path, log_dir: Path, max_running: int,
                 policy: ChatPolicy | None = None, max_runs: int = 500,
                 hidden_env: tuple[str, ...] = (), private: bool = True) -> None:
        self.workdir, self.log_dir, self.max_running = workdir, log_dir, max_running
        self.policy = policy or ChatPolicy()
        self.max_runs = max_runs
        self.hidden_env = hidden_env  # e.g. the bot's token: launched sweeps never see it
        self.private = private
        self.items: list[Launched] = []

    def running(self) -> list[Launched]:
        return [item for item in self.items if item.proc.poll() is None]

    def plan(self, args: list[str]) -> object:
        """Compose and validate the sweep (no file written); raises ConfigError/SweepError."""
        from runner.config.compose import composer
        from runner.execution.tasks import check_task
        from runner.planning.sweep import Limits, expand
        from runner.scheduling.scheduler import check_execution

        conf_dir = self.workdir / "conf"
        limits = Limits(max_runs=self.max_runs, predicates=False, where="bot.max_runs")
        # (the bot's own paths are absolute: changing directory here is safe)
        with _COMPOSE_LOCK, contextlib.chdir(self.workdir), composer(
                conf_dir if conf_dir.is_dir() else None) as comp:
            plan = expand(comp, args, limits=limits)
            self.policy.check(comp, args, plan)
        target = self.workdir / str(plan.execution["runner"].get("output_dir") or "outputs") \
            / plan.name
        if target.is_symlink():  # a link planted in a shared outputs folder: never followed
            raise ConfigError(f"runner.name={plan.name}: {target} is a symbolic link; runner "
                              "never writes a sweep through one")
        check_execution(plan.execution, plan.sources)
        configs = [r.config for r in plan.runs]
        if plan.template is not None:
            configs.append(plan.template)
        for fn in sorted({str(c.get("task", {}).get("fn")) for c in configs}):
            check_task(fn)
        return plan

    def hand_over(self, target: str, overrides: list[str], name: str, runs: int,
                  user_id: int) -> str:
        """Call the admin's ``bot.launch_fn`` with the checked overrides; what it returns (a
        job id, a queue position) is told to the user."""
        from runner.execution.tasks import load_task

        try:
            fn = load_task(target)
        except RunnerError as exc:
            raise ConfigError(f"bot.launch_fn: {exc}") from None
        result = fn(list(overrides), name=name, runs=runs, user_id=user_id,
                    workdir=str(self.workdir))
        return "" if result is None else str(result)

    def start(self, argv: list[str], name: str, runs: int, user_id: int) -> Launched:
        if len(self.running()) >= self.max_running:
            raise ConfigError(f"{self.max_running} sweeps started from chat are still running "
                              "(bot.max_launches); wait for one to finish")
        log = self.log_dir / f"{time.strftime('%Y%m%d-%H%M%S')}-{name[:60]}.log"
        # a wandb service the bot started (source:wandb) is the bot's own: runs start theirs
        hidden = {"WANDB_SERVICE", *self.hidden_env}
        env = {k: v for k, v in os.environ.items() if k not in hidden}
        # the sweep cannot use the bot's token, yet recognises it: a digest, not the token
        digests = [digest(os.environ[k]) for k in self.hidden_env if os.environ.get(k)]
        if digests:
            have = [d for d in env.get(ENV_DIGESTS, "").split(",") if d]
            env[ENV_DIGESTS] = ",".join(dict.fromkeys([*have, *digests]))
        with open(open_log(log, self.private), "ab") as out:
            proc = subprocess.Popen([sys.executable, "-m", "runner", *argv], cwd=self.workdir,
                                    env=env, stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        item = Launched(name, runs, proc, log, time.time(), user_id)
        self.items.append(item)
        return item

