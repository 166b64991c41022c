"""Command line: ``python -m runner [OVERRIDES...]`` and its sub-commands.

    python -m runner [--config-dir DIR] [OVERRIDE ...]      expand, freeze, launch (or resume)
    python -m runner status SWEEP_DIR [--json] [--all]       states of a sweep's runs
    python -m runner show RUN_DIR [--json]                   everything about one run
    python -m runner rerun RUN_DIR [--from-checkpoint] [OVERRIDE ...]   run it again, as a new
                                                             sweep linked to its parent
    python -m runner resume SWEEP_DIR [OVERRIDE ...]         resume a sweep by its directory
    python -m runner cancel SWEEP_DIR                        stop the runners working on it
    python -m runner report SWEEP_DIR --metric M [--mode max|min]   table, plots, CSV, Markdown
    python -m runner compare DIR DIR ... --metric M          several sweeps side by side
    python -m runner retrain-best SWEEP_DIR --metric M --seeds K     best setting, K new seeds
    python -m runner wandb-sync SWEEP_DIR [--dry-run]        upload its offline WandB runs
    python -m runner export-study SWEEP_DIR [--out FILE]     a study as an optuna database

Overrides use Hydra's grammar (``task.lr=0.1,0.01``, ``+sweep=grid``, ``'seed=range(5)'``).
Re-running the same command resumes the same sweep: its directory name is derived from the
command's overrides (not from the time), and only runs that are not COMPLETED are launched.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape

from runner import launch as launching
from runner import secrets
from runner.config_schema import (
    LAUNCH_SECTIONS,
    LAUNCHER_ONE_SHOT,
    ONE_SHOT,
    split_launch_overrides,
    without_one_shot,
)
from runner.errors import RunnerError

DISTRIBUTION = "hydra-runner"  # the name on the package index ("runner" there is another's)
SUBCOMMANDS = ("status", "show", "rerun", "resume", "cancel", "report", "compare",
               "retrain-best", "wandb-sync", "export-study")


def _console() -> Console:
    return secrets.console(stderr=True, highlight=False, soft_wrap=True)


def _stdout_console() -> Console:
    """Tables on stdout: the terminal's width, or 160 columns into files and pipes."""
    console = secrets.console(highlight=False)
    return console if console.is_terminal else secrets.console(highlight=False, width=160)


def main(argv: list[str] | None = None) -> int:
    if argv is None:  # a program of its own (not called from Python): redacted tracebacks
        secrets.install_hooks()
        if "" not in sys.path and os.getcwd() not in sys.path:  # the `runner` script, as
            sys.path.insert(0, os.getcwd())  # `python -m runner` does: the user's tasks import
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] in (["--version"], ["-V"]):
        print(f"runner {version()} (the hydra-runner distribution), Python "
              f"{sys.version.split()[0]}")
        return 0
    try:
        if argv and argv[0] in SUBCOMMANDS:
            commands = {"status": cmd_status, "show": cmd_show, "rerun": cmd_rerun,
                        "resume": cmd_resume,
                        "cancel": cmd_cancel,
                        "report": cmd_report,
                        "compare": cmd_compare, "retrain-best": cmd_retrain_best,
                        "wandb-sync": cmd_wandb_sync, "export-study": cmd_export_study}
            return commands[argv[0]](argv[1:])
        _refuse_unknown_command(argv)
        return cmd_run(argv)
    except RunnerError as exc:
        _console().print(f"[bold red]error:[/] {escape(str(exc))}")
        _debug_traceback()
        return exc.exit_code
    except BrokenPipeError:  # e.g. `status --json | head` (an OSError: caught before those)
        sys.stderr.close()
        return 0
    except OSError as exc:  # an environmental fault (disk full, a file gone or locked)
        from runner.errors import describe_os_error

        _console().print(f"[bold red]error:[/] {escape(describe_os_error(exc, doing='using'))}")
        _debug_traceback()
        return 1


