"""Discord's message limits: 2,000 characters per message, 10 attachments, 25 MiB in all.

Text that fits goes as it is; longer text is split on line boundaries into a few messages, and
beyond that it goes as a text file, so nothing is ever cut off.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from runner.errors import StateError

MAX_CHARS = 2000
MAX_MESSAGES = 3  # more than this and the text becomes an attachment
MAX_FILES = 10
MAX_PLOT_RUNS = 20  # lines in one /plot (five times as many runs with spread:true)
MAX_PLOT_KEYS = 8  # panels in one /plot


@dataclass
class Reply:
    text: str
    files: list[tuple[str, bytes]] = field(default_factory=list)
    ephemeral: bool = False


def fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value)


def code_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[str(h) for h in header]] + [[fmt(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
             for row in cells]
    return "```\n" + "\n".join(lines) + "\n```"


def duration_text(seconds: float | None) -> str:
    if seconds is None:
        return ""
    seconds = int(seconds)
    return (f"{seconds // 3600}h{seconds % 3600 // 60:02d}m" if seconds >= 3600
            else f"{seconds // 60}m{seconds % 60:02d}s")


def comma_list(text: str) -> list[str]:
    """``"loss, val/acc,"`` -> ``["loss", "val/acc"]``."""
    return [item.strip() for item in text.split(",") if item.strip()]


def plot_keys(keys: str) -> list[str]:
    """The metrics of a ``/plot``: at least one, at most ``MAX_PLOT_KEYS``."""
    metrics = comma_list(keys)
    if not metrics:
        raise StateError("give keys:<metric,...>, e.g. keys:loss,val/acc")
    if len(metrics) > MAX_PLOT_KEYS:
        raise StateError(f"{len(metrics)} keys asked for; one plot has at most "
                         f"{MAX_PLOT_KEYS} panels")
    return metrics


def split_text(text: str, limit: int = MAX_CHARS) -> list[str]:
    """Chunks of at most ``limit`` characters, broken at newlines where possible; a code block
    (```) cut in two is closed and reopened so each part renders."""
    chunks: list[str] = []
    current = ""
    fence = False
    for line in text.splitlines(keepends=True):
        while len(line) > limit - 8:  # one very long line: hard split
            head, line = line[: limit - 8], line[limit - 8 :]
            chunks.append(_close(current + head, fence))
            current = "```\n" if fence else ""
        if len(current) + len(line) > limit - 4:
            chunks.append(_close(current, fence))
            current = "```\n" if fence else ""
        current += line
        if line.strip().startswith("```"):
            fence = not fence
    if current.strip():
        chunks.append(current)
    return [c for c in chunks if c.strip()] or [""]


def _close(chunk: str, fence: bool) -> str:
    return chunk + ("\n```" if fence else "")


def plan_messages(text: str, files: list[tuple[str, bytes]],
                  as_file: str = "reply.txt") -> tuple[list[str], list[tuple[str, bytes]]]:
    """(texts, files) to send: a few chunks, or a short note plus the text as a file."""
    chunks = split_text(text)
    if len(chunks) > MAX_MESSAGES:
        first_line = text.splitlines()[0] if text else ""
        note = f"{first_line[:300]}\n(full reply attached as {as_file}: {len(text):,} characters)"
        return [note], [(as_file, text.encode()), *files][:MAX_FILES]
    return chunks, files[:MAX_FILES]
