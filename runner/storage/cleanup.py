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
from runner.storage.atomic import fsync_dir
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