def version() -> str:
    """This runner's version (its distribution's, or the source tree's when not installed)."""
    import importlib.metadata

    try:
        return importlib.metadata.version(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        return "0+unknown"


def _debug_traceback() -> None:
    """``RUNNER_DEBUG=1``: the traceback behind an error message, for bug reports."""
    import traceback

    if os.environ.get("RUNNER_DEBUG") == "1":
        sys.stderr.write(secrets.redact(traceback.format_exc()))


def _refuse_unknown_command(argv: list[str]) -> None:
    """``stauts DIR``: a word that is neither an override nor an option is a mistyped command."""
    import difflib

    word = argv[0] if argv else ""
    if not word or word.startswith("-") or "=" in word or word.startswith("~"):
        return
    close = difflib.get_close_matches(word, SUBCOMMANDS, n=1, cutoff=0.5)
    raise RunnerError(f"unknown command '{word}'"
                      + (f"; did you mean '{close[0]}'?" if close else "")
                      + f" (commands: {', '.join(SUBCOMMANDS)}; overrides look like key=value)")


def _run_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m runner", description=__doc__,
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
    from runner.compose import composer
    from runner.hydra_plugin.hints import refuse_hydra_overrides
    from runner.scheduler import check_execution
    from runner.sweep import expand

    args = _run_parser().parse_args(argv)
    console = _console()
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
    from runner.configfile import dump_yaml

    config = dict(plan.runs[0].config)
    if which == "all":
        config.update(plan.execution)
    more = f"# run 1 of {len(plan.runs)} {plan.runs[0].values}\n" if len(plan.runs) > 1 else ""
    _stdout_console().print(more + dump_yaml(config), markup=False, highlight=False,
                            soft_wrap=True, end="")


def _print_dry_run_script(plan: Any, output_dir: Path, console: Console) -> bool:
    """For a launcher that submits scripts (SLURM): write and print the script, submit nothing."""
    from runner import trackers
    from runner.atomic import write_text_atomic
    from runner.launchers import launcher_config

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
    _stdout_console().print(text, markup=False, highlight=False, soft_wrap=True)
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
    from runner.tasks import check_task

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
    _stdout_console().print(table)
    if len(plan.runs) > 200:
        console.print(f"... and {len(plan.runs) - 200} more runs")
    fixed = [k for k in plan.axes if k not in plan.varying]
    if fixed:
        console.print("same in every run: " + ", ".join(
            f"{k}={plan.runs[0].values.get(k)}" for k in fixed))


def cmd_status(argv: list[str]) -> int:
    from runner.status import json_text, render, scan
    from runner.store import SweepStore

    parser = argparse.ArgumentParser(prog="python -m runner status")
    parser.add_argument("sweep_dir", type=Path)
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument("--all", action="store_true", help="show every run, not the first 50")
    parser.add_argument("--state", help="only runs in this state (e.g. CRASHED)")
    parser.add_argument("--sort", metavar="METRIC", help="best first by this metric")
    parser.add_argument("--mode", choices=["max", "min"], default=None,
                        help="with --sort: higher (max) or lower (min) is better; default: from "
                             "the metric's name when it says (loss -> min, acc -> max)")
    parser.add_argument("--max", action="store_true", help="the same as --mode max")
    parser.add_argument("--top", type=int, help="only the first K runs")
    args = parser.parse_args(argv)
    if args.top is not None and args.top < 1:
        raise RunnerError(f"--top {args.top}: give a number of runs >= 1")
    store = SweepStore(args.sweep_dir)
    if args.state or args.sort or args.top:
        from runner.queries import select_runs
        from runner.results import mode_for

        by_value = bool(args.sort) and args.sort in store.manifest.get("axes", [])
        if by_value:  # a swept value (trial, seed, task.lr): an order, not better or worse
            mode = "max" if args.max or args.mode == "max" else "min"
        else:
            mode = mode_for(args.sort, "max" if args.max else args.mode) if args.sort else "min"
        rows = select_runs(store, args.state, args.sort, mode, args.top)
        if by_value:
            _console().print(f"sorted by {args.sort} "
                             f"({'descending' if mode == 'max' else 'ascending'})")
        elif args.sort:
            _console().print(f"best first by {args.sort} ({mode} is better)")
        _stdout_console().print(render(store, rows, None))
        return 0
    if args.json:
        sys.stdout.write(json_text(store) + "\n")
    else:
        _stdout_console().print(render(store, scan(store), None if args.all else 50))
    return 0


def cmd_show(argv: list[str]) -> int:
    """One run on one screen: values, state history, code, metrics, files, resolved config."""
    import json

    from runner.configfile import dump_yaml
    from runner.show import describe

    parser = argparse.ArgumentParser(prog="python -m runner show")
    parser.add_argument("run_dir", type=Path,
                        help="<sweep>/runs/<run>, or <sweep> and a run id (or its prefix)")
    parser.add_argument("run_id", nargs="?", help="a run id, or a unique prefix of one")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    args = parser.parse_args(argv)
    info = describe(args.run_dir / "runs" / args.run_id if args.run_id else args.run_dir)
    if args.json:
        sys.stdout.write(secrets.redact(json.dumps(info, default=str, indent=1)) + "\n")
        return 0
    out = _stdout_console()

    def when(t: Any) -> str:
        import time

        return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(t))) if t else "?"

    duration = info["duration_s"]
    out.print(f"[bold]{escape(info['id'])}[/] {escape(info['dir'])}\n"
              f"sweep {escape(str(info['sweep']['name']))} ({escape(info['sweep']['dir'])})\n"
              f"state [bold]{info['state']}[/], attempt {info['attempt']}"
              + (f", {duration:.1f}s" if duration is not None else "")
              + (f": {escape(info['reason'])}" if info["reason"] else ""))
    out.print("values: " + escape(", ".join(f"{k}={v}" for k, v in info["values"].items())
                                  or "(none swept)"))
    out.print("attempts:" if info["attempts"] else "attempts: none ended yet")
    for a in info["attempts"]:
        if "error" in a:
            out.print(f"  {escape(a['file'])}: {escape(a['error'])}")
            continue
        took = f" ({a['duration_s']:.1f}s)" if a.get("duration_s") is not None else ""
        code = (a.get("launcher") or {}).get("code")
        out.print(f"  {a['attempt']}: {a['state']} on {a['host'] or '?'} pid {a['pid'] or '?'}, "
                  f"{when(a['start'])} -> {when(a['end'])}{took}"
                  + (f", code {code}" if code else "")
                  + (f", a {a['failure']} failure" if a.get("failure") else "")
                  + (f": {escape(str(a['reason']))}" if a.get("reason") else ""))
    used = sorted({str(a["launcher"]["code"]) for a in info["attempts"]
                   if (a.get("launcher") or {}).get("code")})
    for code_id in used:
        version = info["code_versions"].get(code_id) or {}
        out.print(f"code {code_id}: commit {str(version.get('commit'))[:12]}"
                  + (" with uncommitted changes (code/" + code_id + ".diff)"
                     if version.get("dirty") else ""))
    code = info["code"] or {}
    if code.get("commit") and not used:
        out.print(f"code: {code['commit'][:12]}" + (" (uncommitted changes: the sweep's git.diff)"
                                                   if code.get("dirty") else "")
                  + f" in {escape(str(code.get('repository')))}, as frozen")
    if info["summary"]:
        out.print("summary: " + escape(", ".join(f"{k}={v}" for k, v in info["summary"].items())))
    if info["last_metrics"]:
        out.print("last metrics: " + escape(", ".join(
            f"{k}={v}" for k, v in info["last_metrics"].items() if k != "time")))
    files = info["files"]
    out.print(f"files in {escape(info['dir'])}: " + escape(", ".join(
        Path(v).name for k, v in files.items() if k != "checkpoints" and Path(v).exists()))
              + (f"; {len(files['checkpoints'])} checkpoint file(s) in checkpoints/"
                 if files["checkpoints"] else ""))
    out.print("config:\n" + escape(dump_yaml(info["config"])).rstrip())
    return 0


