"""Everything about one run, for ``python -m runner show RUN_DIR``: its values and resolved config,
the history of its attempts (host, pid, start, end, state, reason), the sweep's code version,
duration, last metrics and the paths of its files."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from runner.config.configfile import load_run_config
from runner.errors import CorruptStateError
from runner.planning.run_id import id_from_dirname
from runner.results.status import read_run
from runner.storage.failures import classify
from runner.storage.marks import read_marks
from runner.storage.metrics import last_metrics
from runner.storage.paths import FLAG_NAMES, RunPaths
from runner.storage.state import dict_field, read_flag
from runner.storage.store import RunRef, SweepStore, run_of_dir


def attempts_of(paths: RunPaths) -> list[dict[str, Any]]:
    """One entry per ended attempt, oldest first, from attempts/ and the current FLAG."""
    records: list[dict[str, Any]] = []
    archived = sorted(paths.attempts.iterdir()) if paths.attempts.is_dir() else []
    current = [paths.root / name for name in FLAG_NAMES if (paths.root / name).exists()]
    for path in [*archived, *current]:
        name = path.name.split(".", 1)[1] if path.parent == paths.attempts else path.name
        if name not in FLAG_NAMES or name == "UNHATCHED":
            continue
        try:
            record = read_flag(path, name)
        except (CorruptStateError, OSError, KeyError) as exc:
            records.append({"file": str(path), "error": str(exc)})
            continue
        data = record.data  # (a CRASH.txt header holds its values as text)
        end, duration = _number(data.get("time")), _number(data.get("duration_s"))
        start = _number(data.get("started")) or (end - duration if end and duration else None)
        pid = _number(data.get("pid"))
        records.append({
            "attempt": record.attempt, "state": record.state.value,
            "host": data.get("host") if data.get("host") not in ("None", "") else None,
            "pid": int(pid) if pid else None, "start": start, "end": end,
            "duration_s": duration, "reason": data.get("reason"),
            "failure": classify(data) if record.state.value == "CRASHED" else None,
            "launcher": dict_field(data.get("launcher")), "file": str(path)})
    return sorted(records, key=lambda r: (r.get("attempt", 0), r.get("end") or 1e18))


def _number(value: Any) -> float | None:
    try:
        return None if value is None else float(value)
    except (TypeError, ValueError):
        return None


def describe(run_dir: str | Path) -> dict[str, Any]:
    return describe_run(*run_of_dir(run_dir))


def describe_run(store: SweepStore, ref: RunRef) -> dict[str, Any]:
    """Everything about one run of ``store`` (``show``'s data, also the web view's)."""
    paths = ref.paths
    row = read_run(ref)
    try:
        config = load_run_config(paths)
    except (OSError, CorruptStateError) as exc:
        config = {"error": str(exc)}
    checkpoints = sorted(str(p) for p in paths.checkpoints.rglob("*") if p.is_file()) \
        if paths.checkpoints.is_dir() else []
    manifest = store.manifest
    marks = read_marks(store.root)
    return {
        "id": id_from_dirname(paths.root.name), "dir": str(paths.root),
        "sweep": {"name": manifest.get("name"), "dir": str(store.root),
                  **marks.sweep.as_dict()},
        **marks.of_run(ref.id).as_dict(),
        "state": row.state, "reason": row.reason or None,
        "attempt": row.record.attempt if row.record else 0,
        "duration_s": row.duration(time.time()), "values": ref.values,
        "summary": row.summary, "last_metrics": last_metrics(paths.metrics),
        "attempts": attempts_of(paths),
        "code": (manifest.get("provenance") or {}).get("git"),
        "code_versions": {launch["code"]["id"]: launch["code"]
                          for launch in manifest.get("launches", []) if launch.get("code")},
        "files": {"config": str(paths.config), "stdout": str(paths.stdout),
                  "stderr": str(paths.stderr), "metrics": str(paths.metrics),
                  "progress": str(paths.progress), "checkpoints": checkpoints},
        "config": config,
        "cleaned": _cleaned(paths),
    }


def _cleaned(paths: RunPaths) -> dict[str, Any] | None:
    """What ``clean --runs`` removed of the run's outputs (None: nothing)."""
    try:
        with open(paths.cleaned, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
