"""What the web view shows, read from the run store and never written to it.

One ``Catalog`` per server: the sweeps under its output folders, each with a FLAG cache kept in
memory (seeded from the sweep's ``.status-cache/`` files when there are any, never saved), so a
page polled every few seconds costs a ``stat`` per run and a parse per changed FLAG. Runs are paged,
filtered and sorted here, in the server, so a browser never receives a 100,000-row table. Every
sweep is looked up by name under the output folders, and a sweep holding a symbolic link is not
served (``queries.check_contained``): nothing outside the root is read.
"""

from __future__ import annotations

import json
import math
import os
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from runner.config.secrets import redact
from runner.errors import RunnerError, StateError
from runner.results import queries
from runner.results.status import (
    FlagCache,
    RunStatus,
    counts,
    liveness,
    read_run,
    row_json,
)
from runner.storage.atomic import no_follow
from runner.storage.marks import read_marks
from runner.storage.store import RunRef, SweepStore

PAGE_MAX = 500
TAIL_BYTES = 16_384
MAX_CURVES = 30  # groups drawn in one chart
MAX_SERIES_RUNS = 2_000  # runs whose metrics files a chart reads


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) or math.isinf(number) else number


def clean(obj: Any) -> Any:
    """JSON-safe: NaN and infinities become null (a browser's JSON.parse refuses them)."""
    if isinstance(obj, float):
        return None if math.isnan(obj) or math.isinf(obj) else obj
    if isinstance(obj, dict):
        return {str(k): clean(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [clean(v) for v in obj]
    return obj


def dumps(obj: Any) -> str:
    return redact(json.dumps(clean(obj), default=str))


REFRESH_S = 2.0  # a sweep's snapshot of every run is read again at most this often
CONTAINED_S = 10.0  # how long a sweep's symlink check holds


@dataclass
class _Sweep:
    """What the server keeps of one sweep: its store (the manifest re-read only when it
    changed), an in-memory FLAG cache, and the last snapshot of every run's state."""

    store: SweepStore
    cache: FlagCache | None = None  # loaded by the first scan (a page needs none)
    checked: float = 0.0  # when check_contained last passed
    rows: list[RunStatus] | None = None
    metrics: list[str] = field(default_factory=list)
    scanned: float = 0.0
    scanning: bool = False
    ids: dict[str, RunRef] = field(default_factory=dict)
    ids_of: int = -1  # (the manifest object the index was built from)
    lock: threading.Lock = field(default_factory=threading.Lock)
    scanned_event: threading.Condition = field(init=False)

    def __post_init__(self) -> None:
        self.scanned_event = threading.Condition(self.lock)


class Catalog:
    def __init__(self, roots: list[Path]) -> None:
        self.roots = roots
        self._sweeps: dict[Path, _Sweep] = {}
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ sweeps

    def sweeps(self) -> list[dict[str, Any]]:
        out = []
        for info in queries.list_sweeps(self.roots, contained=True):
            marks = read_marks(info.root).sweep
            total = info.total
            done = info.done
            out.append({"name": info.root.name, "title": info.name, "kind": info.kind,
                        "runs": total, "counts": info.counts, "done": done,
                        "progress": done / total if total else 0.0,
                        "last_activity": info.modified, "tags": list(marks.tags),
                        "notes": len(marks.notes)})
        return out

    def sweep(self, name: str) -> _Sweep:
        """A sweep under the roots by its folder's name (none holding a symbolic link)."""
        if not name or "/" in name or name.startswith("."):
            raise StateError(f"no sweep named '{name}'")
        for root in self.roots:
            folder = Path(root) / name
            if folder.is_dir() and not folder.is_symlink() and (folder / "sweep.json").is_file():
                break
        else:
            raise StateError(f"no sweep named '{name}' under {', '.join(map(str, self.roots))}")
        with self._lock:
            sweep = self._sweeps.get(folder)
            if sweep is None:
                sweep = self._sweeps[folder] = _Sweep(SweepStore(folder))
        now = time.monotonic()
        if now - sweep.checked > CONTAINED_S:
            queries.check_contained(folder)
            sweep.checked = now
        sweep.store.refresh()
        return sweep

    def store(self, name: str) -> SweepStore:
        return self.sweep(name).store

    def _scan(self, sweep: _Sweep) -> None:
        try:
            if sweep.cache is None:
                # the sweep's own cache files, read once and never written: the server
                # writes nothing
                sweep.cache = FlagCache(sweep.store, writable=False)
            rows = [read_run(ref, True, sweep.cache) for ref in sweep.store.runs()]
            metrics = queries.metric_names(sweep.store, rows=rows)
            with sweep.lock:
                sweep.rows, sweep.metrics, sweep.scanned = rows, metrics, time.monotonic()
        finally:
            with sweep.lock:
                sweep.scanning = False
                sweep.scanned_event.notify_all()

    def snapshot(self, sweep: _Sweep, wait: bool) -> list[RunStatus] | None:
        """Every run's state: the last snapshot, read again in the background once it is older
        than ``REFRESH_S``; ``wait``: read now if there is none yet (else None meanwhile)."""
        with sweep.lock:
            stale = time.monotonic() - sweep.scanned > REFRESH_S
            start = stale and not sweep.scanning and (sweep.rows is not None or not wait)
            if start:
                sweep.scanning = True
        if start:
            threading.Thread(target=self._scan, args=(sweep,), daemon=True).start()
        if sweep.rows is None and wait:
            with sweep.lock:  # one scan at a time builds the first snapshot; others wait for it
                while sweep.rows is None and sweep.scanning:
                    sweep.scanned_event.wait()
                mine = sweep.rows is None
                if mine:
                    sweep.scanning = True
            if mine:
                self._scan(sweep)
        return sweep.rows

    def find(self, sweep: _Sweep, run_id: str) -> RunRef:
        """A run by its full id (an index, rebuilt when the manifest changes) or a prefix."""
        manifest = sweep.store.manifest
        if sweep.ids_of != id(manifest):
            sweep.ids = {ref.id: ref for ref in sweep.store.runs()}
            sweep.ids_of = id(manifest)
        found = sweep.ids.get(run_id)
        return found if found is not None else queries.find_run(sweep.store, run_id)

    # ------------------------------------------------------------------ runs of a sweep

    def runs_page(self, name: str, offset: int = 0, limit: int = 50, state: str = "",
                  text: str = "", sort: str = "", order: str = "asc") -> dict[str, Any]:
        """One page of a sweep's runs. The page's runs are read afresh; the counts, the order
        and the filters come from the sweep's snapshot. The first page of the manifest's order
        needs no snapshot: it is served at once, its counts follow on a later poll."""
        sweep = self.sweep(name)
        store = sweep.store
        manifest = store.manifest
        limit = max(1, min(PAGE_MAX, limit))
        plain = not (state or text or sort)
        rows = sweep.rows if plain else self.snapshot(sweep, wait=True)
        if rows is None:  # (plain) the manifest's order: the page alone
            refs = store.runs(offset, offset + limit)
            total, total_counts, selected = len(manifest["runs"]), None, None
        else:
            total_counts = counts(rows)
            selected = rows
            if state:
                selected = [r for r in selected if r.state == state.upper()]
            if text:
                wanted = text.lower()
                selected = [r for r in selected if wanted in _haystack(r)]
            if sort:
                selected = _sorted(selected, sort, order == "desc", manifest.get("axes", []))
            refs = [r.ref for r in selected[offset:offset + limit]]
            total = len(selected)
        page = [read_run(ref, True, sweep.cache) for ref in refs]  # as they are now
        now = time.time()
        stale = float((manifest.get("execution", {}).get("runner") or {}).get(
            "stale_after_s", 120.0))
        live = liveness(page, stale, now)
        marks = read_marks(store.root)
        out = []
        for row in page:
            item = row_json(row, now, *live.get(row.ref.id, (None, "")))
            item["metrics"] = _shown_metrics(row)
            item["tags"] = list(marks.of_run(row.ref.id).tags)
            out.append(item)
        if plain:
            self.snapshot(sweep, wait=False)  # (after the page: read on while it is sent)
        return {"name": store.root.name, "title": manifest.get("name"),
                "kind": manifest.get("kind"), "dir": str(store.root),
                "axes": manifest.get("axes", []), "varying": manifest.get("varying", []),
                "counts": total_counts, "runs_in_sweep": len(manifest["runs"]),
                "total": total, "offset": offset, "limit": limit, "runs": out,
                "tags": list(marks.sweep.tags), "notes": [n.as_dict() for n in marks.sweep.notes],
                "metrics": sweep.metrics if rows is not None else queries.metric_names(
                    store, rows=page), "metric": _objective(manifest)}

    # ------------------------------------------------------------------ one run

    def run(self, name: str, run_id: str) -> dict[str, Any]:
        from runner.results.show import describe_run
        from runner.study.history import DECISIONS

        sweep = self.sweep(name)
        ref = self.find(sweep, run_id)
        info = describe_run(sweep.store, ref)
        paths = ref.paths
        info["logs"] = {"stdout": _tail(paths.stdout), "stderr": _tail(paths.stderr)}
        crash = paths.root / "CRASH.txt"
        info["traceback"] = _tail(crash) if crash.is_file() and not crash.is_symlink() else ""
        info["pruning"] = _jsonl(paths.root / DECISIONS)
        info["file_list"] = sorted(
            e.name + ("/" if e.is_dir(follow_symlinks=False) else "")
            for e in os.scandir(paths.root) if not e.name.startswith("."))
        info["metrics_keys"] = _metric_keys(paths.metrics)
        return info

    def series(self, name: str, run_id: str, metric: str) -> dict[str, Any]:
        from runner.results.aggregate import read_series

        sweep = self.sweep(name)
        ref = self.find(sweep, run_id)
        steps, values = read_series(str(ref.paths.metrics), metric)
        return {"metric": metric, "steps": steps.tolist(), "values": values.tolist()}

    # ------------------------------------------------------------------ across runs

    def curves(self, name: str, metric: str) -> dict[str, Any]:
        """Mean and 95% band over seeds per setting, grouped as ``report`` groups them."""
        from runner.results.aggregate import group_runs, rank, results_of
        from runner.results.plots import aligned

        sweep = self.sweep(name)
        store = sweep.store
        rows = (self.snapshot(sweep, wait=True) or [])[:MAX_SERIES_RUNS]
        mode = _mode(metric)
        groups = rank(group_runs(store, results_of(rows, metric, "final", mode)), mode)
        out = []
        for group in groups[:MAX_CURVES]:
            steps, mean, half = aligned(group)
            stats = group.stats()
            out.append({"label": group.label, "steps": steps.tolist(), "mean": mean.tolist(),
                        "low": (mean - half).tolist(), "high": (mean + half).tolist(),
                        "n": stats["n"], "runs": stats["runs"], "final_mean": stats["mean"],
                        "ci": [stats["ci_low"], stats["ci_high"]]})
        return {"metric": metric, "mode": mode, "groups": out, "more": len(groups) > MAX_CURVES,
                "runs_read": len(rows)}

    def search(self, name: str, metric: str) -> dict[str, Any]:
        """For a random search or a study: each run's parameters and final metric, in order."""
        from runner.results.aggregate import results_of

        sweep = self.sweep(name)
        store = sweep.store
        rows = (self.snapshot(sweep, wait=True) or [])[:MAX_SERIES_RUNS]
        mode = _mode(metric)
        params = [k for k in store.manifest.get("varying", []) if k not in ("trial",)]
        points = []
        results = results_of(rows, metric, "final", mode)
        for result in results:
            value = result.value
            if value is None and len(result.series):  # pruned: where it stopped
                value = float(result.series[-1])
            points.append({"id": result.id, "state": result.state,
                           "values": {k: result.values.get(k) for k in params},
                           "metric": _number(value)})
        from runner.results.importances import importances
        from runner.results.report import log_axes

        keys, logs = log_axes(store)
        found = importances(results, keys, logs, mode) if keys else None
        return {"metric": metric, "mode": mode, "params": params, "points": points,
                "importances": found, "log": sorted(logs)}

    def compare(self, names: list[str], metric: str) -> dict[str, Any]:
        """Several sweeps' curves of one metric, each grouped as ``report`` groups it."""
        if not 1 <= len(names) <= 8:
            raise StateError("compare 1 to 8 sweeps")
        return {"metric": metric,
                "sweeps": [{"name": n, **self.curves(n, metric)} for n in names]}


def _mode(metric: str) -> str:
    """The metric's direction when its name says it (loss: min, acc: max), else max."""
    from runner.results.modes import mode_for

    try:
        return mode_for(metric)
    except RunnerError:
        return "max"


def _objective(manifest: dict[str, Any]) -> str | None:
    execution = manifest.get("execution") or {}
    sweep = execution.get("sweep") or {}
    runner_cfg = execution.get("runner") or {}
    metric = (sweep.get("metric") if isinstance(sweep, dict) else None) or \
        runner_cfg.get("metric")
    if isinstance(metric, list):  # a study of several objectives: its first
        return str(metric[0]) if metric else None
    return metric


def _haystack(row: RunStatus) -> str:
    values = " ".join(f"{k}={v}" for k, v in row.ref.values.items())
    return f"{row.ref.id} {row.state} {values} {row.reason}".lower()


def _sorted(rows: list[RunStatus], key: str, descending: bool,
            axes: list[str]) -> list[RunStatus]:
    """By a swept value, a summary metric, the state or the duration; runs without it last."""
    now = time.time()

    def value(row: RunStatus) -> Any:
        if key == "state":
            return row.state
        if key == "duration":
            return row.duration(now)
        if key == "id":
            return row.ref.id
        if key in axes:
            return row.ref.values.get(key)
        return _number(row.summary.get(key))

    keyed = [(value(r), r) for r in rows]
    present = [(v, r) for v, r in keyed if v is not None]
    absent = [r for v, r in keyed if v is None]
    try:
        present.sort(key=lambda vr: vr[0], reverse=descending)
    except TypeError:  # mixed types: compare as text
        present.sort(key=lambda vr: str(vr[0]), reverse=descending)
    return [r for _, r in present] + absent


def _shown_metrics(row: RunStatus) -> dict[str, Any]:
    if row.summary:
        return {k: v for k, v in row.summary.items() if isinstance(v, int | float | str)}
    if row.state == "RUNNING":
        from runner.storage.metrics import last_metrics

        return {k: v for k, v in (last_metrics(row.ref.paths.metrics) or {}).items()
                if k not in ("time", "attempt")}
    return {}


def _opened(path: Path) -> BinaryIO | None:
    """A run's file opened for reading, never through a symbolic link (None: not there)."""
    try:
        return open(path, "rb", opener=no_follow)  # noqa: SIM115 (the callers close it)
    except OSError:
        return None


def _tail(path: Path, size: int = TAIL_BYTES) -> str:
    f = _opened(path)
    if f is None:
        return ""
    with f:
        end = f.seek(0, os.SEEK_END)
        f.seek(max(0, end - size))
        data = f.read(size)
    return redact(data.decode("utf-8", "replace"))


def _jsonl(path: Path, limit: int = 1000) -> list[Any]:
    out: deque[Any] = deque(maxlen=limit)
    f = _opened(path)
    if f is None:
        return []
    with f:
        for line in f:
            try:
                out.append(json.loads(line.decode("utf-8", "replace")))
            except ValueError:
                continue  # a torn last line
    return list(out)


def _metric_keys(path: Path, head: int = 65536) -> list[str]:
    keys: set[str] = set()
    f = _opened(path)
    if f is None:
        return []
    with f:
        lines = f.read(head).splitlines()
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict):
            keys.update(k for k, v in record.items() if isinstance(v, int | float)
                        and k not in ("step", "time", "attempt"))
    return sorted(keys)
