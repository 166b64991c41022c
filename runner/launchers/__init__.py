"""Launcher backends. ``create_launcher`` builds the one named by ``launcher._target_``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from runner.config.schema import load_target
from runner.errors import ConfigError
from runner.launchers.base import Launcher as Launcher
from runner.launchers.base import RunHandle as RunHandle

if TYPE_CHECKING:
    from runner.storage.store import SweepStore


# backend -> 'module:function' that cancels a sweep's queued and running jobs of that backend
# (``python -m runner cancel``): called with the sweep's folder and a timeout in seconds, it
# returns the job ids it cancelled and those not ended yet (both empty for a sweep it never ran)
CANCELLERS: dict[str, str] = {"slurm": "runner.launchers.slurm:cancel_sweep"}


def launcher_config(launcher_cfg: dict[str, Any]) -> tuple[type[Launcher], Any]:
    """The launcher class and its validated config (checked before anything is written)."""
    cls, conf = load_target(launcher_cfg, "launcher", Launcher)
    if not cls.is_available():
        raise ConfigError(f"launcher {cls.__name__} is not available on this machine"
                          + (f": it needs {cls.requires}" if cls.requires else ""))
    cls.check(conf)
    if conf.nproc_per_run > 1 and not cls.ranks:
        raise ConfigError(f"launcher.nproc_per_run={conf.nproc_per_run}: {cls.__name__} starts "
                          "one process per run (launcher=local, pinned and slurm start "
                          "several ranks per run)")
    return cls, conf


def create_launcher(store: SweepStore, launcher_cfg: dict[str, Any], runner_conf: Any) -> Launcher:
    cls, conf = launcher_config(launcher_cfg)
    return cls(store, conf, runner_conf)
