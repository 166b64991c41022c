"""Expand, freeze and launch a sweep from its overrides (or resume it): ``python -m runner ...``."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from rich.console import Console

import runner.cli
from runner.cli.consoles import stderr_console
from runner.config import secrets
from runner.errors import RunnerError
from runner.scheduling import launch as launching


def _run_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m runner", description=runner.cli.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config-dir", "--config-path", "-cd", "-cp", dest="config_dir",
                        help="extra config directory (searched before ./conf)")
    parser.add_argument("--config-name", "-cn", default="config",
                        help="primary config (default: config)")
    parser.add_argument("-m", "--multirun", action="store_true",
                        help="accepted for Hydra users: runner always runs the whole sweep")
    parser.add_argument("--cfg", choices=("job", "all"),
                        help="print the composed config of the sweep's first run (all: with "
                             "runner's own sections) and exit")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. task.lr=0.1,0.01")
    return parser


def cmd_run(argv: list[str]) -> int:
    from runner.config.compose import composer
    from runner.hydra_plugin.hints import refuse_hydra_overrides
    from runner.planning.sweep import expand
    from runner.scheduling.scheduler import check_execution

    args = _run_parser().parse_args(argv)
    console = stderr_console()
    refuse_hydra_overrides(args.overrides, Path.cwd())
    with composer(args.config_dir) as comp:
        plan = expand(comp, args.overrides, args.config_name)
        config_dirs = [str(d) for d in comp.dirs]
        primary = next((d / f"{args.config_name}.yaml" for d in comp.dirs
                        if (d / f"{args.config_name}.yaml").is_file()), None)
    launcher = plan.execution.get("launcher")
    if not (isinstance(launcher, dict) and launcher.get("_target_")) and primary:
        from runner.hydra_plugin.hints import explain_foreign_config

        raise explain_foreign_config(Path(primary).parent, Path.cwd())
    if args.cfg:
        _print_cfg(plan, args.cfg)
        return 0
    for note in plan.notes:
        console.print(f"note: {note}")
    runner_cfg = plan.execution.get("runner", {})
    check_execution(plan.execution, plan.sources)
    _check_tasks({r.config.get("task", {}).get("fn") for r in plan.runs}, plan.sources)
    _check_debug_target(runner_cfg.get("debug"), plan.runs)
    if not str(runner_cfg.get("output_dir") or "").strip():
        raise RunnerError("runner.output_dir is empty: name the folder sweeps go to (default: "
                          "outputs)")
    _check_output_dir(Path(runner_cfg.get("output_dir", "outputs")))
    if runner_cfg.get("dry_run"):
        output_dir = Path(runner_cfg.get("output_dir", "outputs"))
        _print_plan(plan, output_dir, console)
        if not _print_dry_run_script(plan, output_dir, console):
            console.print("dry run: nothing was written or launched")
        return 0
    return launching.launch_plan(plan, config_dirs, args.config_name, console)


def _print_cfg(plan: Any, which: str) -> None:
    """``--cfg job``: the first run's config as YAML (``all``: with the execution sections)."""
    from runner.config.configfile import dump_yaml

    config = dict(plan.runs[0].config)
    if which == "all":
        config.update(plan.execution)
    more = f"# run 1 of {len(plan.runs)} {plan.runs[0].values}\n" if len(plan.runs) > 1 else ""
    secrets.table_console().print(more + dump_yaml(config), markup=False, highlight=False,
                            soft_wrap=True, end="")


def _print_dry_run_script(plan: Any, output_dir: Path, console: Console) -> bool:
    """For a launcher that submits scripts (SLURM): write and print the script, submit nothing."""
    from runner.execution import trackers
    from runner.launchers import launcher_config
    from runner.storage.atomic import write_text_atomic

    cls, conf = launcher_config(plan.execution.get("launcher") or {})
    render = getattr(cls, "dry_run_script", None)
    if render is None:
        return False
    heartbeat = float(plan.execution["runner"].get("heartbeat_s", 10.0))
    text = render(conf, str((output_dir / plan.name).absolute()), len(plan.runs),
                  {trackers.ENV: trackers.env_value(plan.execution.get("tracker"))}, heartbeat)
    output_dir.mkdir(parents=True, exist_ok=True)
    path = output_dir / f"{plan.name}.dry-run.sbatch"
    write_text_atomic(path, text)
    secrets.table_console().print(text, markup=False, highlight=False, soft_wrap=True)
    console.print(f"dry run: the script above was written to {path}; nothing was submitted")
    return True


def _check_debug_target(debug: Any, runs: list[Any]) -> None:
    """``runner.debug=<run>`` names one run of the plan (checked before anything is written)."""
    if debug in (None, False, True, "false", "true", "first", "random"):
        return
    wanted = str(debug)
    hits = [r for r in runs if r.id.startswith(wanted) or r.dirname == wanted]
    if len(hits) != 1:
        raise RunnerError(f"runner.debug={wanted!r} matches {len(hits)} of the sweep's runs; "
                          "give true/first, random, or a run id (prefix) from the plan "
                          "(runner.dry_run=true lists them)")


def _check_output_dir(output_dir: Path) -> None:
    """The output folder can be created and written: no file in its way, not read-only."""
    for path in (output_dir, *output_dir.absolute().parents):
        if path.exists():
            if not path.is_dir():
                raise RunnerError(f"runner.output_dir={output_dir}: {path} is a file, not a "
                                  "directory")
            if not os.access(path, os.W_OK | os.X_OK):
                raise RunnerError(f"runner.output_dir={output_dir}: {path} is not writable")
            return


def _check_tasks(refs: set[Any], sources: dict[str, str] | None = None) -> None:
    from runner.execution.tasks import check_task

    for ref in sorted(refs, key=str):
        if ref is None and (sources or {}).get("task"):
            raise RunnerError(f"{(sources or {})['task']} has no fn: a task config names its "
                              "function, e.g. `fn: my_pkg.train:main`")
        check_task(ref)


def _print_plan(plan: Any, output_dir: Path, console: Console) -> None:
    from rich.table import Table

    table = Table(title=f"{plan.name}: {len(plan.runs)} runs ({plan.kind}) -> "
                        f"{output_dir / plan.name}", show_edge=False)
    table.add_column("#", justify="right")
    table.add_column("id")
    for key in plan.varying:
        table.add_column(key)
    for i, run in enumerate(plan.runs[:200]):
        table.add_row(str(i), run.id, *(str(run.values.get(k)) for k in plan.varying))
    secrets.table_console().print(table)
    if len(plan.runs) > 200:
        console.print(f"... and {len(plan.runs) - 200} more runs")
    fixed = [k for k in plan.axes if k not in plan.varying]
    if fixed:
        console.print("same in every run: " + ", ".join(
            f"{k}={plan.runs[0].values.get(k)}" for k in fixed))