def cmd_rerun(argv: list[str]) -> int:
    """One run again from its frozen config, as a new sweep linked to its parent."""
    from runner.rerun import copy_checkpoints, rerun_plan
    from runner.scheduler import check_execution
    from runner.store import SweepStore, run_of_dir

    parser = argparse.ArgumentParser(prog="python -m runner rerun")
    parser.add_argument("run_dir", type=Path, help="<sweep>/runs/<run>")
    parser.add_argument("--from-checkpoint", action="store_true",
                        help="start from a copy of the run's checkpoints/ (default: scratch)")
    parser.add_argument("overrides", nargs="*",
                        help="changes to the run's config (task.lr=0.01) or to how it runs "
                             "(launcher.*, runner.*); recorded in the new sweep")
    args = parser.parse_intermixed_args(argv)
    parent, ref = run_of_dir(args.run_dir)
    if (parent.manifest.get("origin") or {}).get("by") == "hydra":
        from runner.hydra_plugin.commands import rerun_refusal

        raise rerun_refusal(parent.manifest, Path(ref.dir))
    plan = rerun_plan(parent, ref, args.overrides, args.from_checkpoint)
    _, how = split_launch_overrides(args.overrides)
    plan.execution = _with_exec_overrides(parent.manifest, plan.execution, how)
    check_execution(plan.execution)
    console = _console()
    store, created = SweepStore.create(plan, parent.root.parent, parent.manifest.get(
        "config_name", "config"), parent.manifest.get("config_dirs", []))
    if created and args.from_checkpoint:
        copied = copy_checkpoints(ref, store.runs()[0].paths)
        console.print(f"copied {copied} checkpoint file(s) of {ref.id}" if copied else
                      f"{ref.id} has no checkpoints/ to start from: the re-run starts afresh")
    console.print(("re-running " if created else "resuming the re-run of ")
                  + f"{ref.id} from {parent.root} as {store.root}")
    return launching.execute(store, plan.execution, console)


