"""Where a sweep came from: the user's git commit and uncommitted diff, Python, packages, host."""

from __future__ import annotations

import getpass
import importlib.metadata
import os
import platform
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

PACKAGES = ("runner", "hydra-core", "omegaconf", "psutil", "rich", "numpy", "torch", "wandb")


def _git(cwd: Path, *args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=20,
                             check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout if out.returncode == 0 else None


def git_state(cwd: Path) -> tuple[dict[str, Any], str]:
    """(summary, diff): commit, branch, dirty flag and untracked files; the diff of HEAD."""
    commit = _git(cwd, "rev-parse", "HEAD")
    if commit is None:
        return {"repository": None}, ""
    status = _git(cwd, "status", "--porcelain") or ""
    diff = _git(cwd, "diff", "HEAD", "--no-ext-diff", "--binary") or ""
    info = {
        "repository": (_git(cwd, "rev-parse", "--show-toplevel") or "").strip(),
        "commit": commit.strip(),
        "branch": (_git(cwd, "rev-parse", "--abbrev-ref", "HEAD") or "").strip(),
        "dirty": bool(status.strip()),
        "untracked": [line[3:] for line in status.splitlines() if line.startswith("??")][:200],
    }
    return info, diff


def package_versions() -> dict[str, str]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def collect(cwd: Path) -> tuple[dict[str, Any], str]:
    git, diff = git_state(cwd)
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    info = {
        "git": git,
        "python": sys.version.split()[0],
        "executable": sys.executable,
        "platform": platform.platform(),
        "packages": package_versions(),
        "host": socket.gethostname(),
        "user": user,
        "cwd": str(cwd),
    }
    return info, diff
