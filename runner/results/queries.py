"""Questions people ask about sweeps, answered from the run store: which sweeps are there, which
runs (by state, best first by a metric), what did one run do, which metric series exist.

Plain data in, plain data out: the ``status`` command and the Discord bot both ask these, and
neither formats anything here.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runner.config.configfile import load_run_config
from runner.errors import CorruptStateError, StateError
from runner.results.status import STATE_ORDER, RunStatus, counts, read_run, scan
from runner.storage.marks import read_marks
from runner.storage.metrics import flatten, last_metrics
from runner.storage.store import RunRef, SweepStore


@dataclass
class SweepInfo:
    name: str
    root: Path
    kind: str
    modified: float
    counts: dict[str, int]
    tags: tuple[str, ...] = ()

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def done(self) -> int:
        """Runs that ended as planned (COMPLETED, or PRUNED by a study's pruner)."""
        return sum(self.counts.get(s, 0) for s in ("COMPLETED", "PRUNED"))


def _inside(path: str | Path, root: Path) -> bool:
    """``path`` (symlinks resolved) is ``root`` or lies under it."""
    real = Path(os.path.realpath(path))
    return real == root or root in real.parents


def check_contained(sweep: Path) -> None:
    """Refuse (StateError) a sweep whose tree holds a symbolic link, so that every path read
    inside it for someone else (a chat user) stays inside it. A sweep this user owns and nobody
    else can write (``runner.config.trust``) is checked down to its run folders (one listing); any
    other is walked whole."""
    from runner.config.trust import why_untrusted

    runs = sweep / "runs"
    listing = (sweep, sweep / "sweep.json", sweep / "sweep.added.jsonl", runs)
    for path in listing:
        if os.path.islink(path):
            raise StateError(f"sweep {sweep.name}: {path.name} is a symbolic link; sweeps "
                             "holding links are not shown here")
    trusted = all(why_untrusted(p) is None for p in listing)
    if trusted:
        with os.scandir(sweep) as top, os.scandir(runs) as entries:
            links = [e.name for e in [*top, *entries] if e.is_symlink()]
    else:
        links = [name for dirpath, dirnames, filenames in os.walk(sweep)
                 for name in (*dirnames, *filenames)
                 if os.path.islink(os.path.join(dirpath, name))]
    if links:
        raise StateError(f"sweep {sweep.name} holds a symbolic link ({links[0]}); sweeps "
                         "holding links are not shown here")


def sweep_dirs(roots: Iterable[Path | str]) -> list[Path]:
    """Sweep directories under the output folders (or given directly), most recently changed
    first. Lists folders only: no run is read. An entry that is a symlink leading outside its
    output folder is not listed."""
    found = []
    for root in roots:
        root = Path(root)
        if (root / "sweep.json").is_file():
            found.append(root)
            continue
        real_root = Path(os.path.realpath(root))
        try:
            entries = list(os.scandir(root))
        except OSError:
            continue
        found += [Path(e.path) for e in entries
                  if not e.name.startswith(".") and os.path.isfile(f"{e.path}/sweep.json")
                  and _inside(e.path, real_root) and _inside(f"{e.path}/sweep.json", real_root)
                  and _inside(f"{e.path}/runs", real_root)]
    return sorted(found, key=_mtime, reverse=True)


def list_sweeps(roots: Iterable[Path | str], limit: int | None = None,
                contained: bool = False) -> list[SweepInfo]:
    """Sweeps under the output folders, most recently changed first, with counts per state
    (``contained``: without those holding a symbolic link)."""
    out = []
    for d in sweep_dirs(roots)[:limit]:
        try:
            if contained:
                check_contained(d)
            store = SweepStore(d)
            rows = scan(store, details=False)
            out.append(SweepInfo(str(store.manifest.get("name", d.name)), store.root,
                                 str(store.manifest.get("kind", "")), _mtime(d), counts(rows),
                                 read_marks(store.root).sweep.tags))
        except (StateError, OSError):
            continue  # a sweep being written, or not one of ours
    return out


def _mtime(d: Path) -> float:
    try:
        return max(os.stat(d / "runs").st_mtime, os.stat(d / "sweep.json").st_mtime)
    except OSError:
        return 0.0


def find_sweep(roots: Iterable[Path | str], name: str, contained: bool = False) -> SweepStore:
    """A sweep by name, unique name prefix, or path; only sweeps under ``roots`` are found
    (a path elsewhere, or a symlink leading elsewhere, is not). ``contained``: also refuse a
    sweep holding a symbolic link (``check_contained``: what chat reads)."""
    store = _find_sweep(list(roots), name)
    if contained:
        check_contained(store.root)
    return store


def _find_sweep(roots: list[Path | str], name: str) -> SweepStore:
    dirs = sweep_dirs(roots)
    if name and ("/" in name or name in (".", "..")):
        real = Path(os.path.realpath(name))
        for d in dirs:
            if Path(os.path.realpath(d)) == real:
                return SweepStore(d)
        raise StateError(f"no sweep at '{name}' under the output folders")
    exact = [d for d in dirs if d.name == name]
    matches = exact or [d for d in dirs if d.name.startswith(name)]
    if len(matches) == 1:
        return SweepStore(matches[0])
    if not matches:
        raise StateError(f"no sweep named '{name}'" + _suggest(name, [d.name for d in dirs]))
    raise StateError(f"'{name}' matches {len(matches)} sweeps: "
                     + ", ".join(sorted(d.name for d in matches)[:10]))


def _suggest(name: str, names: Sequence[str]) -> str:
    import difflib

    close = difflib.get_close_matches(name, names, n=3, cutoff=0.5)
    return f"; did you mean {', '.join(close)}?" if close else ""


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) else number


