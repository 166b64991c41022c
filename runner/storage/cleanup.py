"""Removing what a researcher no longer needs (``python -m runner clean``): whole sweeps, deleted
or archived, and runs' checkpoints, never those of a sweep that is in use.

A folder is first renamed to a hidden ``.trash-...`` name beside it (one atomic step: listings
never see half a sweep), then deleted; a clean killed in between leaves only that hidden folder,
which the next clean of the same parent deletes. An archive is written to a temporary name,
fsynced and renamed into place, so a kill never leaves a truncated ``.tar.gz`` under its name.
"""

from __future__ import annotations

import os
import shutil
import tarfile
import uuid
from pathlib import Path

from runner.errors import CorruptStateError, StateError
from runner.storage.atomic import fsync_dir, write_json_atomic
from runner.storage.paths import FLAG_NAMES, RunPaths
from runner.storage.state import State, read_state
from runner.storage.store import SweepStore

TRASH = ".trash-"


def why_busy(store: SweepStore) -> str | None:
    """Why the sweep must not be touched now, or None: a runner process of it alive on this
    host, or a run holding a RUNNING lease (on any host or cluster: ``status`` says whether its
    holder is alive; a resume or ``cancel`` ends it)."""
    live = store.live_runners()
    if live:
        return f"a runner of it is alive on this host (pid {', '.join(str(p.pid) for p in live)})"
    running = []
    for ref in store.runs():
        try:
            if read_state(ref.paths).state is State.RUNNING:
                running.append(ref.id)
        except (CorruptStateError, OSError):
            continue
    if running:
        return (f"{len(running)} run(s) hold a RUNNING lease ({', '.join(running[:3])}); "
                "`python -m runner status` says whether they are alive")
    return None


def remove_tree(path: Path) -> None:
    """Delete a folder: renamed out of sight first (atomic), then removed."""
    hidden = path.with_name(f"{TRASH}{path.name[:80]}-{uuid.uuid4().hex[:8]}")
    os.rename(path, hidden)
    fsync_dir(path.parent)
    shutil.rmtree(hidden, ignore_errors=True)


def remove_leftovers(parent: Path) -> int:
    """Delete what a killed clean left under ``parent``; returns how many folders."""
    found = [p for p in parent.glob(f"{TRASH}*") if p.is_dir() and not p.is_symlink()]
    for path in found:
        shutil.rmtree(path, ignore_errors=True)
    return len(found)


def archive(root: Path, dest: Path) -> Path:
    """``dest/<sweep>.tar.gz`` holding the sweep folder (symbolic links stored as links)."""
    dest.mkdir(parents=True, exist_ok=True)
    final = dest / f"{root.name}.tar.gz"
    if final.exists():
        raise StateError(f"{final} exists already: archive into another folder, or move it")
    tmp = dest / f".{root.name}.tar.gz.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        with tarfile.open(tmp, "w:gz") as tar:
            tar.add(root, arcname=root.name)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.rename(tmp, final)
        fsync_dir(dest)
    finally:
        tmp.unlink(missing_ok=True)
    return final


def _record_names(paths: RunPaths) -> set[str]:
    """What a run keeps when its outputs go: its frozen config and values, its state and the
    history of its attempts (small; ``status``, ``show`` and ``report`` still tell what ran)."""
    return {*FLAG_NAMES, paths.config.name, paths.values.name, paths.attempts.name,
            paths.lock.name, paths.cleaned.name}


def _outputs(paths: RunPaths) -> list[os.DirEntry[str]]:
    keep = _record_names(paths)
    with os.scandir(paths.root) as entries:
        return [e for e in entries if e.name not in keep and not e.name.startswith(TRASH)]


def outputs_size(paths: RunPaths) -> int:
    """Bytes of a run's outputs (logs, metrics, checkpoints, files the task wrote)."""
    from runner.storage.usage import disk_usage

    total = 0
    for entry in _outputs(paths):
        st = entry.stat(follow_symlinks=False)
        total += st.st_blocks * 512
        if entry.is_dir(follow_symlinks=False):
            total += disk_usage(entry.path)
    return total


def clear_run(run_dir: Path, archive_dir: Path | None = None) -> list[str]:
    """Remove a run's outputs, keeping its record (``_record_names``); first pack the whole run
    into ``archive_dir/<sweep>/<run>.tar.gz`` if given. Each output is renamed into one hidden
    folder (atomic, one by one), ``cleaned.json`` says what went, then the folder is deleted; a
    clean killed halfway leaves the rest, which the next clean of this run removes."""
    import json
    import time

    paths = RunPaths(run_dir)
    packed = None
    if archive_dir is not None:
        packed = str(archive(run_dir, archive_dir / run_dir.parent.parent.name))
    remove_leftovers(run_dir)
    trash = run_dir / f"{TRASH}outputs-{uuid.uuid4().hex[:8]}"
    trash.mkdir()
    names = []
    for entry in _outputs(paths):
        os.rename(entry.path, trash / entry.name)
        names.append(entry.name + ("/" if entry.is_dir(follow_symlinks=False) else ""))
    fsync_dir(run_dir)
    before: list[str] = []
    try:
        with open(paths.cleaned, encoding="utf-8") as f:
            before = list(json.load(f).get("removed", []))
    except (OSError, ValueError, AttributeError):
        pass
    write_json_atomic(paths.cleaned, {"time": time.time(), "removed": sorted({*before, *names}),
                                      "archive": packed})
    shutil.rmtree(trash, ignore_errors=True)
    return names
