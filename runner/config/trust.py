"""Files that name code are read only when nobody else could have written them.

A sweep's manifest names what its runs execute (the task, preloaded modules, the sweep loop's
source, run hooks, the launcher's setup commands), and a study's file holds the template every
trial is built from. Before a sweep runs anything, these files and the folders holding them must
be owned by this user and writable by nobody else: a group-writable one is accepted only where
the group is the user's own private group (as under a umask of 002 on most distributions).
Otherwise another user of a shared outputs folder could make whoever resumes run their code.
runner creates these files and folders without group or world write access, whatever the
umask.
"""

from __future__ import annotations

import grp
import os
import pwd
import stat
from pathlib import Path

from runner.errors import StateError


def _own_group(gid: int, uid: int) -> bool:
    """Whether ``gid`` is ``uid``'s user-private group (only that user is in it)."""
    try:
        user = pwd.getpwuid(uid)
        group = grp.getgrgid(gid)
    except KeyError:
        return False
    return group.gr_gid == user.pw_gid and group.gr_name == user.pw_name and \
        set(group.gr_mem) <= {user.pw_name}


def why_untrusted(path: Path) -> str | None:
    """Why ``path`` could have been written by someone else, or None."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    uid = os.geteuid()
    if stat.S_ISLNK(st.st_mode):
        return "is a symbolic link"
    if st.st_uid != uid:
        try:
            owner = pwd.getpwuid(st.st_uid).pw_name
        except KeyError:
            owner = str(st.st_uid)
        return f"is owned by {owner}, not by you"
    if st.st_mode & stat.S_IWOTH:
        return "is writable by every user"
    if st.st_mode & stat.S_IWGRP and not _own_group(st.st_gid, uid):
        return "is writable by its group"
    return None


def check_trusted(root: Path, names: tuple[str, ...] = (
        "sweep.json", "sweep.added.jsonl", "study.json", "runs")) -> None:
    """Refuse (StateError) to run a sweep whose code-naming files another user could write."""
    for path in (root, *(root / n for n in names)):
        why = why_untrusted(path)
        if why is not None:
            raise StateError(f"{path} {why}: runner runs the code a sweep names only from files "
                             "nobody else can write (fix it with `chmod -R go-w` and `chown`, "
                             "or copy the sweep)")


def no_group_write(*paths: Path) -> None:
    """Take group and world write access off folders runner just made (whatever the umask)."""
    for path in paths:
        mode = stat.S_IMODE(os.stat(path).st_mode)
        if mode & 0o022:
            os.chmod(path, mode & ~0o022)


def own_folder(path: Path) -> bool:
    """Whether ``path`` is (or, missing, will be) a folder of this user's that nobody else can
    write: one of ours that others could write is made so first (files others put there are
    theirs, and ``why_untrusted`` refuses them); a link or another user's folder is not."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return True
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid():
        return False
    if st.st_mode & 0o022:
        try:
            os.chmod(path, stat.S_IMODE(st.st_mode) & ~0o022)
        except OSError:
            return False
    return True
