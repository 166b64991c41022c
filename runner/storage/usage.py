"""Space on disk: what a sweep's files take (``ls``, ``clean``)."""

from __future__ import annotations

import os
from pathlib import Path


def disk_usage(path: Path | str) -> int:
    """Bytes the tree at ``path`` takes on disk (allocated blocks, as ``du`` counts them);
    symbolic links are counted as links, never followed, and a file that vanishes meanwhile
    is skipped."""
    total = 0
    stack = [os.fspath(path)]
    while stack:
        try:
            with os.scandir(stack.pop()) as entries:
                for entry in entries:
                    try:
                        st = entry.stat(follow_symlinks=False)
                    except OSError:
                        continue
                    total += st.st_blocks * 512
                    if entry.is_dir(follow_symlinks=False):
                        stack.append(entry.path)
        except OSError:
            continue
    return total


def human_size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"
