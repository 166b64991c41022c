"""Where a sweep's code came from, at its freeze and at every launch: the user's git commit, the
uncommitted diff (untracked source files included, size-capped), every installed distribution and
its version, Python, CUDA and the driver when present, host. ``code_id`` names a code version (the
commit plus the diff), so each attempt can say which code it ran.

Provenance never copies a secret: an untracked file is taken only when it is source the user's
code can import or compose (Python, native sources, YAML configs), never when its name looks like
a credential (``.env``, ``*secret*``, ``*token*``, ``*.pem``, ...; ``runner.config.secrets``) or its
content holds a known secret or a value of a well-known secret format; the tracked diff has such
values masked. What was left out, and why, is listed in ``git.untracked_skipped``.
"""

from __future__ import annotations

import getpass
import hashlib
import importlib.metadata
import os
import platform
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

from runner.config.secrets import credential_name, redact_formats, secret_in

PACKAGES = ("hydra-runner", "hydra-core", "omegaconf", "psutil", "rich", "numpy", "torch", "wandb")


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
    top = Path((_git(cwd, "rev-parse", "--show-toplevel") or str(cwd)).strip())
    diff = redact_formats(diff)
    more, skipped = untracked_sources(top, [line[3:] for line in status.splitlines()
                                            if line.startswith("??")])
    diff += more
    info = {
        "repository": (_git(cwd, "rev-parse", "--show-toplevel") or "").strip(),
        "commit": commit.strip(),
        "branch": (_git(cwd, "rev-parse", "--abbrev-ref", "HEAD") or "").strip(),
        "dirty": bool(status.strip()),
        "untracked": [line[3:] for line in status.splitlines() if line.startswith("??")][:200],
        "untracked_skipped": skipped[:200],
    }
    return info, diff


# untracked files that are source the user's code imports or composes
SOURCE_SUFFIXES = (".py", ".pyi", ".pyx", ".pxd", ".yaml", ".yml", ".c", ".cc", ".cpp", ".h",
                   ".hpp", ".cu", ".cuh", ".rs", ".jl")
MAX_UNTRACKED_FILE = 256 * 1024  # bytes of one untracked source file kept in the diff
MAX_UNTRACKED_TOTAL = 2 * 1024 * 1024


def untracked_sources(repo: Path, names: list[str]) -> tuple[str, list[dict[str, str]]]:
    """Untracked source files as a patch (``git apply`` recreates them), size-capped, and
    what was left out (each file and why: a digest stands in for a skipped source file, so
    its edits still change the code id)."""
    parts: list[str] = []
    skipped: list[dict[str, str]] = []
    total = 0
    for name in names:
        path = repo / name
        if path.is_symlink() or not path.is_file():
            continue
        if credential_name(name):
            why = "its name looks like a credential file"
        elif not name.endswith(SOURCE_SUFFIXES):
            skipped.append({"file": name, "why": "not source code can import"})
            continue
        elif (size := path.stat().st_size) > MAX_UNTRACKED_FILE or \
                total + size > MAX_UNTRACKED_TOTAL:
            why = f"over the size cap ({size} bytes)"
        else:
            try:
                text = path.read_text()
            except (OSError, UnicodeDecodeError):
                skipped.append({"file": name, "why": "not readable as text"})
                continue
            found = secret_in(text)
            if found is None:
                total += size
                lines = text.splitlines()
                parts.append(f"diff --git a/{name} b/{name}\nnew file mode 100644\n--- /dev/null\n"
                             f"+++ b/{name}\n@@ -0,0 +1,{len(lines)} @@\n"
                             + "".join(f"+{line}\n" for line in lines))
                continue
            why = f"it holds {found}"
        try:
            digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
        except OSError:
            digest = "unreadable"
        skipped.append({"file": name, "why": why, "digest": digest})
        parts.append(f"# runner: untracked {name} left out: {why} (sha256 {digest})\n")
    return "".join(parts), skipped


