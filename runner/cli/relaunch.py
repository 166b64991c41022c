"""Running a sweep's runs again: ``rerun`` (one run), ``resume`` (a sweep by its folder) and
``retrain-best`` (the best setting with new seeds), each with execution overrides only."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from runner.cli.consoles import stderr_console
from runner.cli.results import _mode, _results_parser
from runner.config.schema import (
    LAUNCH_SECTIONS,
    LAUNCHER_ONE_SHOT,
    ONE_SHOT,
    split_launch_overrides,
    without_one_shot,
)
from runner.errors import RunnerError
from runner.scheduling import launch as launching


def cmd_rerun(argv: list[str]) -> int:
    """One run again from its frozen config, as a new sweep linked to its parent."""
    from runner.scheduling.rerun import copy_checkpoints, rerun_plan
    from runner.scheduling.scheduler import check_execution
    from runner.storage.store import SweepStore, run_of_dir

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
    console = stderr_console()
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
    from runner.storage.store import SweepStore

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
        grow(store, wanted, stderr_console())
    overrides = [o for o in args.overrides if o not in extent]
    execution = _with_exec_overrides(store.manifest, store.manifest["execution"], overrides)
    from runner.scheduling.scheduler import check_execution

    check_execution(execution)
    return launching.execute(store, execution, stderr_console())


def cmd_retrain_best(argv: list[str]) -> int:
    """A new sweep of the best setting with K new seeds; re-running it resumes it."""
    from runner.results.report import make_report, picked, retrain_plan
    from runner.scheduling.scheduler import check_execution
    from runner.storage.store import SweepStore

    parser = _results_parser("retrain-best", "1")
    parser.add_argument("--seeds", type=int, required=True, help="how many new seeds")
    parser.add_argument("--pick", default=None,
                        help="a study of several objectives: the setting of its Pareto front "
                             "to retrain, by constraints and weights, e.g. "
                             "'cost<=2,val/acc=1' (default: the best by --metric)")
    parser.add_argument("overrides", nargs="*", help="runner.* or launcher.* overrides")
    args = parser.parse_intermixed_args(argv)  # overrides before or after the options
    args.mode = _mode(args)
    parent = SweepStore(args.sweep_dir)
    report = make_report(parent, args.metric, args.mode, args.reduce)
    setting, said = picked(report, args.pick)
    if (parent.manifest.get("origin") or {}).get("by") == "hydra":  # the app runs its jobs
        from runner.hydra_plugin.commands import retrain_best

        if args.overrides:
            raise RunnerError("retrain-best of a Hydra sweep takes no overrides: it re-runs "
                              "the app's command (give hydra.launcher.* settings there)")
        return retrain_best(report, args.seeds, stderr_console(), setting, said, args.pick)
    plan = retrain_plan(report, args.seeds, setting, args.pick)
    plan.execution = _with_exec_overrides(parent.manifest, plan.execution, args.overrides)
    check_execution(plan.execution)
    console = stderr_console()
    console.print(f"retraining {said} with seeds "
                  f"{', '.join(str(r.values[list(r.values)[-1]]) for r in plan.runs)}")
    store, created = SweepStore.create(plan, parent.root.parent, parent.manifest.get(
        "config_name", "config"), parent.manifest.get("config_dirs", []))
    if not created:
        console.print(f"resuming sweep {store.root}")
    return launching.execute(store, plan.execution, console)


def cmd_extend(argv: list[str]) -> int:
    """More runs in an existing sweep: its recorded command with wider axes (more seeds, more
    values), expanded again; the runs it lacks are frozen into it and the sweep is launched."""
    import time

    from runner.planning.extend import extension
    from runner.scheduling.scheduler import check_execution
    from runner.storage.store import SweepStore

    parser = argparse.ArgumentParser(prog="python -m runner extend", description=cmd_extend.__doc__)
    parser.add_argument("sweep_dir", type=Path)
    parser.add_argument("overrides", nargs="*",
                        help="wider axes ('seed=range(5)', task.lr=0.1,0.01,0.001), and runner.* "
                             "or launcher.* settings for this launch")
    parser.add_argument("--no-launch", action="store_true", help="add the runs, launch nothing")
    args = parser.parse_intermixed_args(argv)
    store = SweepStore(args.sweep_dir)
    wider, how = split_launch_overrides(args.overrides)
    plan, new = extension(store, wider)
    execution = _with_exec_overrides(store.manifest, store.manifest["execution"], how)
    check_execution(execution)
    console = stderr_console()
    if new:
        store.add_runs(new, {"overrides": wider, "time": time.time()})
        console.print(f"added {len(new)} run(s) to {store.root} ({' '.join(wider)}): "
                      f"{len(plan.runs)} in all")
    else:
        console.print(f"nothing to add: every run of {' '.join(wider)} is in {store.root} "
                      "already; a wider axis adds runs")
    if args.no_launch:
        console.print(f"launch them with `python -m runner resume {store.root}`")
        return 0
    return launching.execute(store, execution, console)


def _with_exec_overrides(manifest: dict[str, Any], execution: dict[str, Any],
                         overrides: list[str]) -> dict[str, Any]:
    """The execution sections with runner/launcher/notifier overrides applied (via Hydra)."""
    from runner.config.compose import composer, to_container

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
    from runner.config.compose import parse_overrides

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