def cmd_resume(argv: list[str]) -> int:
    """Resume from the directory; execution settings may be overridden (launcher.*, runner.*)."""
    from runner.store import SweepStore

    parser = argparse.ArgumentParser(prog="python -m runner resume")
    parser.add_argument("sweep_dir", type=Path)
    parser.add_argument("overrides", nargs="*",
                        help="runner.*, launcher.* or notifier overrides for this launch "
                             "(and sweep.n_trials=N for a study)")
    args = parser.parse_args(argv)
    store = SweepStore(args.sweep_dir)
    if (store.manifest.get("origin") or {}).get("by") == "hydra":
        from runner.hydra_plugin.commands import resume_refusal

        raise resume_refusal(store.manifest, store.root)
    extent = [o for o in args.overrides if o.split("=", 1)[0] == "sweep.n_trials"]
    if extent:  # a study goes further: its extent, not its identity
        if store.manifest.get("kind") != "optuna":
            raise RunnerError(f"sweep.n_trials is a study's setting; {store.root} is a "
                              f"{store.manifest.get('kind')} sweep")
        from runner.study.plan import grow

        try:
            wanted = int(extent[-1].split("=", 1)[1])
        except ValueError:
            raise RunnerError(f"'{extent[-1]}': give a number of trials") from None
        grow(store, wanted, _console())
    overrides = [o for o in args.overrides if o not in extent]
    execution = _with_exec_overrides(store.manifest, store.manifest["execution"], overrides)
    from runner.scheduler import check_execution

    check_execution(execution)
    return launching.execute(store, execution, _console())


