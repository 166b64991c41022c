"""``hydra/launcher=runner``: a Hydra app's jobs as runs of runner's run store, launched by its
local, pinned or SLURM backend; re-running the command resumes the sweep.

Hydra instantiates plugins only from the ``hydra_plugins`` package, so the class lives here; all
the work is in ``runner.hydra_plugin.launch`` (imported on first use, not on every app start).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from hydra.core.utils import JobReturn
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig

from runner.hydra_plugin.config import register

register()


class RunnerLauncher(Launcher):
    def __init__(self, **settings: Any) -> None:
        self.settings = settings
        self.config: DictConfig | None = None
        self.task_function: TaskFunction | None = None
        self.hydra_context: HydraContext | None = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction,
              config: DictConfig) -> None:
        from runner.hydra_plugin.compose import install
        from runner.hydra_plugin.config import honour_output_choice

        install(hydra_context)  # jobs composed from templates (the sweeper's checks too)
        honour_output_choice(config, hydra_context.config_loader)
        self.config = config
        self.hydra_context = hydra_context
        self.task_function = task_function

    def launch(self, job_overrides: Sequence[Sequence[str]],
               initial_job_idx: int) -> Sequence[JobReturn]:
        from runner.hydra_plugin.launch import launch

        assert self.config is not None and self.hydra_context is not None
        assert self.task_function is not None
        return launch(self.settings, self.config, self.hydra_context, self.task_function,
                      job_overrides, initial_job_idx)
