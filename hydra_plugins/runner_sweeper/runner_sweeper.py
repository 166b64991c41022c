"""``hydra/sweeper=runner``: runner's sweep kinds (grid, random, list; seeds, filter, subset)
for a Hydra app, with any Hydra launcher. The work is in ``runner.hydra_plugin.sweeper``."""

from __future__ import annotations

from typing import Any

from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig

from runner.hydra_plugin.config import register_sweeper

register_sweeper()


class RunnerSweeper(Sweeper):
    def __init__(self, **settings: Any) -> None:
        self.settings = settings
        self.config: DictConfig | None = None
        self.launcher: Any = None
        self.config_loader: Any = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction,
              config: DictConfig) -> None:
        from hydra.core.plugins import Plugins

        self.config = config
        self.config_loader = hydra_context.config_loader  # (glob() asks it for a group's options)
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config)

    def sweep(self, arguments: list[str]) -> Any:
        from runner.hydra_plugin.sweeper import sweep

        assert self.config is not None
        return sweep(self.settings, self.config, self.launcher, arguments, self.config_loader)