def cmd_wandb_sync(argv: list[str]) -> int:
    """Upload a sweep's offline WandB runs from a machine with internet (WandB's own sync)."""
    from runner.integrations.wandb_sync import sync_sweep

    parser = argparse.ArgumentParser(prog="python -m runner wandb-sync",
                                     description=cmd_wandb_sync.__doc__)
    parser.add_argument("sweep_dir", type=Path)
    parser.add_argument("--project", help="upload into this WandB project instead")
    parser.add_argument("--entity", help="... of this entity")
    parser.add_argument("--dry-run", action="store_true", help="say what would be synced")
    args = parser.parse_args(argv)
    result = sync_sweep(args.sweep_dir, args.project, args.entity, args.dry_run,
                        progress=sys.stderr.isatty())
    out = _stdout_console()
    if args.dry_run:
        out.print(f"would sync {len(result.synced)} offline WandB run(s) of "
                  f"{len({r.run_id for r in result.synced})} run(s); "
                  f"{len(result.already)} already synced, {len(result.running)} still RUNNING")
        for item in result.synced:
            out.print(f"  {item.run_id}  {escape(str(item.file.parent))}")
        return 0
    for item, why in result.failed:
        out.print(f"[red]failed[/] {item.run_id} ({escape(str(item.file.parent.name))}): "
                  f"{escape(why)}")
    out.print(result.summary())
    return 1 if result.failed else 0


def cmd_export_study(argv: list[str]) -> int:
    """Write a study as an optuna database (for optuna-dashboard); runner never reads it."""
    from runner.study.export import export_study

    parser = argparse.ArgumentParser(prog="python -m runner export-study",
                                     description=cmd_export_study.__doc__)
    parser.add_argument("sweep_dir", type=Path)
    parser.add_argument("--out", type=Path, help="the database file (default: "
                        "SWEEP_DIR/optuna.db)")
    args = parser.parse_args(argv)
    path, n = export_study(args.sweep_dir, args.out)
    _stdout_console().print(f"{n} trial(s) written to {escape(str(path))}\n"
                            f"optuna-dashboard sqlite:///{escape(str(path))}")
    return 0


def cmd_cancel(argv: list[str]) -> int:
    """Stop every live runner process of a sweep on this host, as Ctrl-C would: its running
    runs are terminated and marked INTERRUPTED, and ``resume`` continues later."""
    import signal
    import socket
    import time

    import psutil

    from runner.store import SweepStore

    parser = argparse.ArgumentParser(prog="python -m runner cancel")
    parser.add_argument("sweep_dir", type=Path)
    parser.add_argument("--timeout", type=float, default=60.0,
                        help="seconds to wait for them to stop")
    args = parser.parse_args(argv)
    store = SweepStore(args.sweep_dir)
    host = socket.gethostname()
    live = []
    for launch in store.manifest.get("launches", []):
        if launch.get("host") != host:
            continue
        try:
            proc = psutil.Process(int(launch["pid"]))
            if abs(proc.create_time() - float(launch.get("create_time", 0))) < 1.0:
                live.append(proc)
        except (psutil.Error, KeyError, ValueError):
            continue
    console = _console()
    jobs_left = _cancel_slurm_jobs(store, args.timeout, console)
    if not live:
        console.print(f"no runner process of {store.root} is running on {host}")
        return 1 if jobs_left else 0
    for proc in live:
        proc.send_signal(signal.SIGTERM)

    def running(proc: psutil.Process) -> bool:  # a zombie has stopped; its parent reaps it
        try:
            return proc.status() != psutil.STATUS_ZOMBIE
        except psutil.Error:
            return False

    deadline = time.monotonic() + args.timeout
    alive = live
    while alive and time.monotonic() < deadline:
        time.sleep(0.1)
        alive = [p for p in alive if running(p)]
    console.print(f"stopped {len(live) - len(alive)} runner process(es) of {store.root}"
                  + (f"; {len(alive)} still running (pids {[p.pid for p in alive]})"
                     if alive else f"; resume it with `python -m runner resume {store.root}`"))
    return 1 if alive or jobs_left else 0


