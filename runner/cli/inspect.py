"""Looking at a sweep and stopping it: ``status``, ``show`` and ``cancel``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape

from runner.cli.consoles import stderr_console
from runner.config import secrets
from runner.errors import RunnerError


def cmd_status(argv: list[str]) -> int:
    from runner.results.status import json_text, render, scan
    from runner.storage.store import SweepStore

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
        from runner.results.modes import mode_for
        from runner.results.queries import select_runs

        by_value = bool(args.sort) and args.sort in store.manifest.get("axes", [])
        if by_value:  # a swept value (trial, seed, task.lr): an order, not better or worse
            mode = "max" if args.max or args.mode == "max" else "min"
        else:
            mode = mode_for(args.sort, "max" if args.max else args.mode) if args.sort else "min"
        rows = select_runs(store, args.state, args.sort, mode, args.top)
        if by_value:
            stderr_console().print(f"sorted by {args.sort} "
                             f"({'descending' if mode == 'max' else 'ascending'})")
        elif args.sort:
            stderr_console().print(f"best first by {args.sort} ({mode} is better)")
        secrets.table_console().print(render(store, rows, None))
        return 0
    if args.json:
        sys.stdout.write(json_text(store) + "\n")
    else:
        secrets.table_console().print(render(store, scan(store), None if args.all else 50))
    return 0


def cmd_show(argv: list[str]) -> int:
    """One run on one screen: values, state history, code, metrics, files, resolved config."""
    import json

    from runner.config.configfile import dump_yaml
    from runner.results.show import describe

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
    out = secrets.table_console()

    def when(t: Any) -> str:
        import time

        return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(t))) if t else "?"

    duration = info["duration_s"]
    out.print(f"[bold]{escape(info['id'])}[/] {escape(info['dir'])}\n"
              f"sweep {escape(str(info['sweep']['name']))} ({escape(info['sweep']['dir'])})\n"
              f"state [bold]{info['state']}[/], attempt {info['attempt']}"
              + (f", {duration:.1f}s" if duration is not None else "")
              + (f": {escape(info['reason'])}" if info["reason"] else ""))
    for what, marks in (("run", info), ("sweep", info["sweep"])):
        if marks["tags"]:
            out.print(f"{what} tags: " + escape(", ".join(marks["tags"])))
        for note in marks["notes"]:
            out.print(f"{what} note ({when(note['time'])}"
                      + (f" by {escape(note['by'])}" if note["by"] else "")
                      + f"): {escape(note['text'])}")
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
    if info["cleaned"]:
        gone = info["cleaned"]
        out.print(f"outputs removed by clean on {when(gone.get('time'))}: "
                  + escape(", ".join(map(str, gone.get("removed") or [])))
                  + (f" (archived in {escape(str(gone['archive']))})" if gone.get("archive")
                     else ""))
    out.print("config:\n" + escape(dump_yaml(info["config"])).rstrip())
    return 0


def cmd_cancel(argv: list[str]) -> int:
    """Stop every live runner process of a sweep on this host, as Ctrl-C would: its running
    runs are terminated and marked INTERRUPTED, and ``resume`` continues later."""
    import signal
    import socket
    import time

    import psutil

    from runner.storage.store import SweepStore

    parser = argparse.ArgumentParser(prog="python -m runner cancel")
    parser.add_argument("sweep_dir", type=Path)
    parser.add_argument("--timeout", type=float, default=60.0,
                        help="seconds to wait for them to stop")
    args = parser.parse_args(argv)
    store = SweepStore(args.sweep_dir)
    host = socket.gethostname()
    live = store.live_runners()
    console = stderr_console()
    jobs_left = _cancel_jobs(store, args.timeout, console)
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


def _cancel_jobs(store: Any, timeout: float, console: Console) -> list[str]:
    """Cancel the sweep's jobs on every backend that queues them (``launchers.CANCELLERS``),
    then record the runs they held as INTERRUPTED."""
    from runner.config.schema import RunnerConf, validate
    from runner.execution.tasks import load_task
    from runner.launchers import CANCELLERS
    from runner.scheduling.scheduler import prepare

    results = {backend: load_task(ref)(store.root, timeout) for backend, ref in CANCELLERS.items()}
    if not any(done or pending for done, pending in results.values()):
        return []
    runner_conf = validate((store.manifest.get("execution") or {}).get("runner"), RunnerConf,
                           "runner")
    prepare(store, runner_conf, console, report_corrupt=False)
    left: list[str] = []
    for backend, (cancelled, pending) in sorted(results.items()):
        left += pending
        if cancelled:
            console.print(f"{backend}: cancelled job(s) {', '.join(cancelled)} of {store.root}"
                          + (f"; {', '.join(pending)} not ended yet" if pending else
                             f"; resume it with `python -m runner resume {store.root}`"))
    return left
