"""Tags and notes on a sweep and on its runs: what a researcher says about them afterwards
(``python -m runner tag`` and ``note``), shown by ``ls``, ``status``, ``show``, ``report`` and
the bot.

One file per sweep, ``annotations.json`` beside ``sweep.json``, holds the sweep's and every
run's (by run id): a listing of many sweeps reads one small file each. Every change is a
read-change-write under the file's own lock (two ``tag`` commands at once lose nothing), written
atomically (a kill leaves the old file or the new one). The file is data only: read with a size
cap, and an entry that is not a valid tag or note (a file another user of a shared folder wrote)
is left out, never trusted.
"""

from __future__ import annotations

import fcntl
import getpass
import json
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runner.errors import ConfigError
from runner.storage.atomic import no_follow, write_json_atomic
from runner.storage.paths import SweepPaths

MAX_BYTES = 4 << 20  # a bigger file is not read (another user's, or not ours)
MAX_TAGS = 50
MAX_NOTES = 200
MAX_NOTE_CHARS = 2000
TAG = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:+\-]{0,63}")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


@dataclass(frozen=True)
class Note:
    text: str
    time: float
    by: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"text": self.text, "time": self.time, "by": self.by}


@dataclass(frozen=True)
class Marks:
    """The tags and notes of one sweep or one run."""

    tags: tuple[str, ...] = ()
    notes: tuple[Note, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.tags or self.notes)

    def as_dict(self) -> dict[str, Any]:
        return {"tags": list(self.tags), "notes": [n.as_dict() for n in self.notes]}


@dataclass(frozen=True)
class SweepMarks:
    sweep: Marks = Marks()
    runs: dict[str, Marks] = field(default_factory=dict)

    def of_run(self, run_id: str) -> Marks:
        return self.runs.get(run_id, Marks())

    def of(self, run_id: str | None) -> Marks:
        """The sweep's marks (``run_id`` None) or one run's."""
        return self.sweep if run_id is None else self.of_run(run_id)

    def as_dict(self) -> dict[str, Any]:
        return {"version": 1, "sweep": self.sweep.as_dict(),
                "runs": {k: v.as_dict() for k, v in sorted(self.runs.items()) if v}}


def check_tag(tag: str) -> str:
    if not TAG.fullmatch(tag):
        raise ConfigError(f"tag '{tag}': a tag is 1 to 64 letters, digits and _ . : + - "
                          "(starting with a letter or digit)")
    return tag


def check_note(text: str) -> str:
    text = text.strip()
    if not text:
        raise ConfigError("the note is empty")
    if len(text) > MAX_NOTE_CHARS:
        raise ConfigError(f"the note has {len(text)} characters; at most {MAX_NOTE_CHARS}")
    if _CONTROL.search(text):
        raise ConfigError("the note holds a control character")
    return text


def read_marks(sweep_root: Path | str) -> SweepMarks:
    """The sweep's tags and notes (none when it has no file, or an unreadable one)."""
    path = SweepPaths(Path(sweep_root)).annotations
    try:
        with open(path, "rb", opener=no_follow) as f:
            raw = f.read(MAX_BYTES + 1)
        data = json.loads(raw) if len(raw) <= MAX_BYTES else {}
    except (OSError, ValueError):
        return SweepMarks()
    if not isinstance(data, dict):
        return SweepMarks()
    runs: dict[Any, Any] = data["runs"] if isinstance(data.get("runs"), dict) else {}
    return SweepMarks(_marks(data.get("sweep")),
                       {str(k): _marks(v) for k, v in list(runs.items())[:1_000_000]})


def _marks(data: Any) -> Marks:
    if not isinstance(data, dict):
        return Marks()
    tags: list[Any] = data["tags"] if isinstance(data.get("tags"), list) else []
    notes: list[Any] = data["notes"] if isinstance(data.get("notes"), list) else []
    good_tags = tuple(dict.fromkeys(t for t in tags[:MAX_TAGS]
                                    if isinstance(t, str) and TAG.fullmatch(t)))
    good_notes = []
    for n in notes[:MAX_NOTES]:
        if not isinstance(n, dict) or not isinstance(n.get("text"), str):
            continue
        text = n["text"]
        if not text.strip() or len(text) > MAX_NOTE_CHARS or _CONTROL.search(text):
            continue
        when = n.get("time")
        by = n.get("by")
        good_notes.append(Note(text, float(when) if isinstance(when, (int, float)) else 0.0,
                               by if isinstance(by, str) and TAG.fullmatch(by) else ""))
    return Marks(good_tags, tuple(good_notes))


def change_marks(sweep_root: Path | str, run_id: str | None = None, add: tuple[str, ...] = (),
           remove: tuple[str, ...] = (), note: str | None = None,
           clear_notes: bool = False) -> Marks:
    """Add and remove tags, add a note or clear the notes of the sweep (``run_id`` None) or of
    one of its runs, under the file's lock; returns the new marks."""
    for tag in (*add, *remove):
        check_tag(tag)
    text = check_note(note) if note is not None else None
    paths = SweepPaths(Path(sweep_root))
    fd = os.open(paths.annotations_lock, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        for left in paths.root.glob(f".{paths.annotations.name}.tmp-*"):
            left.unlink(missing_ok=True)  # a writer killed mid-write (only the holder writes)
        current = read_marks(paths.root)
        old = current.of(run_id)
        tags = [t for t in dict.fromkeys((*old.tags, *add)) if t not in remove]
        if len(tags) > MAX_TAGS:
            raise ConfigError(f"at most {MAX_TAGS} tags on a sweep or a run")
        notes = [] if clear_notes else list(old.notes)
        if text is not None:
            if len(notes) >= MAX_NOTES:
                raise ConfigError(f"at most {MAX_NOTES} notes on a sweep or a run "
                                  "(--clear removes them)")
            notes.append(Note(text, round(time.time(), 3), _user()))
        new = Marks(tuple(tags), tuple(notes))
        if run_id is None:
            updated = SweepMarks(new, current.runs)
        else:
            updated = SweepMarks(current.sweep, {**current.runs, run_id: new})
        write_json_atomic(paths.annotations, updated.as_dict())
        return new
    finally:
        os.close(fd)


def _user() -> str:
    try:
        name = getpass.getuser()
    except (KeyError, OSError):
        return ""
    return name if TAG.fullmatch(name) else ""
