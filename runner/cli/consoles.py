"""The consoles commands print on: messages on stderr, tables on stdout (both redacted)."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape

from runner.config import secrets


def stderr_console() -> Console:
    return secrets.console(stderr=True, highlight=False, soft_wrap=True)


def print_table(rows: list[list[str]], header: list[str], title: str) -> None:
    from rich.table import Table

    table = Table(*header, title=title, show_edge=False)
    for row in rows:
        table.add_row(*(escape(cell) for cell in row))  # "[0.1, 0.2]" is data, not markup
    secrets.table_console().print(table)
