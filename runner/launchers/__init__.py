"""Launcher backends. ``create_launcher`` builds the one named by ``launcher._target_``."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from runner.config_schema import validate
from runner.errors import ConfigError
from runner.launchers.base import Launcher as Launcher
from runner.launchers.base import RunHandle as RunHandle

if TYPE_CHECKING:
    from runner.store import SweepStore


def launcher_class(target: str) -> type[Launcher]:
    module, _, name = str(target).rpartition(".")
    try:
        cls = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError):
        raise ConfigError(f"launcher._target_='{target}' is not an importable launcher class "
                          "(choose one in conf/launcher/, e.g. launcher=local)") from None
    if not (isinstance(cls, type) and issubclass(cls, Launcher)):
        raise ConfigError(f"launcher._target_='{target}' is not a runner Launcher")
    return cls


def launcher_config(launcher_cfg: dict[str, Any]) -> tuple[type[Launcher], Any]:
    """The launcher class and its validated config (checked before anything is written)."""
    cls = launcher_class(launcher_cfg.get("_target_", ""))
    conf: Any = validate(launcher_cfg, cls.config_class, "launcher")
    if not cls.is_available():
        raise ConfigError(f"launcher {cls.__name__} is not available on this machine")
    cls.check(conf)
    return cls, conf


def create_launcher(store: SweepStore, launcher_cfg: dict[str, Any], runner_conf: Any) -> Launcher:
    cls, conf = launcher_config(launcher_cfg)
    return cls(store, conf, runner_conf)
