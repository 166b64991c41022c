"""Crash-safe file writes: write a temporary file, fsync it, rename it into place, fsync the folder.

A reader therefore sees either the old file or the new one, never half of one, and after the call
returns the new file survives a power loss. Every state file of runner is written through here,
and every text written here is redacted first (``runner.config.secrets``): no FLAG, CRASH.txt,
cache, manifest or report can hold a secret this process knows.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Any

from runner.config.secrets import redact
from runner.errors import EnvironmentFault, describe_os_error


def no_follow(path: str | os.PathLike[str], flags: int) -> int:
    """``os.open`` that never follows a symlink at ``path`` (an opener for ``open()``): a file
    runner writes is never one a link planted in a shared folder points to."""
    return os.open(path, flags | os.O_NOFOLLOW, 0o644)


def write_new_text(path: Path, text: str) -> None:
    """A file of a folder runner is making (not crash-safe by itself: the folder is published
    whole), readable by all and writable by this user only, whatever the umask; redacted."""
    with open(path, "w", encoding="utf-8", opener=no_follow) as f:
        f.write(redact(text))


def make_folders(path: Path) -> None:
    """``path`` and its missing parents, each writable by this user only whatever the umask
    (``Path.mkdir(parents=True)`` gives the parents the umask's mode: in a lab's shared folder,
    group-writable, and another user could swap what runner reads back from them)."""
    missing = []
    while not path.exists():
        missing.append(path)
        path = path.parent
    for folder in reversed(missing):
        try:
            folder.mkdir(mode=0o755)
        except FileExistsError:
            pass


def fsync_dir(path: Path | str) -> None:
    """Make a rename or unlink inside ``path`` durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _tmp_name(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")


def write_bytes_atomic(path: Path | str, data: bytes, *, durable: bool = True,
                       private: bool = False) -> None:
    """Replace ``path`` with ``data`` atomically (and durably unless ``durable=False``);
    ``private``: readable by this user only (0600), for files that can hold user data beyond
    results (diffs, environments, job return values). A symlink at ``path`` is replaced, never
    written through."""
    path = Path(path)
    try:
        _write(path, data, durable, 0o600 if private else 0o644)
    except EnvironmentFault:
        raise
    except OSError as exc:  # disk full, permission denied, ...: said plainly, nothing torn
        raise EnvironmentFault(describe_os_error(exc, path), exc.errno) from exc


def _write(path: Path, data: bytes, durable: bool, mode: int) -> None:
    tmp = _tmp_name(path)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        if durable:
            os.fsync(fd)
    except BaseException:
        os.close(fd)
        tmp.unlink(missing_ok=True)
        raise
    os.close(fd)
    try:
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if durable:
        fsync_dir(path.parent)


def write_text_atomic(path: Path | str, text: str, *, durable: bool = True,
                      private: bool = False) -> None:
    write_bytes_atomic(path, redact(text).encode("utf-8"), durable=durable, private=private)


def write_json_atomic(path: Path | str, obj: Any, *, durable: bool = True,
                      private: bool = False) -> None:
    write_text_atomic(path, json.dumps(obj, indent=1, default=str) + "\n",
                      durable=durable, private=private)