def _cancel_slurm_jobs(store: Any, timeout: float, console: Console) -> list[str]:
    """scancel the sweep's SLURM jobs, then record the runs they held as INTERRUPTED."""
    from runner.config_schema import RunnerConf, validate
    from runner.paths import SweepPaths

    if not SweepPaths(store.root).slurm.is_dir():
        return []
    from runner.launchers.slurm import cancel_sweep
    from runner.scheduler import prepare

    cancelled, left = cancel_sweep(store.root, timeout)
    runner_conf = validate((store.manifest.get("execution") or {}).get("runner"), RunnerConf,
                           "runner")
    prepare(store, runner_conf, console, report_corrupt=False)
    if cancelled:
        console.print(f"scancel: SLURM job(s) {', '.join(cancelled)} of {store.root}"
                      + (f"; {', '.join(left)} not ended yet" if left else
                         f"; resume it with `python -m runner resume {store.root}`"))
    return left


def _results_parser(prog: str, dirs: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=f"python -m runner {prog}")
    parser.add_argument("sweep_dirs" if dirs == "+" else "sweep_dir", type=Path,
                        nargs=dirs if dirs == "+" else None)
    parser.add_argument("--metric", required=True, help="a logged metric, e.g. val/acc")
    parser.add_argument("--mode", choices=["max", "min"], default=None,
                        help="higher (max) or lower (min) is better; default: from the metric's "
                             "name when it says (loss -> min, acc -> max)")
    parser.add_argument("--reduce", default="final",
                        help="final (default), best, or last:K (mean of the last K values)")
    return parser


def _mode(args: argparse.Namespace) -> str:
    """The metric's mode, once the sweep directories are known to be sweeps (a wrong path is
    said first, not a question about the metric)."""
    from runner.results import mode_for
    from runner.store import SweepStore

    for folder in getattr(args, "sweep_dirs", None) or [args.sweep_dir]:
        SweepStore(folder).manifest  # noqa: B018  (raises: no such sweep, naming the folder)
    return mode_for(args.metric, args.mode)


def _print_table(rows: list[list[str]], header: list[str], title: str) -> None:
    from rich.table import Table

    table = Table(*header, title=title, show_edge=False)
    for row in rows:
        table.add_row(*(escape(cell) for cell in row))  # "[0.1, 0.2]" is data, not markup
    _stdout_console().print(table)


def cmd_report(argv: list[str]) -> int:
    from runner.report import HEADER, make_report, stats_table
    from runner.store import SweepStore

    parser = _results_parser("report", "1")
    parser.add_argument("--out", type=Path, help="output folder (default: SWEEP_DIR/report/METRIC)")
    parser.add_argument("--svg", action="store_true", help="SVG figures as well as PNG")
    parser.add_argument("--pdf", action="store_true", help="PDF figures as well as PNG")
    args = parser.parse_args(argv)
    args.mode = _mode(args)
    report = make_report(SweepStore(args.sweep_dir), args.metric, args.mode, args.reduce,
                         args.out, args.svg, args.pdf)
    _print_table(stats_table(report.ranked), HEADER,
                 f"{report.metric} ({args.reduce}, {args.mode}), best first")
    _console().print(f"best: {report.best.label}\nreport: {report.files['report.md']}")
    return 0


def cmd_compare(argv: list[str]) -> int:
    from runner.report import HEADER, compare, stats_table
    from runner.store import SweepStore

    parser = _results_parser("compare", "+")
    parser.add_argument("--out", type=Path, default=None,
                        help="output folder (default: ./reports/compare-<names>)")
    parser.add_argument("--svg", action="store_true", help="SVG figures as well as PNG")
    parser.add_argument("--pdf", action="store_true", help="PDF figures as well as PNG")
    args = parser.parse_args(argv)
    args.mode = _mode(args)
    stores = [SweepStore(d) for d in args.sweep_dirs]
    out = args.out or Path("reports") / ("compare-" + "-".join(s.root.name for s in stores))[:120]
    ranked, files = compare(stores, args.metric, args.mode, args.reduce, out, args.svg,
                            args.pdf)
    rows = stats_table([g for _, g in ranked])
    _print_table([[name, *row] for (name, _), row in zip(ranked, rows, strict=True)],
                 ["sweep", *HEADER], f"{args.metric} ({args.reduce}, {args.mode}), best first")
    _console().print(f"compare: {files['compare.md']}")
    return 0


