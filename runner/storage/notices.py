"""A sweep's standing notices: what runner found that the user must see in ``status`` (a node
left out of the sweep's submissions), keyed so that each is said once and can be taken back.

``notices.json`` at the top of the sweep, rewritten atomically under ``.notices.lock`` (two
runners resuming one sweep may both add one). A damaged file reads as no notices.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from runner.storage.atomic import write_json_atomic

FILE = "notices.json"
MAX_TEXT = 500


def read(sweep_root: Path | str) -> dict[str, str]:
    try:
        data = json.loads((Path(sweep_root) / FILE).read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {str(k): str(v) for k, v in data.items()}


def put(sweep_root: Path | str, key: str, text: str) -> bool:
    """Add (or reword) the notice ``key``; True if it is new."""
    return _change(sweep_root, lambda notices: notices.update({key: text[:MAX_TEXT]}), key)


def drop(sweep_root: Path | str, key: str) -> bool:
    """Take the notice ``key`` back; True if there was one."""
    return _change(sweep_root, lambda notices: notices.pop(key, None), key)


def _change(sweep_root: Path | str, change: Callable[[dict[str, str]], object],
            key: str) -> bool:
    root = Path(sweep_root)
    with _locked(root):
        notices = read(root)
        had = key in notices
        before = dict(notices)
        change(notices)
        if notices != before:
            write_json_atomic(root / FILE, notices)
        return had != (key in notices)


@contextmanager
def _locked(root: Path) -> Iterator[None]:
    fd = os.open(root / ".notices.lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
