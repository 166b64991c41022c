"""Hydra's own example apps (the subset kept in tests/assets/hydra_examples) run under
``hydra/launcher=runner`` and ``hydra/launcher=runner hydra/sweeper=runner`` exactly as under
Hydra's basic launcher and sweeper, and resume without running a job again. All of Hydra's
examples: ``python tests/hydra_examples.py <hydra checkout>/examples`` (README, "Coming from
Hydra multirun")."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra_examples import APPS, VENDORED, compare

KEPT = [app for app in APPS if (VENDORED / app.script).exists()]


def test_the_kept_subset_covers_what_ci_should_see() -> None:
    scripts = {app.script for app in KEPT}
    assert len(KEPT) >= 9, scripts
    for needed in ("5_basic_sweep", "two_packages", "job_override_dirname", "4_logging",
                   "original_cwd", "type_error", "multi-select", "example_sweeper_plugin"):
        assert any(needed in s for s in scripts), needed


@pytest.mark.parametrize("app", KEPT, ids=[app.script.rsplit("/", 2)[-2] + "/" +
                                           Path(app.script).stem for app in KEPT])
def test_a_hydra_example_runs_as_under_the_basic_launcher(app, tmp_path: Path) -> None:  # noqa: ANN001
    result = compare(app, VENDORED, tmp_path)
    assert result == {"launcher": [], "launcher+sweeper": []}, result


def test_an_apps_own_output_option_keeps_its_sweep_folder(tmp_path: Path) -> None:
    """``hydra/output=mine`` with its own ``sweep.dir``: the same folder and files under runner's
    plugins as under Hydra's (Hydra composes the launcher's settings after the output's)."""
    from hydra_examples import App

    root = VENDORED.parent / "hydra_output_app"
    result = compare(App("app.py", ("lr=0.1,0.2",)), root, tmp_path)
    assert result == {"launcher": [], "launcher+sweeper": []}, result
    for mode in ("basic", "launcher", "launcher+sweeper"):
        assert (tmp_path / mode / "my_sweeps" / "app" / "multirun.yaml").is_file(), mode
