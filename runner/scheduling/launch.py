"""Launching a frozen sweep: say what changed since it was frozen (configs, code), record this
launch in the manifest, run the sweep loop, and end with its best runs. Shared by runner's own
command line and the Hydra launcher plugin."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape

from runner.config import secrets
from runner.errors import RunnerError


def launch_plan(plan: Any, config_dirs: list[str], config_name: str, console: Console) -> int:
    from runner.storage.store import SweepStore

    output_dir = Path(plan.execution["runner"].get("output_dir", "outputs"))
    for alias in plan.aliases:  # a sweep an older version named otherwise: resumed there
        if not (output_dir / plan.name).exists() and SweepStore(output_dir / alias).exists():
            plan.name = alias
    store, created = SweepStore.create(plan, output_dir, config_name, config_dirs)
    if not created:
        if plan.on_resume:  # (first: it may take the frozen sweep's fingerprint anew)
            from runner.execution.tasks import load_task

            load_task(plan.on_resume)(store, plan, console)
        check_frozen(store, plan, console)
    return execute(store, plan.execution, console)


def check_frozen(store: Any, plan: Any, console: Console) -> None:
    """Re-running a command whose config changed: warn and keep the frozen runs, or refuse."""
    manifest = store.manifest
    if manifest.get("fingerprint") == plan.fingerprint:
        console.print(f"resuming sweep {store.root}")
        return
    frozen = {r["id"] for r in manifest["runs"]}
    new = {r.id for r in plan.runs}
    detail = (f"{len(new - frozen)} run(s) would be added, {len(frozen - new)} removed, "
              f"{len(frozen & new)} kept") + changed_keys(store, plan, frozen & new)
    message = (f"the config changed since {store.root} was frozen: {detail}. "
               "The frozen runs and configs are used; to start a new sweep instead, pass "
               "runner.name=<new name>.")
    if plan.execution["runner"].get("on_config_change") == "error":
        from runner.errors import StateError

        raise StateError(message.replace("are used", "were kept") +
                         " (runner.on_config_change=error)")
    console.print(f"[yellow]warning:[/] {message}")


def print_best(store: Any, execution: dict[str, Any], console: Console, top: int = 5,
               setting: str = "runner.metric") -> None:
    """The end of a sweep: its best runs by ``runner.metric`` (or the Discord notifier's metric),
    or else the commands that show its results."""
    from runner.results import queries
    from runner.results.modes import mode_for
    from runner.results.status import render

    runner_cfg = execution.get("runner") or {}
    notifiers = execution.get("notifier") or {}
    sweep_cfg = execution.get("sweep") or {}
    objective = sweep_cfg.get("metric") if isinstance(sweep_cfg, dict) else None
    if isinstance(objective, list) and not runner_cfg.get("metric"):
        print_front(store, console, top * 2)
        return
    metric = runner_cfg.get("metric") or objective or next(
        (n.get("metric") for n in notifiers.values() if isinstance(n, dict) and n.get("metric")),
        None)
    if metric:
        try:
            mode = mode_for(metric, runner_cfg.get("mode") or (
                sweep_cfg.get("mode") if metric == objective else None) or next(
                (n.get("mode") for n in notifiers.values()
                 if isinstance(n, dict) and n.get("metric") == metric), None))
            rows = queries.select_runs(store, "COMPLETED", metric, mode, top)
        except RunnerError as exc:
            console.print(f"best runs: {escape(str(exc))}")
            return
        if rows:
            console.print(f"best {len(rows)} run(s) by {metric} ({mode} is better):")
            secrets.table_console().print(render(store, rows, None))
            return
    names = queries.metric_names(store)

    def says_its_mode(name: str) -> bool:
        try:
            return bool(mode_for(name))
        except RunnerError:
            return False

    example = next((n for n in names if says_its_mode(n)), names[0] if names else "<name>")
    hint = f" --metric {example}"
    console.print(f"results: `python -m runner status {store.root}`, `python -m runner report "
                  f"{store.root}{hint}`" + (f" (metrics: {', '.join(names[:8])})" if names else "")
                  + f"; {setting}=<name> shows the best runs here")


def print_front(store: Any, console: Console, top: int) -> None:
    """The end of a study of several objectives: the runs on its Pareto front."""
    from runner.results import pareto
    from runner.results.status import render

    found = pareto.study_objectives(store.manifest)
    if found is None:
        return
    metrics, modes = found
    rows, scored = pareto.run_front(store, metrics, modes)
    named = ", ".join(f"{m} ({d})" for m, d in zip(metrics, modes, strict=True))
    if not rows:
        console.print(f"Pareto front of {named}: no completed trial has a value of each yet")
        return
    more = f", the first {top} shown" if len(rows) > top else ""
    console.print(f"Pareto front of {named}: {len(rows)} of {scored} completed trial(s){more} "
                  f"(`python -m runner report {store.root}` draws it; `retrain-best --pick` "
                  "chooses from it)")
    secrets.table_console().print(render(store, rows[:top], None))


def launch_code(store: Any, execution: dict[str, Any], console: Console) -> dict[str, Any]:
    """The code this launch runs (commit, diff, environment), kept in the sweep; a change since
    the sweep's first launch is said (or refused with ``runner.on_code_change=error``)."""
    from runner.errors import StateError
    from runner.storage import provenance

    recorded = store.manifest.get("cwd")
    cwd = Path(recorded) if recorded and os.path.isdir(recorded) else Path.cwd()
    files = (store.manifest.get("origin") or {}).get("code_files") or \
        store.manifest.get("code_files")
    prov, diff = store.fresh_provenance or provenance.collect(cwd, files)  # (frozen now: as is)
    first = store.manifest.get("provenance") or {}
    if "code" not in first:  # (a sweep frozen before code ids: compare its commit only)
        first = {**first, "code": prov["code"]} if (first.get("git") or {}).get(
            "commit") == prov["git"].get("commit") else first
    changed = provenance.changes(first, prov)
    if changed:
        message = (f"the code changed since {store.root} was first launched: "
                   f"{'; '.join(changed)}. Runs launched now run the new code (each attempt "
                   "records which: `python -m runner show RUN_DIR`)")
        rule = (execution.get("runner") or {}).get("on_code_change")
        if rule == "rerun":
            message = message.replace("Runs launched now run the new code",
                                      "COMPLETED runs of other code run again "
                                      "(runner.on_code_change=rerun)")
        if rule == "error":
            raise StateError(message.replace("Runs launched now run", "Nothing was launched; "
                                             "runs would run") + " (runner.on_code_change=error)")
        console.print(f"[yellow]warning:[/] {escape(message)}")
    return dict(store.record_code(prov, diff))


def changed_keys(store: Any, plan: Any, kept: set[str], shown: int = 5) -> str:
    """', and in them task.width: 64 -> 32, ...': what differs between the frozen configs of
    the kept runs and what the command composes now (keys, old and new values)."""
    from runner.config.configfile import config_changes, load_run_config
    from runner.errors import CorruptStateError

    changes: dict[str, tuple[Any, Any]] = {}
    refs = {r.id: r for r in store.runs()}
    for run in plan.runs:
        if run.id not in kept or run.id not in refs:
            continue
        try:
            frozen = load_run_config(refs[run.id].paths)
        except (OSError, CorruptStateError):
            continue
        for key, old, new in config_changes(frozen, run.config):
            changes.setdefault(key, (old, new))
    if not changes:
        return " (their configs are unchanged)"
    listed = [f"{k}: {old!r} -> {new!r}" for k, (old, new) in list(changes.items())[:shown]]
    more = f", and {len(changes) - shown} more key(s)" if len(changes) > shown else ""
    return f", whose configs differ in {'; '.join(listed)}{more}"


def execute(store: Any, execution: dict[str, Any], console: Console) -> int:
    from runner.config.trust import check_trusted
    from runner.errors import EnvironmentFault, LaunchError
    from runner.scheduling.scheduler import debug_run, run_sweep

    check_trusted(store.root)  # its files name the code that runs next
    store.update_execution(execution, launch_code(store, execution, console))
    debug = execution["runner"].get("debug")
    if debug not in (None, False, "false"):
        return debug_run(store, execution, debug, console)
    try:
        result = run_sweep(store, execution, console)
    except (LaunchError, EnvironmentFault) as exc:
        raise type(exc)(f"{exc}. The sweep is resumable: `python -m runner resume "
                        f"{store.root}`") from None
    console.print(f"sweep directory: {store.root}")
    if not result.detached and not result.interrupted:
        print_best(store, execution, console)
    left = result.counts.get("INTERRUPTED", 0) + result.counts.get("UNHATCHED", 0)
    if left and not result.detached:
        console.print(f"{left} run(s) not finished: resume with `python -m runner resume "
                      f"{store.root}`")
    if result.corrupt:
        console.print(f"[red]{len(result.corrupt)} run(s) have a corrupt FLAG file[/] "
                      f"({', '.join(result.corrupt[:5])}): `python -m runner status "
                      f"{store.root}` says which file and what to do")
    if result.stopped:
        left = result.counts.get("UNHATCHED", 0) + result.counts.get("INTERRUPTED", 0)
        if result.full_disk:
            console.print(f"[red]stopped[/]: {result.stopped}, so no new run started ({left} "
                          "left) and none was marked crashed. Free some space (`python -m runner "
                          "ls` shows what each sweep takes) and run the same command again: it "
                          "goes on where it stopped")
        else:
            console.print(f"[red]stopped[/]: {result.stopped}, so no new run started ({left} "
                          "left). Look at a crash (`python -m runner status "
                          f"{store.root} --state crashed`), fix the cause and run the same "
                          "command again: it goes on where it stopped (add "
                          "runner.retry_crashed=true to retry the crashed runs)")
    elif not result.launched and not result.detached and not result.interrupted \
            and not result.running_elsewhere:
        console.print(nothing_ran(result.counts))
    return result.exit_code


def nothing_ran(counts: dict[str, int], prefix: str = "runner.",
                new_sweep: str = "runner.name=<new name>") -> str:
    """The last line of a command that ran nothing: what did not run, and the one override
    that would run it (``prefix``: where the settings live, ``runner.`` or
    ``hydra.launcher.``)."""
    crashed = counts.get("CRASHED", 0)
    done = counts.get("COMPLETED", 0) + counts.get("PRUNED", 0)
    parts = []
    if crashed:
        parts.append(f"{crashed} crashed run(s) were not run again (add "
                     f"{prefix}retry_crashed=true to retry them)")
    if done:
        parts.append(f"{done} finished run(s) were kept ({prefix}on_code_change=rerun runs "
                     f"those whose code changed; {new_sweep} starts a new sweep, with any new "
                     "tracker or notifier from its first run)")
    return "nothing ran: " + ("; ".join(parts) if parts else "the sweep has no run left to run")
