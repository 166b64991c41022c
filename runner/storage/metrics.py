"""Per-step metrics of a run: ``metrics.jsonl`` (source of truth) and ``progress.csv``.

Every ``log()`` call appends one JSON line and one CSV row and flushes both, so nothing is
downsampled and a killed run keeps every step it logged. A torn last line (a kill in the middle of
a write) is skipped by the reader. When a new metric name appears, ``progress.csv`` is rebuilt from
``metrics.jsonl`` with the wider header (atomically).
"""

from __future__ import annotations

import csv
import io
import json
import math
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from runner.config.secrets import redact_obj
from runner.storage.atomic import no_follow, write_text_atomic
from runner.storage.paths import RunPaths

FIXED_COLUMNS = ("step", "time", "attempt")
Sink = Callable[[dict[str, Any]], None]


def flatten(metrics: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"val": {"acc": 1}}`` -> ``{"val/acc": 1}``; numbers become plain floats/ints."""
    out: dict[str, Any] = {}
    for key, value in metrics.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, f"{name}/"))
        else:
            out[name] = plain_value(value)
    return out


def plain_value(value: Any) -> Any:
    """numpy / torch scalars -> Python numbers; other objects -> str."""
    if isinstance(value, bool | int | float | str) or value is None:
        return value
    item = getattr(value, "item", None)
    if callable(item):
        try:
            return item()
        except (TypeError, ValueError, RuntimeError):
            pass
    try:
        return float(value)
    except (TypeError, ValueError):
        return str(value)


def read_metrics(path: Path) -> Iterator[dict[str, Any]]:
    """Records of ``metrics.jsonl``; a torn final line is skipped, a bad middle line raises."""
    try:
        data = path.read_text()
    except FileNotFoundError:
        return
    if data.endswith("\n"):  # a whole file (the usual case): one parse for all its lines
        try:
            records = json.loads("[" + data[:-1].replace("\n", ",") + "]")
        except json.JSONDecodeError:
            records = None  # (a blank or bad line: line by line below says which)
        if records is not None and all(type(r) is dict for r in records):
            yield from records
            return
    lines = data.split("\n")
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            yield json.loads(line)
        except json.JSONDecodeError:
            if i >= len(lines) - 2 and not data.endswith("\n"):
                return  # torn tail of a killed writer
            raise ValueError(f"{path}:{i + 1}: invalid metrics line {line[:80]!r}") from None


def read_tail(path: Path, max_bytes: int) -> str | None:
    """The last ``max_bytes`` of a file as text (None if it does not exist)."""
    try:
        with open(path, "rb") as f:
            f.seek(0, io.SEEK_END)
            f.seek(max(0, f.tell() - max_bytes))
            return f.read().decode("utf-8", "replace")
    except FileNotFoundError:
        return None


def last_metrics(path: Path, max_bytes: int = 8192) -> dict[str, Any] | None:
    """The last complete record, reading only the file's tail."""
    tail = read_tail(path, max_bytes)
    if tail is None:
        return None
    for line in reversed(tail.split("\n")):
        if line.strip():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            return record if isinstance(record, dict) else None
    return None


class MetricsWriter:
    """Appends metrics of one attempt of one run; ``sinks`` receive every record (trackers)."""

    def __init__(self, paths: RunPaths, attempt: int) -> None:
        self.paths = paths
        self.attempt = attempt
        self.sinks: list[Sink] = []
        self._step = -1
        self._columns = self._existing_columns()
        self._jsonl = open(paths.metrics, "a", encoding="utf-8", opener=no_follow)  # noqa: SIM115
        self._csv = open(paths.progress, "a", encoding="utf-8", newline="",
                         opener=no_follow)  # noqa: SIM115
        if not self._columns:
            self._columns = list(FIXED_COLUMNS)
            self._write_row(self._columns)

    def _existing_columns(self) -> list[str]:
        try:
            with open(self.paths.progress, encoding="utf-8", newline="") as f:
                return next(csv.reader(f), [])
        except FileNotFoundError:
            return []

    def _write_row(self, row: list[Any]) -> None:
        buf = io.StringIO()
        csv.writer(buf).writerow(row)
        self._csv.write(buf.getvalue())
        self._csv.flush()

    def log(self, metrics: Mapping[str, Any], step: int | None = None) -> dict[str, Any]:
        values = redact_obj(flatten(metrics))  # a task's value is data runner writes: redacted
        for key in values:
            if key in FIXED_COLUMNS:
                raise ValueError(f"metric name '{key}' is reserved; reserved: {FIXED_COLUMNS}")
        self._step = self._step + 1 if step is None else int(step)
        record = {"step": self._step, "time": time.time(), "attempt": self.attempt, **values}
        self._jsonl.write(json.dumps(record, allow_nan=True) + "\n")
        self._jsonl.flush()
        new = [k for k in values if k not in self._columns]
        if new:
            self._columns.extend(new)
            self._rebuild_csv()
        else:
            self._write_row([_csv_value(record.get(c)) for c in self._columns])
        for sink in self.sinks:
            sink(record)
        return record

    def _rebuild_csv(self) -> None:
        buf = io.StringIO()
        writer = csv.writer(buf)
        writer.writerow(self._columns)
        for record in read_metrics(self.paths.metrics):
            writer.writerow([_csv_value(record.get(c)) for c in self._columns])
        self._csv.close()
        write_text_atomic(self.paths.progress, buf.getvalue(), durable=False)
        self._csv = open(self.paths.progress, "a", encoding="utf-8", newline="",
                         opener=no_follow)  # noqa: SIM115

    def close(self) -> None:
        self._jsonl.close()
        self._csv.close()


def _csv_value(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, float) and math.isnan(value):
        return "nan"
    return value
