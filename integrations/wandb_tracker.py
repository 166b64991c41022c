"""Every run a Weights & Biases run: grouped by sweep, named after the run, continued on resume.

``tracker=wandb`` starts one WandB run per attempt in the run's process, in the sweep's group,
named after the run directory, with the run's resolved config as plain containers and every
record the task logs through ``runner.log``. The WandB run id is kept in the run directory
(``wandb_id``), so a resumed run continues the same WandB run instead of creating another.
Offline (``WANDB_MODE=offline`` or ``tracker.wandb.mode=offline``) and disabled modes work without
network; an online run with no key is refused before the sweep starts, and an online run that
cannot reach the server fails after ``init_timeout_s`` with WandB's message instead of hanging.
wandb is imported only inside the run's process, only when this tracker is used.
"""

from __future__ import annotations

import netrc
import os
import select
import subprocess
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runner.errors import ConfigError
from runner.execution.trackers import Tracker

ID_FILE = "wandb_id"


@dataclass
class WandbTrackerConf:
    _target_: str = "runner.integrations.wandb_tracker.WandbTracker"
    project: str = "runner"
    entity: str | None = None
    mode: str | None = None  # online | offline | disabled; default: $WANDB_MODE, else online
    tags: list[str] = field(default_factory=list)
    init_timeout_s: float = field(default=30.0, metadata={"min": 0.0})
    # WandB's requirements.txt for every run (about 60 ms a run); runner already records every
    # installed package once per launch (the sweep's provenance)
    save_requirements: bool = False


def _mode(conf: Any) -> str:
    return str(conf.mode or os.environ.get("WANDB_MODE") or "online")


def _has_key() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        auth = netrc.netrc().authenticators("api.wandb.ai")
    except (OSError, netrc.NetrcParseError):
        return False
    return bool(auth and auth[2])


class WandbTracker(Tracker):
    config_class = WandbTrackerConf
    # wandb, and what its first wandb.init imports (about 0.2 s a run when each run does it)
    imports = ("wandb", "wandb.apis.public", "wandb.sdk.launch", "wandb.sdk.lib.gitlib", "yaml")

    @classmethod
    def check(cls, conf: Any) -> None:
        mode = _mode(conf)
        if mode not in ("online", "offline", "disabled", "dryrun", "run"):
            raise ConfigError(f"tracker.wandb.mode='{mode}' is not one of: online, offline, "
                              "disabled")
        if mode in ("online", "run") and not _has_key():
            raise ConfigError("tracker.wandb: online mode needs a WandB API key (run `wandb "
                              "login` or set WANDB_API_KEY); or use WANDB_MODE=offline")

    @classmethod
    def shared_service(cls, conf: Any) -> WandbService | None:
        """One WandB service (wandb-core) for every run of the sweep on this machine, instead
        of one started by each run's ``wandb.init``."""
        if _mode(conf) == "disabled":
            return None
        return WandbService.start()

    def start(self, ctx: Any) -> None:
        import wandb

        id_file = Path(ctx.run_dir) / ID_FILE
        run_id = id_file.read_text().strip() if id_file.exists() else uuid.uuid4().hex[:12]
        if not id_file.exists():
            id_file.write_text(run_id + "\n")
        config = _plain(ctx.config)
        self.run = wandb.init(
            project=self.conf.project, entity=self.conf.entity,
            mode=_mode(self.conf),  # type: ignore[arg-type]
            group=ctx.sweep_dir.name, name=ctx.run_dir.name, job_type="train",
            id=run_id, resume="allow", config=config, tags=list(self.conf.tags),
            dir=str(ctx.run_dir), reinit="finish_previous",
            settings=wandb.Settings(init_timeout=self.conf.init_timeout_s,
                                    x_disable_stats=True, console="off",
                                    x_save_requirements=bool(self.conf.save_requirements)))

    def log(self, record: dict[str, Any]) -> None:
        metrics = {k: v for k, v in record.items() if k not in ("step", "time", "attempt")}
        self.run.log(metrics, step=int(record["step"]))

    def finish(self, state: str, summary: dict[str, Any]) -> None:
        if state == "COMPLETED":
            for key, value in summary.items():
                self.run.summary[key] = value
        self.run.finish(exit_code={"COMPLETED": 0, "CRASHED": 1}.get(state, 143))


# the helper: starts WandB's service, tells its address, holds it until its stdin closes
_HOLDER = """
import os, sys
import wandb
wandb.setup(wandb.Settings(x_disable_stats=True))
print(os.environ["WANDB_SERVICE"], flush=True)
sys.stdin.read()
wandb.teardown()
"""


class WandbService:
    """WandB's service in a small helper process of the launcher; runs connect to it through
    ``WANDB_SERVICE`` (WandB's own way of sharing a service between processes). It ends when
    the launcher closes it or dies (its stdin closes; wandb-core also watches its parent)."""

    def __init__(self, proc: subprocess.Popen[str], timeout_s: float) -> None:
        self.proc = proc
        self.timeout_s = timeout_s
        self._env: dict[str, str] | None = None

    @classmethod
    def start(cls, timeout_s: float = 30.0) -> WandbService:
        """Start the helper and return at once (it takes about 0.6 s to be ready: the
        launcher's fork server starts meanwhile); ``env`` waits for it."""
        env = {k: v for k, v in os.environ.items() if k != "WANDB_SERVICE"}
        proc = subprocess.Popen([sys.executable, "-c", _HOLDER], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                                env=env, start_new_session=True)
        return cls(proc, timeout_s)

    @property
    def env(self) -> dict[str, str]:
        """What each run's environment gets; waits until the service is up (RuntimeError if
        it does not come up)."""
        if self._env is None:
            proc = self.proc
            assert proc.stdout is not None
            ready, _, _ = select.select([proc.stdout], [], [], self.timeout_s)
            token = proc.stdout.readline().strip() if ready else ""
            if not token.startswith("3-"):  # WandB's token format, version 3
                proc.kill()
                proc.communicate()
                raise RuntimeError("WandB's service did not start" if ready else
                                   f"WandB's service did not start within "
                                   f"{self.timeout_s:g} s")
            self._env = {"WANDB_SERVICE": token}
        return self._env

    def close(self) -> None:
        try:
            self.proc.communicate(timeout=30)  # closes its stdin: it tears the service down
        except (OSError, ValueError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.communicate()


def _plain(config: Any) -> dict[str, Any]:
    """wandb.init needs plain containers, not a DictConfig."""
    from omegaconf import DictConfig, OmegaConf

    if isinstance(config, DictConfig):
        out = OmegaConf.to_container(config, resolve=True)
        assert isinstance(out, dict)
        return {str(k): v for k, v in out.items()}
    return dict(config)