def metric_of(row: RunStatus, key: str) -> float | None:
    """A run's value of ``key``: its summary if it finished, else its last logged value."""
    value = row.summary.get(key)
    if value is None:
        value = (last_metrics(row.ref.paths.metrics) or {}).get(key)
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) else number


def select_runs(store: SweepStore, state: str | None = None, sort: str | None = None,
                mode: str = "min", top: int | None = None) -> list[RunStatus]:
    """Runs of a sweep, optionally of one state, sorted by a metric (runs without it last)."""
    rows = scan(store)
    if state:
        wanted = state.upper()
        if wanted not in STATE_ORDER:
            raise StateError(f"unknown state '{state}'; one of: {', '.join(STATE_ORDER)}")
        rows = [r for r in rows if r.state == wanted]
    if sort:
        sign = 1.0 if mode == "min" else -1.0
        by_value = sort in store.manifest.get("axes", [])  # a swept value: trial, seed, ...
        keyed = [(_number(r.ref.values.get(sort)) if by_value else metric_of(r, sort), r)
                 for r in rows]
        if rows and all(v is None for v, _ in keyed):
            known = metric_names(store)
            raise StateError(f"no run has a metric '{sort}'"
                             + (f"; metrics: {', '.join(known[:20])}" if known
                                else "; no metric is logged yet"))
        keyed.sort(key=lambda kv: (kv[0] is None, sign * kv[0] if kv[0] is not None else 0.0))
        rows = [r for _, r in keyed]
    return rows[:top] if top else rows


_BOOKKEEPING = frozenset({"step", "time", "attempt"})


def metric_names(store: SweepStore, sample: int = 5, head_bytes: int = 65536,
                 rows: list[RunStatus] | None = None) -> list[str]:
    """Metric names the sweep's runs logged: finished runs' summaries, and the keys in the
    first lines of a few runs' metrics files (a metric logged rarely may be missed). ``rows``:
    the runs as the caller read them (else scanned here)."""
    names: set[str] = set()
    for row in scan(store) if rows is None else rows:
        names.update(flatten(row.summary))
    for ref in store.runs()[:sample]:
        try:
            with open(ref.paths.metrics, encoding="utf-8") as f:
                lines = f.read(head_bytes).splitlines()[:-1]  # the last may be cut
        except OSError:
            continue
        for line in lines:
            try:
                names.update(json.loads(line))
            except ValueError:
                continue
    return sorted(names - _BOOKKEEPING)


def find_run(store: SweepStore, run: str) -> RunRef:
    try:
        return store.find(run)
    except StateError:
        raise StateError(f"no single run '{run}' in sweep {store.root.name}") from None


def key_matches(key: str, wanted: Sequence[str]) -> bool:
    """``key`` is one of ``wanted`` or under one (``train`` -> ``train/loss``; none wanted: all)."""
    return not wanted or any(key == w or key.startswith(w.rstrip(".") + ".") or
                             key.startswith(w.rstrip("/") + "/") for w in wanted)


def run_summary(store: SweepStore, run: str, keys: Sequence[str] = ()) -> dict[str, Any]:
    """One run: its swept values, config, state, duration, and last metrics (``keys`` filters
    config and metrics by exact key or key prefix, e.g. ``train`` or ``val/loss``)."""
    ref = find_run(store, run)
    row = read_run(ref)
    try:
        config = flatten(load_run_config(ref.paths))
    except (OSError, CorruptStateError, ValueError):
        config = {}
    metrics = row.summary or (last_metrics(ref.paths.metrics) or {})
    marks = read_marks(store.root).of_run(ref.id)
    return {
        "id": ref.id, "sweep": store.root.name, "dir": ref.dir, "state": row.state,
        "reason": row.reason, "duration_s": row.duration(time.time()),
        "attempt": row.record.attempt if row.record else 0,
        "values": ref.values, "tags": list(marks.tags),
        "notes": [n.text for n in marks.notes],
        "config": {k: v for k, v in config.items() if key_matches(k, keys)},
        "metrics": {k: v for k, v in flatten(metrics).items() if key_matches(k, keys)},
    }
