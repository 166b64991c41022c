"""runner's own command line, for users coming from Hydra: ``hydra.*`` overrides are refused
with what to write instead (never silently dropped), and a folder whose ``conf/config.yaml`` is a
Hydra app's primary config is recognised and pointed to ``hydra/launcher=runner``."""

from __future__ import annotations

import re
from pathlib import Path

from runner.errors import ConfigError

INSTEAD = {
    "hydra.job.chdir": "a run's working directory is the project folder; write its files under "
                       "runner.current_run().run_dir",
    "hydra.run.dir": "runs live in runner.output_dir/<sweep name>/runs/: set runner.output_dir "
                     "(and runner.name for the sweep's folder)",
    "hydra.sweep.dir": "a sweep's folder is runner.output_dir/<runner.name>: set those",
    "hydra.sweep.subdir": "a run's folder is named from its values: runner.current_run().run_dir",
    "hydra.launcher": "runner's backend is launcher=local|pinned|slurm (launcher.* settings)",
    "hydra/launcher": "runner's backend is launcher=local|pinned|slurm (launcher.* settings)",
    "hydra.sweeper": "runner's sweeps are +sweep=grid|random|list (sweep.* settings)",
    "hydra/sweeper": "runner's sweeps are +sweep=grid|random|list (sweep.* settings)",
    "hydra.verbose": "RUNNER_DEBUG=1 shows tracebacks; each run's output is in its stdout.log",
}


def refuse_hydra_overrides(overrides: list[str], folder: Path) -> None:
    """A ``hydra.*`` override on runner's own command line names what to write instead (and
    the Hydra app in ``folder``, if there is one)."""
    for text in overrides:
        key = text.lstrip("+~").split("=", 1)[0]
        if not (key == "hydra" or key.startswith(("hydra.", "hydra/"))):
            continue
        app = hydra_app_here(folder)  # (read only for the error: not on every launch)
        hint = next((v for k, v in INSTEAD.items() if key == k or key.startswith(k + ".")),
                    None)
        plugin = (f"; to run the Hydra app {app} itself with runner, keep Hydra's settings and "
                  f"use `python {app} -m hydra/launcher=runner ...`" if app else
                  "; a Hydra app gets runner with `python app.py -m hydra/launcher=runner ...`")
        raise ConfigError(f"'{text}' is a Hydra setting, which runner's command line does not "
                          f"use" + (f": {hint}" if hint else "") + plugin)


def hydra_app_here(folder: Path) -> str | None:
    """The script of a Hydra app in ``folder`` (``@hydra.main`` in a top-level .py file)."""
    pattern = re.compile(r"@hydra\.main\(|from hydra import main")
    for path in sorted(folder.glob("*.py")):
        try:
            if pattern.search(path.read_text(errors="replace")[:200_000]):
                return path.name
        except OSError:
            continue
    return None


def explain_foreign_config(config_dir: Path, folder: Path) -> ConfigError:
    """The primary config composed is not runner's (no launcher, no task): say whose it is
    (a Hydra app's in ``folder``, if there is one)."""
    app = hydra_app_here(folder)
    primary = config_dir / "config.yaml"
    whose = f"the Hydra app {app}'s" if app else "another program's"
    return ConfigError(
        f"{primary} is {whose} primary config, not runner's (it has no launcher or task): "
        + (f"run the app with runner's launcher, `python {app} -m hydra/launcher=runner "
           "<overrides>`, " if app else "")
        + "or give runner its own config with --config-name <name> (a file beside it that "
          "has runner's defaults) or --config-dir <another folder>")
