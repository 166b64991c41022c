"""Keeping many sweeps in order: ``ls`` (every sweep under the output folders), ``tag`` and
``note`` (on a sweep or a run)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from rich.markup import escape

from runner.cli.consoles import stderr_console
from runner.config import secrets
from runner.errors import RunnerError


def cmd_ls(argv: list[str]) -> int:
    """Every sweep under the output folders: kind, runs per state, size, last activity, tags."""
    from runner.results.queries import list_sweeps
    from runner.storage.marks import read_marks
    from runner.storage.usage import disk_usage

    parser = argparse.ArgumentParser(prog="python -m runner ls", description=cmd_ls.__doc__)
    parser.add_argument("outputs", type=Path, nargs="*",
                        help="output folders (default: ./outputs)")
    parser.add_argument("--tag", action="append", default=[],
                        help="only sweeps with this tag (repeat: all of them)")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument("--no-size", action="store_true",
                        help="skip measuring each sweep's size on disk (faster)")
    args = parser.parse_args(argv)
    roots = output_folders(args.outputs)
    rows = []
    for info in list_sweeps(roots):
        marks = read_marks(info.root)
        if not set(args.tag) <= set(marks.sweep.tags):
            continue
        from runner.storage.store import SweepStore

        live = len(SweepStore(info.root).live_runners())
        rows.append({
            "name": info.name, "dir": str(info.root), "kind": info.kind, "runs": info.total,
            "counts": {k: v for k, v in info.counts.items() if v},
            "done": info.done,
            "bytes": None if args.no_size else disk_usage(info.root),
            "last_activity": info.modified, "live_runners": live,
            "tags": list(marks.sweep.tags), "notes": len(marks.sweep.notes)})
    if args.json:
        sys.stdout.write(secrets.redact(json.dumps({"sweeps": rows}, indent=1)) + "\n")
        return 0
    if not rows:
        stderr_console().print(
            f"no sweep under {', '.join(map(str, roots))}"
            + (f" tagged {', '.join(args.tag)}" if args.tag else "")
            + "; `python -m runner +sweep=grid ...` starts one")
        return 0
    _print_listing(rows)
    return 0


def output_folders(given: list[Path]) -> list[Path]:
    """The output folders a command was given (default: ./outputs), each checked to exist."""
    roots = given or [Path("outputs")]
    missing = [str(r) for r in roots if not r.is_dir()]
    if missing:
        raise RunnerError(f"no output folder {', '.join(missing)} (give the folder sweeps go "
                          "to, runner.output_dir; default: outputs)")
    return roots


def _print_listing(rows: list[dict[str, Any]]) -> None:
    from rich.table import Table

    from runner.storage.usage import human_size

    table = Table(show_edge=False, header_style="bold")
    for name, justify in (("sweep", "left"), ("kind", "left"), ("runs", "right"),
                          ("done", "right"), ("states", "left"), ("size", "right"),
                          ("last activity", "right"), ("tags", "left")):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    now = time.time()
    for row in rows:
        states = ", ".join(f"{n} {s.lower()}" for s, n in row["counts"].items()
                           if s not in ("COMPLETED",))
        live = " [cyan](live)[/]" if row["live_runners"] else ""
        table.add_row(escape(Path(row["dir"]).name) + live, escape(row["kind"]), str(row["runs"]),
                      f"{row['done']}/{row['runs']}", escape(states),
                      "" if row["bytes"] is None else human_size(row["bytes"]),
                      _ago(now - row["last_activity"]),
                      escape(", ".join(row["tags"]))
                      + (f" ({row['notes']} note{'s' if row['notes'] > 1 else ''})"
                         if row["notes"] else ""))
    secrets.table_console().print(table)


def _ago(seconds: float) -> str:
    seconds = max(0.0, seconds)
    for size, unit in ((86400, "d"), (3600, "h"), (60, "min")):
        if seconds >= size:
            return f"{seconds / size:.0f} {unit} ago"
    return f"{seconds:.0f} s ago"


def _target(path: Path, run: str | None) -> tuple[Path, str | None, str]:
    """(sweep folder, run id or None, what to call it) for a sweep folder (``--run`` picks one
    of its runs by id or prefix) or a run folder."""
    from runner.storage.store import SweepStore, run_of_dir

    if (path / "sweep.json").is_file():
        store = SweepStore(path)
        if run is None:
            return store.root, None, f"sweep {store.root}"
        ref = store.find(run)
        return store.root, ref.id, f"run {ref.id} of {store.root}"
    if run is not None:
        raise RunnerError(f"--run {run}: {path} is not a sweep folder (give the sweep's folder "
                          "and --run, or the run's folder alone)")
    store, ref = run_of_dir(path)
    return store.root, ref.id, f"run {ref.id} of {store.root}"


def cmd_tag(argv: list[str]) -> int:
    """Tag a sweep or a run (``ls --tag`` finds them); with no tag, say its tags."""
    from runner.storage.marks import change_marks, read_marks

    parser = argparse.ArgumentParser(prog="python -m runner tag", description=cmd_tag.__doc__)
    parser.add_argument("path", type=Path, help="a sweep folder, or a run folder")
    parser.add_argument("tags", nargs="*", help="tags to add, e.g. baseline paper-fig-2")
    parser.add_argument("--remove", "-r", action="append", default=[], metavar="TAG",
                        help="a tag to take away (repeat for more)")
    parser.add_argument("--run", help="a run of the sweep, by id or a unique prefix")
    args = parser.parse_intermixed_args(argv)
    root, run_id, what = _target(args.path, args.run)
    if args.tags or args.remove:
        marks = change_marks(root, run_id, tuple(args.tags), tuple(args.remove))
    else:
        marks = read_marks(root).of(run_id)
    out = secrets.table_console()
    out.print(f"{escape(what)}: " + (escape(", ".join(marks.tags)) if marks.tags
                                     else "no tags"))
    return 0


def cmd_note(argv: list[str]) -> int:
    """Write a note on a sweep or a run; with no text, show its notes."""
    from runner.storage.marks import change_marks, read_marks

    parser = argparse.ArgumentParser(prog="python -m runner note", description=cmd_note.__doc__)
    parser.add_argument("path", type=Path, help="a sweep folder, or a run folder")
    parser.add_argument("text", nargs="?", help="the note (quote it)")
    parser.add_argument("--run", help="a run of the sweep, by id or a unique prefix")
    parser.add_argument("--clear", action="store_true", help="remove its notes")
    args = parser.parse_intermixed_args(argv)
    root, run_id, what = _target(args.path, args.run)
    if args.text is not None or args.clear:
        marks = change_marks(root, run_id, note=args.text, clear_notes=args.clear)
    else:
        marks = read_marks(root).of(run_id)
    out = secrets.table_console()
    if not marks.notes:
        out.print(f"{escape(what)}: no notes")
    for note in marks.notes:
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(note.time)) if note.time else "?"
        out.print(f"{escape(what)}, {when}" + (f" by {escape(note.by)}" if note.by else "")
                  + f":\n  {escape(note.text)}")
    return 0


def _age(text: str) -> float:
    """'30d', '12h', '90min', '2w', '45s' -> seconds."""
    import re

    units = {"s": 1, "min": 60, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*(s|min|m|h|d|w)", text.strip())
    if not match:
        raise RunnerError(f"--older-than {text}: give a number and a unit, e.g. 30d, 12h, 90min")
    return float(match.group(1)) * units[match.group(2)]


KEEP = "keep"  # a sweep or run tagged keep is never cleaned


def cmd_clean(argv: list[str]) -> int:
    """Delete or archive whole sweeps, or runs' outputs or checkpoints, by age, tag or state; a
    dry run unless --yes. A sweep in use (a live runner, a RUNNING lease) and anything tagged
    keep are never touched."""
    from runner.results.status import STATE_ORDER
    from runner.storage import cleanup
    from runner.storage.usage import human_size

    parser = argparse.ArgumentParser(prog="python -m runner clean", description=cmd_clean.__doc__)
    parser.add_argument("dirs", type=Path, nargs="*",
                        help="output folders or sweep folders (default: ./outputs)")
    parser.add_argument("--older-than", metavar="AGE",
                        help="last activity longer ago (30d, 12h); with --runs or --checkpoints: "
                             "the run's last change")
    parser.add_argument("--tag", action="append", default=[],
                        help="sweeps with this tag; with --runs or --checkpoints: runs with it "
                             "(or in a sweep with it)")
    parser.add_argument("--state", action="append", default=[], type=str.upper,
                        help="sweeps whose every run is in this state (repeat for more); with "
                             "--runs or --checkpoints: runs in this state")
    what = parser.add_mutually_exclusive_group()
    what.add_argument("--runs", action="store_true",
                      help="remove the outputs of runs (logs, metrics, checkpoints, files the "
                           "task wrote), keeping each run's config, values and state history")
    what.add_argument("--checkpoints", action="store_true",
                      help="delete runs' checkpoints/ folders only")
    parser.add_argument("--keep-best", type=int, metavar="K",
                        help="with --runs or --checkpoints: spare the best K runs by --metric")
    parser.add_argument("--metric", help="the metric --keep-best ranks by, e.g. val/acc")
    parser.add_argument("--mode", choices=["max", "min"], help="max or min is better")
    parser.add_argument("--archive", type=Path, metavar="DIR",
                        help="first pack each sweep (DIR/<sweep>.tar.gz) or run "
                             "(DIR/<sweep>/<run>.tar.gz) into DIR")
    parser.add_argument("--yes", action="store_true", help="do it (default: say what would go)")
    args = parser.parse_args(argv)
    bad = [s for s in args.state if s not in STATE_ORDER]
    if bad:
        raise RunnerError(f"--state {bad[0]}: one of {', '.join(STATE_ORDER)}")
    per_run = args.runs or args.checkpoints
    if (args.keep_best is not None) != bool(args.metric):
        raise RunnerError("--keep-best K and --metric M go together (the best K runs by M are "
                          "spared)")
    if args.keep_best is not None and (args.keep_best < 0 or not per_run):
        raise RunnerError("--keep-best takes a number >= 0, with --runs or --checkpoints")
    if args.archive and args.checkpoints:
        raise RunnerError("--archive packs sweeps or runs; --checkpoints deletes checkpoints")
    roots = args.dirs or [Path("outputs")]
    missing = [str(r) for r in roots if not r.is_dir()]
    if missing:
        raise RunnerError(f"no folder {', '.join(missing)}")
    named = [r for r in roots if (r / "sweep.json").is_file()]
    if not (named or args.older_than or args.tag or args.state or per_run):
        raise RunnerError("say what to clean: --older-than AGE, --tag T, --state S, --runs, "
                          "--checkpoints, or sweep folders by name (nothing is cleaned by "
                          "default)")
    filters = Filters(_age(args.older_than) if args.older_than else None, args.tag, args.state)
    if args.metric:
        from runner.results.modes import mode_for

        filters.best = (args.keep_best, args.metric, mode_for(args.metric, args.mode))
    console = stderr_console()
    kind = "runs" if args.runs else "checkpoints" if args.checkpoints else "sweeps"
    plan = targets(roots, kind, filters, console)
    total = sum(t.size for t in plan)
    verb = "archive" if args.archive else "delete"
    out = secrets.table_console()
    for target in plan:
        out.print(f"{verb + 'd' if args.yes else 'would ' + verb} {target.what} "
                  f"{escape(str(target.folder))} ({human_size(target.size)})")
    if not plan:
        console.print("nothing to clean: nothing matches (a sweep or run tagged keep, a sweep "
                      "in use, or one not matching every filter is left alone)")
        return 0
    if not args.yes:
        console.print(f"dry run: {len(plan)} folder(s), {human_size(total)}; add --yes to "
                      f"{verb} them")
        return 0
    for target in plan:
        if target.what == "run outputs":
            cleanup.clear_run(target.folder, args.archive)
            continue
        if args.archive:
            cleanup.archive(target.folder, args.archive)
        cleanup.remove_tree(target.folder)
    for parent in {t.folder.parent for t in plan if t.what != "run outputs"}:
        cleanup.remove_leftovers(parent)
    console.print(f"{verb}d {len(plan)} folder(s), {human_size(total)} freed")
    return 0


@dataclasses.dataclass
class Filters:
    older: float | None  # seconds
    tags: list[str]
    states: list[str]
    best: tuple[int, str, str] | None = None  # (K, metric, mode): the best K runs are spared


@dataclasses.dataclass
class Target:
    what: str  # sweep, run outputs, checkpoints
    folder: Path
    size: int


def targets(roots: list[Path], kind: str, f: Filters, console: Any) -> list[Target]:
    """What ``clean`` would remove: whole sweeps (``kind`` sweeps), or runs' outputs or
    checkpoints, matching every filter; sweeps in use or tagged keep are left out (and said)."""
    from runner.results.queries import list_sweeps, select_runs
    from runner.results.status import read_run
    from runner.storage import cleanup
    from runner.storage.marks import read_marks
    from runner.storage.store import SweepStore
    from runner.storage.usage import disk_usage

    now = time.time()
    out: list[Target] = []
    for info in list_sweeps(roots):
        marks = read_marks(info.root)
        if KEEP in marks.sweep.tags:
            continue
        if kind == "sweeps":
            if not set(f.tags) <= set(marks.sweep.tags) or (
                    f.older is not None and now - info.modified < f.older) or (
                    f.states and {s for s, n in info.counts.items() if n} - set(f.states)):
                continue
        store = SweepStore(info.root)
        busy = cleanup.why_busy(store)
        if busy:
            console.print(f"skipped {escape(str(info.root))}: {escape(busy)}")
            continue
        if kind == "sweeps":
            out.append(Target("sweep", info.root, disk_usage(info.root)))
            continue
        spared = {r.ref.id for r in select_runs(store, None, f.best[1], f.best[2], f.best[0])
                  } if f.best and f.best[0] else set()
        for ref in store.runs():
            tags = marks.of_run(ref.id).tags
            if ref.id in spared or KEEP in tags:
                continue
            if f.tags and not set(f.tags) <= set(tags) | set(marks.sweep.tags):
                continue
            row = read_run(ref)
            if f.states and row.state not in f.states:
                continue
            if f.older is not None:
                changed = os.stat(row.record.path).st_mtime if row.record else os.stat(
                    ref.dir).st_mtime
                if now - changed < f.older:
                    continue
            if kind == "checkpoints":
                if ref.paths.checkpoints.is_dir():
                    out.append(Target("checkpoints", ref.paths.checkpoints,
                                      disk_usage(ref.paths.checkpoints)))
            else:
                size = cleanup.outputs_size(ref.paths)
                if size:
                    out.append(Target("run outputs", ref.paths.root, size))
    return out