def cmd_retrain_best(argv: list[str]) -> int:
    """A new sweep of the best setting with K new seeds; re-running it resumes it."""
    from runner.report import make_report, retrain_plan
    from runner.scheduler import check_execution
    from runner.store import SweepStore

    parser = _results_parser("retrain-best", "1")
    parser.add_argument("--seeds", type=int, required=True, help="how many new seeds")
    parser.add_argument("overrides", nargs="*", help="runner.* or launcher.* overrides")
    args = parser.parse_intermixed_args(argv)  # overrides before or after the options
    args.mode = _mode(args)
    parent = SweepStore(args.sweep_dir)
    report = make_report(parent, args.metric, args.mode, args.reduce)
    if (parent.manifest.get("origin") or {}).get("by") == "hydra":  # the app runs its jobs
        from runner.hydra_plugin.commands import retrain_best

        if args.overrides:
            raise RunnerError("retrain-best of a Hydra sweep takes no overrides: it re-runs "
                              "the app's command (give hydra.launcher.* settings there)")
        return retrain_best(report, args.seeds, _console())
    plan = retrain_plan(report, args.seeds)
    plan.execution = _with_exec_overrides(parent.manifest, plan.execution, args.overrides)
    check_execution(plan.execution)
    console = _console()
    console.print(f"retraining {report.best.label} (mean {args.metric} "
                  f"{report.best.stats()['mean']:.4g}) with seeds "
                  f"{', '.join(str(r.values[list(r.values)[-1]]) for r in plan.runs)}")
    store, created = SweepStore.create(plan, parent.root.parent, parent.manifest.get(
        "config_name", "config"), parent.manifest.get("config_dirs", []))
    if not created:
        console.print(f"resuming sweep {store.root}")
    return launching.execute(store, plan.execution, console)


def _with_exec_overrides(manifest: dict[str, Any], execution: dict[str, Any],
                         overrides: list[str]) -> dict[str, Any]:
    """The execution sections with runner/launcher/notifier overrides applied (via Hydra)."""
    from runner.compose import composer, to_container

    bad, _ = split_launch_overrides(overrides)
    if bad:
        raise RunnerError(f"only runner/launcher/notifier overrides are taken here, got {bad}: "
                          "the runs of a sweep are frozen (start a new sweep to change them)")
    execution = without_one_shot(execution)  # (older manifests recorded them)
    if overrides:
        dirs = manifest.get("config_dirs") or [None]
        with composer(dirs[0] if dirs[0] and Path(dirs[0]).is_dir() else None) as comp:
            cfg = comp.compose([*_exec_overrides(manifest["overrides"]), *overrides],
                               manifest.get("config_name", "config"))
        fresh = to_container(cfg)
        execution.update({k: fresh[k] for k in LAUNCH_SECTIONS if k in fresh})
    return execution


def _exec_overrides(overrides: list[str]) -> list[str]:
    """The recorded command's runner/launcher/notifier overrides, minus one-shot settings."""
    from runner.compose import parse_overrides

    one_shot = {f"runner.{k}" for k in ONE_SHOT} | {f"launcher.{k}" for k in LAUNCHER_ONE_SHOT}
    keep = []
    for text in overrides:
        key = text.lstrip("+~").split("=")[0]
        if key.split(".")[0] not in LAUNCH_SECTIONS or key in one_shot:
            continue
        (parsed,) = parse_overrides([text])
        if not parsed.is_sweep_override():  # (a list such as notifier=[console,discord] stays)
            keep.append(text)
    return keep