def environment() -> dict[str, str]:
    """Every installed distribution and its version (``importlib.metadata``).

    Read from the head of each one's core metadata (``Name`` and ``Version`` are required
    one-line fields before the first blank line): ``dist.metadata`` runs the e-mail parser over
    the whole file, twice per distribution with ``dist.version``, a tenth of a second at every
    launch with a hundred packages installed."""
    out: dict[str, str] = {}
    for dist in importlib.metadata.distributions():
        fields: dict[str, str] = {}
        for line in (dist.read_text("METADATA") or dist.read_text("PKG-INFO") or "").splitlines():
            if not line.strip():
                break
            key, sep, value = line.partition(":")
            if sep and key in ("Name", "Version") and key not in fields:
                fields[key] = value.strip()
        if fields.get("Name"):
            out[fields["Name"]] = fields.get("Version", "")
    return dict(sorted(out.items(), key=lambda kv: kv[0].lower()))


def accelerator() -> dict[str, Any]:
    """CUDA as torch sees it (only if the process imported torch) and the NVIDIA driver."""
    info: dict[str, Any] = {}
    torch = sys.modules.get("torch")
    if torch is not None:
        info["torch_cuda"] = getattr(torch.version, "cuda", None)
    if shutil.which("nvidia-smi"):
        try:
            out = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version",
                                  "--format=csv,noheader"], capture_output=True, text=True,
                                 timeout=10, check=False).stdout
        except (OSError, subprocess.TimeoutExpired):
            out = ""
        info["gpus"] = [line.strip() for line in out.splitlines() if line.strip()]
    return info


def code_id(git: dict[str, Any], diff: str, files: dict[str, str] | None = None) -> str:
    """A short name for one version of the code: its commit and its uncommitted diff (and the
    contents of ``files``, e.g. a script outside any git repository)."""
    h = hashlib.sha1(str(git.get("commit")).encode())
    h.update(diff.encode())
    for name, digest in sorted((files or {}).items()):
        h.update(f"{name}:{digest}".encode())
    return h.hexdigest()[:10]


def file_digests(names: list[str]) -> dict[str, str]:
    """sha1 of each file's bytes ('missing' for one that cannot be read)."""
    out = {}
    for name in names:
        try:
            out[name] = hashlib.sha1(Path(name).read_bytes()).hexdigest()
        except OSError:
            out[name] = "missing"
    return out


def package_versions() -> dict[str, str]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def collect(cwd: Path, files: list[str] | None = None) -> tuple[dict[str, Any], str]:
    """Provenance of the code run from ``cwd``; ``files``: more source files whose contents
    name the code version (those the git diff may not cover)."""
    git, diff = git_state(cwd)
    digests = file_digests(files) if files else {}
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
        "environment": environment(),
        "accelerator": accelerator(),
        "host": socket.gethostname(),
        "user": user,
        "cwd": str(cwd),
        "code": code_id(git, diff, digests),
        **({"files": digests} if digests else {}),
    }
    return info, diff


def changes(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """What differs between two provenance records' code and environment, in words."""
    out = []
    old_git, new_git = before.get("git") or {}, after.get("git") or {}
    if old_git.get("commit") != new_git.get("commit"):
        out.append(f"commit {str(old_git.get('commit'))[:12]} -> {str(new_git.get('commit'))[:12]}")
    elif before.get("code") != after.get("code"):
        old_files, new_files = before.get("files") or {}, after.get("files") or {}
        edited = [Path(n).name for n in sorted(old_files.keys() | new_files.keys())
                  if old_files.get(n) != new_files.get(n)]
        out.append(f"{', '.join(edited[:5])} changed" if edited
                   else "the uncommitted changes differ")
    old_env, new_env = before.get("environment") or {}, after.get("environment") or {}
    moved = [f"{name} {old_env.get(name, '(none)')} -> {new_env.get(name, '(none)')}"
             for name in sorted(old_env.keys() | new_env.keys(), key=str.lower)
             if old_env.get(name) != new_env.get(name)] if old_env and new_env else []
    if moved:
        out.append("packages " + ", ".join(moved[:5])
                   + (f" and {len(moved) - 5} more" if len(moved) > 5 else ""))
    return out
