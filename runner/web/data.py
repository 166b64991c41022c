"""What the web view shows, read from the run store and never written to it.

One ``Catalog`` per server: the sweeps under its output folders, each with a FLAG cache kept in
memory (seeded from the sweep's ``.status-cache.json`` when there is one, never saved), so a page
polled every few seconds costs a ``stat`` per run and a parse per changed FLAG. Runs are paged,
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
from pathlib import Path
from typing import Any

from runner.config.secrets import redact
from runner.errors import StateError
from runner.results import queries
from runner.results.status import (
    FlagCache,
    RunStatus,
    counts,
    liveness,
    read_run,
    row_json,
)
from runner.storage.marks import read_marks
from runner.storage.store import SweepStore

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


class Catalog:
    def __init__(self, roots: list[Path]) -> None:
        self.roots = roots
        self._caches: dict[Path, FlagCache] = {}
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ sweeps

    def sweeps(self) -> list[dict[str, Any]]:
        out = []
        for info in queries.list_sweeps(self.roots, contained=True):
            marks = read_marks(info.root).sweep
            total = info.total
            done = sum(info.counts.get(s, 0) for s in ("COMPLETED", "PRUNED"))
            out.append({"name": info.root.name, "title": info.name, "kind": info.kind,
                        "runs": total, "counts": info.counts, "done": done,
                        "progress": done / total if total else 0.0,
                        "last_activity": info.modified, "tags": list(marks.tags),
                        "notes": len(marks.notes)})
        return out

    def store(self, name: str) -> SweepStore:
        if "/" in name or name.startswith("."):
            raise StateError(f"no sweep named '{name}'")
        return queries.find_sweep(self.roots, name, contained=True)

    def rows(self, store: SweepStore) -> list[RunStatus]:
        """Every run's state, read through this sweep's in-memory FLAG cache."""
        with self._lock:
            cache = self._caches.get(store.root)
            if cache is None:
                cache = FlagCache(store)  # the sweep's own cache file, read once ...
                cache.path = None  # ... and never written: the server writes nothing
                self._caches[store.root] = cache
        return [read_run(ref, True, cache) for ref in store.runs()]

    # ------------------------------------------------------------------ runs of a sweep

    def runs_page(self, name: str, offset: int = 0, limit: int = 50, state: str = "",
                  text: str = "", sort: str = "", order: str = "asc") -> dict[str, Any]:
        store = self.store(name)
        manifest = store.manifest
        rows = every = self.rows(store)
        total_counts = counts(rows)
        if state:
            rows = [r for r in rows if r.state == state.upper()]
        if text:
            wanted = text.lower()
            rows = [r for r in rows if wanted in _haystack(r)]
        if sort:
            rows = _sorted(rows, sort, order == "desc", manifest.get("axes", []))
        limit = max(1, min(PAGE_MAX, limit))
        page = rows[offset:offset + limit]
        now = time.time()
        stale = float((manifest.get("execution", {}).get("runner") or {}).get(
            "stale_after_s", 120.0))
        live = liveness(page, stale, now)
        run_marks = read_marks(store.root).runs
        out = []
        for row in page:
            item = row_json(row, now, *live.get(row.ref.id, (None, "")))
            item["metrics"] = _shown_metrics(row)
            item["tags"] = list(run_marks[row.ref.id].tags) if row.ref.id in run_marks else []
            out.append(item)
        marks = read_marks(store.root).sweep
        return {"name": store.root.name, "title": manifest.get("name"),
                "kind": manifest.get("kind"), "dir": str(store.root),
                "axes": manifest.get("axes", []), "varying": manifest.get("varying", []),
                "counts": total_counts, "total": len(rows), "offset": offset, "limit": limit,
                "runs": out, "tags": list(marks.tags),
                "notes": [n.as_dict() for n in marks.notes],
                "metrics": queries.metric_names(store, rows=every),
                "metric": _objective(manifest)}

    # ------------------------------------------------------------------ one run

    def run(self, name: str, run_id: str) -> dict[str, Any]:
        from runner.results.show import describe
        from runner.study.history import DECISIONS

        store = self.store(name)
        ref = queries.find_run(store, run_id)
        info = describe(ref.dir)
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

        store = self.store(name)
        ref = queries.find_run(store, run_id)
        steps, values = read_series(str(ref.paths.metrics), metric)
        return {"metric": metric, "steps": steps.tolist(), "values": values.tolist()}

    # ------------------------------------------------------------------ across runs

    def curves(self, name: str, metric: str) -> dict[str, Any]:
        """Mean and 95% band over seeds per setting, grouped as ``report`` groups them."""
        from runner.results.aggregate import group_runs, mode_for, rank, results_of
        from runner.results.plots import aligned

        store = self.store(name)
        rows = self.rows(store)[:MAX_SERIES_RUNS]
        try:
            mode = mode_for(metric)
        except Exception:  # noqa: BLE001 (a name that says neither: rank by max)
            mode = "max"
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
        from runner.results.aggregate import mode_for, results_of

        store = self.store(name)
        rows = self.rows(store)[:MAX_SERIES_RUNS]
        try:
            mode = mode_for(metric)
        except Exception:  # noqa: BLE001
            mode = "max"
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


def _objective(manifest: dict[str, Any]) -> str | None:
    execution = manifest.get("execution") or {}
    sweep = execution.get("sweep") or {}
    runner_cfg = execution.get("runner") or {}
    return (sweep.get("metric") if isinstance(sweep, dict) else None) or runner_cfg.get("metric")


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


def _tail(path: Path, size: int = TAIL_BYTES) -> str:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return ""
    with os.fdopen(fd, "rb") as f:
        end = f.seek(0, os.SEEK_END)
        f.seek(max(0, end - size))
        data = f.read(size)
    return redact(data.decode("utf-8", "replace"))


def _jsonl(path: Path, limit: int = 1000) -> list[Any]:
    out: deque[Any] = deque(maxlen=limit)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return []
    with os.fdopen(fd, encoding="utf-8", errors="replace") as f:
        for line in f:
            try:
                out.append(json.loads(line))
            except ValueError:
                continue  # a torn last line
    return list(out)


def _metric_keys(path: Path, head: int = 65536) -> list[str]:
    keys: set[str] = set()
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return []
    with os.fdopen(fd, "rb") as f:
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
