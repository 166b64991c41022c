"""Hydra's own conformance suites, run against ``hydra/launcher=runner`` (local backend)."""

from __future__ import annotations

from typing import Any

import pytest
from hydra.core.plugins import Plugins
from hydra.plugins.launcher import Launcher
from hydra.plugins.sweeper import Sweeper
from hydra.test_utils.launcher_common_tests import (
    BatchedSweeperTestSuite,
    IntegrationTestSuite,
    LauncherTestSuite,
)


def test_the_plugins_are_discovered() -> None:
    """Found by Hydra's own scan of the hydra_plugins namespace (under the README's install)."""
    names = [f"{c.__module__}.{c.__name__}" for c in Plugins.instance().discover(Launcher)]
    assert "hydra_plugins.runner_launcher.runner_launcher.RunnerLauncher" in names
    names = [f"{c.__module__}.{c.__name__}" for c in Plugins.instance().discover(Sweeper)]
    assert "hydra_plugins.runner_sweeper.runner_sweeper.RunnerSweeper" in names


@pytest.mark.parametrize("launcher_name, overrides", [("runner", [])])
class TestRunnerLauncher(LauncherTestSuite):
    pass


@pytest.mark.parametrize("launcher_name, overrides",
                         [("runner", ["hydra.sweeper.max_batch_size=2"])])
class TestRunnerLauncherBatched(BatchedSweeperTestSuite):
    """Hydra's basic sweeper in batches of 2, runner's launcher."""


@pytest.mark.parametrize("launcher_name, overrides", [
    ("runner", ["hydra/sweeper=runner", "hydra.sweeper.max_batch_size=2"]),
    ("basic", ["hydra/sweeper=runner", "hydra.sweeper.max_batch_size=2"])])
class TestRunnerSweeperBatched(BatchedSweeperTestSuite):
    """runner's sweeper, with runner's launcher and with Hydra's basic launcher."""


@pytest.mark.parametrize("launcher_name, overrides", [("basic", ["hydra/sweeper=runner"])])
class TestRunnerSweeperWithBasicLauncher(LauncherTestSuite):
    """runner's sweeper under Hydra's launcher suite (the sweeper feeds every case)."""


RERUN_REASON = (
    "runs one multirun twice into one sweep directory with only task.py changed and expects the "
    "job to run again; with runner a sweep resumes (a COMPLETED job is not run again) and a code "
    "change is warned about (hydra.launcher.on_code_change=warn, the default): the case passes "
    "with on_code_change=rerun, below")


@pytest.mark.parametrize("task_launcher_cfg, extra_flags", [({}, ["-m", "hydra/launcher=runner"])])
class TestRunnerLauncherIntegration(IntegrationTestSuite):
    @pytest.mark.skip(reason=RERUN_REASON)
    def test_to_absolute_path_multirun(self, tmpdir: Any, task_launcher_cfg: Any,
                                       extra_flags: Any) -> None:
        pass


@pytest.mark.parametrize("task_launcher_cfg, extra_flags", [
    ({}, ["-m", "hydra/launcher=runner", "hydra.launcher.on_code_change=rerun"])])
class TestRunnerLauncherRerunOnCodeChange(IntegrationTestSuite):
    """on_code_change=rerun: a COMPLETED job whose code changed runs again."""

    test_custom_task_name = None  # (the other cases run above)
    test_custom_sweeper_run_workdir = None
    test_get_orig_dir_multirun = None
