"""Reading a sweep's state: one row per run, counts per state, JSON and a rich table.

A scan costs one ``scandir`` per run. The content of a finished run's FLAG (summary, crash
reason) is read once and then kept in ``.status-cache/`` with the run directory's mtime and
the FLAG's inode, size and mtime: every state change creates or renames a file in the run
directory (a new directory mtime) and an edit in place changes the FLAG's size or time, so two
``stat`` calls prove a cached entry current, and ``status`` over 100,000 finished runs lists no
directory and reads 98 cache files instead of 100,000 FLAGs (a run not started yet: its FLAG's
name is its state, so the directory's mtime alone proves it). A FLAG that
cannot be parsed makes that run ``CORRUPT`` with the error; it never stops the scan or changes
anything on disk.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import pickle
import stat
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runner.config.secrets import redact
from runner.config.trust import own_folder, why_untrusted
from runner.errors import CorruptStateError
from runner.storage import notices
from runner.storage.atomic import write_text_atomic
from runner.storage.metrics import last_metrics
from runner.storage.paths import FLAG_NAMES
from runner.storage.recovery import Death, observe
from runner.storage.state import (
    READ_TRIES,
    SETTLED_NS,
    STATE_OF_FLAG,
    FlagRecord,
    State,
    parse_flag,
    read_state,
)
from runner.storage.store import RunRef, SweepStore

CORRUPT = "CORRUPT"
STATE_ORDER = [s.value for s in State] + [CORRUPT]


@dataclass
class RunStatus:
    ref: RunRef
    state: str
    record: FlagRecord | None
    error: str = ""

    @property
    def lease(self) -> Any:
        return self.record.lease if self.record and self.state == "RUNNING" else None

    @property
    def summary(self) -> dict[str, Any]:
        if self.record is None:
            return {}
        return dict(self.record.data.get("summary") or {})

    @property
    def reason(self) -> str:
        if self.record is None:
            return self.error
        return str(self.record.data.get("reason", ""))

    def duration(self, now: float) -> float | None:
        if self.record is None:
            return None
        if self.state == "RUNNING":
            return now - float(self.record.data["started"])
        value = self.record.data.get("duration_s")
        return float(value) if value not in (None, "") else None


_FLAGS = frozenset(FLAG_NAMES)
_CACHE_VERSION = 5
CACHE_SHARD = 1024  # runs per file of the FLAG cache
_UNHATCHED = State.UNHATCHED.value


class FlagCache:
    """What settled runs' FLAGs say, each proven current by ``stat`` calls before it is used.

    An entry: ``[flag name, the FLAG's identity, attempt, data, the run directory's mtime,
    its status --json row]`` (the row as text, "" until ``json_text`` encoded it; data as JSON
    text until a reader needs it parsed). Kept in ``.status-cache/<k>.tsv``, one file per
    ``CACHE_SHARD`` runs of the manifest (the k-th block; a JSON line naming the version and
    the sweep's directory, then an entry per line, its fields separated by tabs and its JSON
    texts on one line: nothing to escape or undo): a cache for runs ``start:stop`` reads only
    their blocks' files and writes only those it learned something for, so the workers of one
    ``status`` read and write their shares side by side, and a live sweep rewrites a block,
    not the whole cache. A block written for the
    sweep at another path is not used (its rows name the old directories)."""

    def __init__(self, store: SweepStore | None = None, start: int = 0,
                 stop: int | None = None, writable: bool = True) -> None:
        self.folder = store.paths.status_cache if store is not None and writable else None
        self.root = str(store.root) if store is not None else ""
        self.entries: dict[str, list[Any]] = {}
        self._block: dict[str, int] = {}  # run id -> its block, for the runs in range
        self._dirty: set[int] = set()
        self.current: set[str] = set()  # entries proven current (or learned) by this process
        if store is None:
            return
        listed = store.manifest["runs"]
        stop = len(listed) if stop is None else min(stop, len(listed))
        self._block = {listed[i]["id"]: i // CACHE_SHARD for i in range(start, stop)}
        folder = store.paths.status_cache
        if not own_folder(folder):  # (another user could put rows there: a forged summary
            self.folder = None  # would be a wrong number; the FLAGs are read instead)
            return
        for block in range(start // CACHE_SHARD, -(-stop // CACHE_SHARD)):
            path = folder / f"{block}.tsv"
            try:
                if why_untrusted(path) is None:
                    self.entries.update(_read_block(path, self.root))
            except (OSError, ValueError, KeyError, AttributeError, TypeError):
                pass  # a cache: unreadable means empty

    def put(self, run_id: str, name: str, ident: str, record: FlagRecord | None,
            dir_mtime: int, text: str | None = None) -> None:
        """``text``: the FLAG's data as JSON text, if the caller has it (a JSON FLAG's bytes),
        kept instead of the parsed data (the cache file holds text)."""
        data = text if text is not None else (record.data if record else None)
        self.entries[run_id] = [name, ident, record.attempt if record else 0, data, dir_mtime,
                                ""]
        self.current.add(run_id)
        self._touch(run_id)

    def keep_row(self, run_id: str, text: str) -> None:
        """The encoded row of a run whose entry this process proved current or learned."""
        if run_id in self.current:
            self.entries[run_id][5] = text
            self._touch(run_id)

    def _touch(self, run_id: str) -> None:
        block = self._block.get(run_id)
        if block is not None:
            self._dirty.add(block)

    def row(self, ref: RunRef) -> tuple[str, str] | None:
        """(state, encoded row) of a run whose cached row is current, else None. A stale
        entry is dropped, so that the read that follows does not prove it stale again."""
        hit = self.entries.get(ref.id)
        if hit is None or not hit[5]:
            return None
        if not _current(ref, hit):
            del self.entries[ref.id]  # (the read puts what it finds, once settled)
            self._touch(ref.id)
            return None
        return STATE_OF_FLAG[hit[0]].value, hit[5]

    def save(self) -> None:
        if self.folder is None or not self._dirty:
            return
        ids: dict[int, list[str]] = {block: [] for block in self._dirty}
        for run_id, block in self._block.items():
            if block in ids and run_id in self.entries:
                ids[block].append(run_id)
        try:
            self.folder.mkdir(mode=0o755, exist_ok=True)  # (own_folder fixed an older one)
            (self.folder.parent / ".status-cache.json").unlink(missing_ok=True)  # (before v4)
            head = json.dumps({"version": _CACHE_VERSION, "root": self.root})
            for block, members in ids.items():
                lines = [head]
                lines += filter(None, (_entry_line(k, self.entries[k]) for k in members))
                write_text_atomic(self.folder / f"{block}.tsv", "\n".join(lines) + "\n",
                                  durable=False)
                (self.folder / f"{block}.json").unlink(missing_ok=True)  # (before v5)
        except OSError:
            pass  # e.g. a read-only sweep directory: the cache is only an accelerator
        self._dirty.clear()


def _read_block(path: Path, root: str) -> dict[str, list[Any]]:
    """The entries of one cache file written for the sweep at ``root`` (none from another
    version or place; a malformed file raises ``ValueError``)."""
    head, _, body = path.read_text(encoding="utf-8").partition("\n")
    meta = json.loads(head)
    if meta.get("version") != _CACHE_VERSION or meta.get("root") != root:
        return {}
    entries = {}
    for line in body.split("\n"):
        parts = line.split("\t")
        if len(parts) != 7 or parts[1] not in _FLAGS:
            continue  # (the empty line after the last)
        run_id, name, ident, attempt, mtime, data, row = parts
        entries[run_id] = [name, ident, int(attempt), data or None, int(mtime), row]
    return entries


def _entry_line(run_id: str, entry: list[Any]) -> str | None:
    """An entry as a line of its block's file (None: a run id that cannot be one field)."""
    name, ident, attempt, data, mtime, row = entry
    if "\t" in run_id or "\n" in run_id:
        return None
    if data is None:
        data = ""
    elif isinstance(data, str):  # a FLAG's JSON text: line breaks and tabs are only ever
        data = data.replace("\n", " ").replace("\t", " ")  # whitespace between its tokens
    else:
        data = _ROWS.encode(data)
    return f"{run_id}\t{name}\t{ident}\t{attempt}\t{mtime}\t{data}\t{row}"


def _ident(st: os.stat_result) -> str:
    return f"{st.st_ino}:{st.st_size}:{st.st_mtime_ns}"


def _current(ref: RunRef, hit: list[Any]) -> bool:
    """Whether a cache entry still says what the run's FLAG says: the run directory's mtime is
    unchanged (no FLAG created, renamed or removed) and the FLAG is the same file, unedited.
    An UNHATCHED run is told by its FLAG's name alone, so the directory's mtime is enough:
    claiming it renames that FLAG."""
    try:
        if os.stat(ref.dir).st_mtime_ns != hit[4]:
            return False
        return hit[0] == _UNHATCHED or _ident(os.stat(f"{ref.dir}/{hit[0]}")) == hit[1]
    except OSError:
        return False


def _read_bytes(path: str, dir_fd: int | None = None) -> tuple[str, bytes]:
    """A file's identity (``_ident``) and then its bytes, from one open file."""
    fd = os.open(path, os.O_RDONLY, dir_fd=dir_fd)
    try:
        st = os.fstat(fd)
        chunks = [os.read(fd, st.st_size + 1)]
        if len(chunks[0]) > st.st_size:  # (grown since: read on; a short read is the end)
            while chunks[-1]:
                chunks.append(os.read(fd, 65536))
    finally:
        os.close(fd)
    return _ident(st), b"".join(chunks)


def _cached_state(ref: RunRef, cache: FlagCache) -> RunStatus | None:
    """A run's state alone from the cache: the run directory's mtime proves which FLAG it holds
    (one ``stat``); what the FLAG says is not needed."""
    hit = cache.entries.get(ref.id)
    try:
        if hit is None or os.stat(ref.dir).st_mtime_ns != hit[4]:
            return None
    except OSError:
        return None
    return RunStatus(ref, STATE_OF_FLAG[hit[0]].value, None)


def _cached(ref: RunRef, cache: FlagCache) -> RunStatus | None:
    """A settled run straight from the cache: two stats instead of listing the directory and
    reading its FLAG; a run not started yet, one."""
    hit = cache.entries.get(ref.id)
    if hit is None or not _current(ref, hit):
        return None
    cache.current.add(ref.id)
    name = hit[0]
    if name == _UNHATCHED:
        return RunStatus(ref, _UNHATCHED, None)
    if isinstance(hit[3], str):  # (as the cache file holds it)
        hit[3] = json.loads(hit[3])
    state = STATE_OF_FLAG[name]
    return RunStatus(ref, state.value, FlagRecord(state, hit[2], f"{ref.dir}/{name}", hit[3]))


def read_run(ref: RunRef, details: bool = True, cache: FlagCache | None = None) -> RunStatus:
    """A run's state from its FLAG files. A live runner may move a FLAG between the listing and
    the reading: that run is simply read again."""
    for _ in range(READ_TRIES):
        try:
            return _read_run(ref, details, cache)
        except FileNotFoundError:
            continue
    return RunStatus(ref, CORRUPT, None, f"the FLAG files of {ref.dir} kept changing while "
                     f"they were read ({READ_TRIES} tries); read it again")



def _read_run(ref: RunRef, details: bool, cache: FlagCache | None) -> RunStatus:
    if cache is not None:
        hit = _cached(ref, cache) if details else _cached_state(ref, cache)
        if hit is not None:
            return hit
    try:  # (the directory opened once: its mtime, its listing and its FLAG read through it)
        fd = os.open(ref.dir, os.O_RDONLY | os.O_DIRECTORY)
    except (FileNotFoundError, NotADirectoryError):
        return RunStatus(ref, CORRUPT, None, f"run directory {ref.dir} is missing")
    try:
        dir_mtime = os.fstat(fd).st_mtime_ns  # before listing: a later change shows
        flags = [name for name in os.listdir(fd) if name in _FLAGS]
        if len(flags) != 1:
            record = read_state(ref.paths)
            return RunStatus(ref, record.state.value, record)
        name = flags[0]
        state = STATE_OF_FLAG[name]
        # (a directory changed in the last seconds may change again within the same tick:
        # cached later, as ``StateWatch`` does)
        learn = cache if time.time_ns() - dir_mtime > SETTLED_NS else None
        if state is State.UNHATCHED or not details:
            if learn is not None and state is State.UNHATCHED:
                learn.put(ref.id, name, "", None, dir_mtime)
            return RunStatus(ref, state.value, None)
        path = f"{ref.dir}/{name}"
        ident, raw = _read_bytes(name, fd)  # (the identity of the file read, before it)
        record = parse_flag(path, raw)
        if learn is not None and state.is_terminal:
            learn.put(ref.id, name, ident, record, dir_mtime,
                      None if state is State.CRASHED else raw.decode())
        return RunStatus(ref, state.value, record)
    except CorruptStateError as exc:
        return RunStatus(ref, CORRUPT, None, str(exc))
    finally:
        os.close(fd)


@contextlib.contextmanager
def long_lived(collect: bool = True) -> Iterator[None]:
    """What exists now (a manifest, a cache, composed configs) is kept to the end of a scan or
    a sweep: out of the collector's sight meanwhile, so that the collections that reading
    100,000 runs sets off do not walk it again and again (they made parsing a FLAG ten times as
    dear). ``collect=False`` (a scan, which makes no reference cycles): no collection runs at
    all meanwhile (the rows it builds would otherwise be walked again and again as they pile
    up: a quarter of a first ``status``). A caller's own freeze (a study's proposals) is kept:
    what was frozen before is frozen after."""
    frozen_before = gc.get_freeze_count() > 0
    enabled_before = gc.isenabled()
    gc.freeze()
    if not collect:
        gc.disable()
    try:
        yield
    finally:
        if enabled_before:
            gc.enable()
        if frozen_before:
            gc.freeze()
        else:
            gc.unfreeze()


def scan(store: SweepStore, details: bool = True) -> list[RunStatus]:
    """Every run's status (``details=False``: its state alone, from the cache where it is
    current, which is never written then)."""
    cache = FlagCache(store, writable=details)
    refs = store.runs()
    with long_lived(collect=False):
        rows = [read_run(ref, details, cache) for ref in refs]
    cache.save()
    return rows


_ENDED = frozenset(s.value for s in State if s.is_terminal)


class LiveScan:
    """Every run's status, looked at again and again by one process (a study's proposals): an
    ended run (a terminal FLAG) is read once and kept until the sweep's ``.reopened`` token
    changes, which ``state.claim`` rewrites before it claims an ended run again; the runs still
    to end are read at every look. A look so costs the runs not ended, not the sweep's size:
    while the manifest's runs stay the same objects (this process added the new ones, or none
    came), a look walks only the runs not ended and the new ones.

    ``changes()`` gives what the looks read afresh since it was last asked, so that a caller
    that keeps its own picture of the sweep (a study's sampler) brings it up to date from those
    alone.

    What this does not see until the next claim of an ended run: a run directory deleted or a
    FLAG edited by hand (``scan`` reads those; ``status`` uses it)."""

    def __init__(self, store: SweepStore) -> None:
        self.store = store
        self.token: str | None = None
        self.ended: dict[str, RunStatus] = {}
        self._rows: list[RunStatus] = []  # the last look, in manifest order
        self._open: list[int] = []  # its runs not ended (indices into _rows)
        self._refs: list[RunRef] = []  # the manifest's refs it was made from
        self._changed: dict[str, RunStatus] | None = None  # read afresh since changes()

    def _token(self) -> str | None:
        """The sweep's ``.reopened`` token: "" if no ended run was ever claimed again, None
        if it cannot be read as a small regular file (then every run is read at every look)."""
        try:
            fd = os.open(self.store.paths.reopened, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except FileNotFoundError:
            return ""
        except OSError:
            return None
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                return None
            return os.read(fd, 64).decode("ascii", "replace")
        except OSError:
            return None
        finally:
            os.close(fd)

    def _read(self, ref: RunRef) -> RunStatus:
        row = read_run(ref)
        if row.state in _ENDED and row.record is not None:
            self.ended[ref.id] = row
        if self._changed is not None:
            self._changed[ref.id] = row
        return row

    def rows(self) -> list[RunStatus]:
        token = self._token()
        reset = token is None or token != self.token
        if reset:
            self.ended, self._changed = {}, None  # (a caller of changes() starts afresh)
        self.token = token
        refs = self.store.runs()
        known = len(self._refs)
        if not reset and known and len(refs) >= known and refs[known - 1] is self._refs[-1]:
            rows, still = self._rows, []  # the same runs, maybe more: the open and new ones
            for i in self._open:
                row = rows[i] = self._read(refs[i])
                if row.ref.id not in self.ended:
                    still.append(i)
            for i in range(known, len(refs)):
                rows.append(self._read(refs[i]))
                if rows[i].ref.id not in self.ended:
                    still.append(i)
        else:
            ended, rows, still = self.ended, [], []
            for i, ref in enumerate(refs):
                kept = ended.get(ref.id)
                if kept is None:
                    kept = self._read(ref)
                    if ref.id not in ended:
                        still.append(i)
                rows.append(kept)
        self._rows, self._open, self._refs = rows, still, refs
        return list(rows)

    def changes(self) -> list[RunStatus] | None:
        """The rows read afresh (a run not ended, or new) by the looks since the last call, the
        latest of each run (in no set order); None the first time and after the ended runs
        were dropped (an ended run claimed again): then the caller takes every row of the
        last look."""
        changed, self._changed = self._changed, {}
        return None if changed is None else list(changed.values())


def counts(rows: list[RunStatus]) -> dict[str, int]:
    c = Counter(r.state for r in rows)
    return {state: c.get(state, 0) for state in STATE_ORDER}


def liveness(rows: list[RunStatus], stale_after_s: float,
             now: float) -> dict[str, tuple[Death | None, str]]:
    """For the RUNNING rows: the verdict if the holder is gone, and what the cluster says of
    the run (one batch: one squeue for SLURM)."""
    running = [r for r in rows if r.state == "RUNNING"]
    seen = observe([(r.ref.paths, r.lease) for r in running], stale_after_s, now)
    return {r.ref.id: v for r, v in zip(running, seen, strict=True)}


def rows_json(rows: list[RunStatus], now: float) -> list[dict[str, Any]]:
    live = liveness(rows, float("inf"), now)
    return [row_json(r, now, *live.get(r.ref.id, (None, ""))) for r in rows]


def row_json(row: RunStatus, now: float, dead: Death | None = None, cluster: str = "",
             with_metrics: bool = True) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": row.ref.id, "dir": row.ref.dir, "state": row.state,
        "values": row.ref.values, "summary": row.summary,
        "attempt": row.record.attempt if row.record else (0 if row.state == "UNHATCHED" else None),
        "duration_s": row.duration(now),
    }
    if row.reason:
        out["reason"] = row.reason
    if row.state == "RUNNING":
        lease = row.lease
        out["lease"] = {"host": lease.host, "pid": lease.pid, "phase": lease.phase,
                        "heartbeat": lease.heartbeat, "launcher": lease.launcher}
        out["stale"] = dead is not None
        if dead is not None:
            out["stale_reason"] = dead.reason
        if cluster:
            out["cluster_state"] = cluster
        if with_metrics:
            out["last_metrics"] = last_metrics(row.ref.paths.metrics)
    return out


def to_json(store: SweepStore, rows: list[RunStatus]) -> dict[str, Any]:
    now = time.time()
    return {"sweep_dir": str(store.root), "name": store.manifest.get("name"),
            "counts": counts(rows), **_marks_json(store.root), "runs": rows_json(rows, now)}


def _marks_json(root: Path) -> dict[str, Any]:
    """The sweep's tags and notes, and each tagged run's tags, for ``status --json``."""
    from runner.storage.marks import read_marks

    marks = read_marks(root)
    return {**marks.sweep.as_dict(),
            "run_tags": {k: list(v.tags) for k, v in marks.runs.items() if v.tags},
            "notices": list(notices.read(root).values())}


PARALLEL_MIN_RUNS = 8_192  # (smaller sweeps are scanned in one process)


def json_text(store: SweepStore, workers: int | None = None) -> str:
    """``status --json`` as text; big sweeps are scanned by forked workers.

    The same rows as ``to_json(store, scan(store))``. The runs are read by blocks of the FLAG
    cache, dealt to the workers in turn (the early blocks of a sweep are mostly finished, the
    late ones mostly not started: each worker gets both); a settled run's row is kept encoded
    in the cache, so a later call costs its ``stat`` calls and no parsing.
    """
    listed = store.manifest["runs"]
    blocks = [(b, min(b + CACHE_SHARD, len(listed)))
              for b in range(0, len(listed), CACHE_SHARD)] or [(0, 0)]
    workers = workers or (min(4, os.cpu_count() or 1) if len(listed) >= PARALLEL_MIN_RUNS else 1)
    workers = min(workers, len(blocks))
    now = time.time()

    def work(share: list[tuple[int, int]]) -> tuple[list[str], dict[str, int]]:
        caches = [FlagCache(store, *bounds) for bounds in share]
        gc.freeze()  # (the caches too; long_lived below ends it in this process)
        texts: list[list[str]] = []
        counted: Counter[str] = Counter()
        read: list[tuple[int, int, RunStatus]] = []  # rows not served from the cache
        for k, (bounds, cache) in enumerate(zip(share, caches, strict=True)):
            texts.append([])
            for ref in store.runs(*bounds):
                kept = cache.row(ref)
                if kept is None:
                    row = read_run(ref, True, cache)
                    if row.state == _UNHATCHED:  # (the same row as row_json's, for less)
                        texts[k].append(text := _unhatched_row(ref))
                        counted[_UNHATCHED] += 1
                        cache.keep_row(ref.id, text)
                        continue
                    read.append((k, len(texts[k]), row))
                    texts[k].append("")
                else:
                    counted[kept[0]] += 1
                    texts[k].append(kept[1])
        for (k, at, row), obj in zip(read, rows_json([r for *_, r in read], now), strict=True):
            texts[k][at] = text = _ROWS.encode(obj)
            counted[row.state] += 1
            if row.state != "RUNNING":
                caches[k].keep_row(row.ref.id, text)
        for cache in caches:
            cache.save()
        return [",".join(t) for t in texts], dict(counted)

    with long_lived(collect=False):
        parts = _forked_map(work, [blocks[w::workers] for w in range(workers)])
    total: Counter[str] = Counter()
    by_block: dict[int, str] = {}
    for w, (block_texts, part_counts) in enumerate(parts):
        total.update(part_counts)
        by_block.update(zip(range(w, len(blocks), workers), block_texts, strict=True))
    head = json.dumps({"sweep_dir": str(store.root), "name": store.manifest.get("name"),
                       "counts": {s: total.get(s, 0) for s in STATE_ORDER},
                       **_marks_json(store.root)})
    rows = ",".join(t for _, t in sorted(by_block.items()) if t)
    return redact(head[:-1] + ', "runs": [' + rows + "]}")


_ROWS = json.JSONEncoder(default=str)  # (json.dumps builds an encoder per call given default=)
_TEXT = json.encoder.encode_basestring_ascii  # (what _ROWS does with a string)


def _unhatched_row(ref: RunRef) -> str:
    """``_ROWS.encode(row_json(row))`` of a run not started yet, put together directly."""
    return (f'{{"id": {_TEXT(ref.id)}, "dir": {_TEXT(ref.dir)}, "state": "UNHATCHED", '
            f'"values": {_ROWS.encode(ref.values)}, "summary": {{}}, "attempt": 0, '
            f'"duration_s": null}}')


def _forked_map(fn: Any, items: list[Any]) -> list[Any]:
    """``[fn(x) for x in items]``, the items after the first in forked children (2 cores -> ~2x).

    A child that fails is redone in this process, so the result never depends on forking.
    """
    if len(items) == 1 or not hasattr(os, "fork"):
        return [fn(x) for x in items]
    children = []
    for item in items[1:]:
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # child: compute, send, and leave without running any parent cleanup
            os.close(r)
            try:
                with os.fdopen(w, "wb") as f:
                    f.write(pickle.dumps(fn(item)))
                os._exit(0)
            except BaseException:
                os._exit(1)
        os.close(w)
        children.append((pid, r, item))
    results = [fn(items[0])]
    for pid, r, item in children:
        with os.fdopen(r, "rb") as f:
            data = f.read()
        _, status = os.waitpid(pid, 0)
        results.append(pickle.loads(data) if status == 0 and data else fn(item))
    return results


def render(store: SweepStore, rows: list[RunStatus], limit: int | None = 50) -> Any:
    """A rich renderable: counts, then one row per run (varying values, state, time, metrics)."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    now = time.time()
    varying = store.manifest.get("varying", [])
    shown = rows if limit is None else _interesting_first(rows)[:limit]
    table = Table(show_edge=False, header_style="bold")
    table.add_column("id")
    for key in varying:
        table.add_column(key)
    table.add_column("state")
    table.add_column("time", justify="right")
    table.add_column("metrics / reason", overflow="fold")
    colours = {"COMPLETED": "green", "CRASHED": "red", "RUNNING": "cyan", CORRUPT: "magenta",
               "INTERRUPTED": "yellow", "PRUNED": "blue"}
    stale_after = float((store.manifest.get("execution", {}).get("runner") or {}).get(
        "stale_after_s", 120.0))
    live = liveness(shown, stale_after, now)
    from runner.storage.marks import read_marks

    marks = read_marks(store.root)
    for row in shown:
        duration = row.duration(now)
        state = Text(row.state, style=colours.get(row.state, ""))
        info = row.reason if row.state in ("CRASHED", "INTERRUPTED", "PRUNED", CORRUPT) else ""
        if row.state == "CRASHED" and row.record is not None:  # its failure's class first
            from runner.storage.failures import classify

            info = f"{classify(row.record.data)} failure: {info}"
        metrics = row.summary or (last_metrics(row.ref.paths.metrics) or {}
                                  if row.state == "RUNNING" else {})
        if not info:
            info = ", ".join(f"{k}={_fmt(v)}" for k, v in metrics.items()
                             if k not in ("time", "attempt"))[:120]
        if row.state == "RUNNING":
            death, cluster = live.get(row.ref.id, (None, ""))
            info = " · ".join(x for x in (_placement(row.lease, cluster), info) if x)
            if death:  # what the next launch will find: say so now
                state = Text("RUNNING (dead)", style="yellow")
                then = ("interrupted; `resume` runs it again" if death.state is State.INTERRUPTED
                        else "crashed")
                info = f"{death.reason}: {then}"
        tags = marks.of_run(row.ref.id).tags
        if tags:
            info = " · ".join(x for x in (info, "tags: " + ", ".join(tags)) if x)
        table.add_row(row.ref.id, *(redact(_fmt(row.ref.values.get(k))) for k in varying), state,
                      f"{duration:.1f}s" if duration is not None else "", redact(info))
    header = Text(f"{store.root}  ({store.manifest.get('kind')}, {len(rows)} runs)  "
                  + "  ".join(f"{s.lower()}: {n}" for s, n in counts(rows).items() if n))
    parts: list[Any] = [header, *_annotation_lines(marks.sweep),
                        *(Text("notice: " + redact(text), style="yellow")
                          for text in notices.read(store.root).values()), table]
    if len(shown) < len(rows):
        parts.append(Text(f"... {len(rows) - len(shown)} more runs (--all shows every run)"))
    return Group(*parts)


def _annotation_lines(marks: Any) -> list[Any]:
    """The sweep's tags and its last note (its ``Marks``), under the header."""
    from rich.text import Text

    lines = []
    if marks.tags:
        lines.append(Text("tags: " + redact(", ".join(marks.tags))))
    if marks.notes:
        more = f" (and {len(marks.notes) - 1} earlier)" if len(marks.notes) > 1 else ""
        lines.append(Text(f"note{more}: " + redact(marks.notes[-1].text)))
    return lines


def _placement(lease: Any, cluster: str = "") -> str:
    """'on cpus 0,1, gpu 0' from a lease's launcher facts (pinned slots, job ids)."""
    launcher = lease.launcher
    parts = [f"{key if len(launcher[key]) > 1 else key[:-1]} "
             f"{','.join(map(str, launcher[key]))}" for key in ("cpus", "gpus")
             if launcher.get(key)]
    if launcher.get("backend") in ("slurm", "slurm-pool"):
        job = launcher.get("job") or (f"{launcher['array_job_id']}_{launcher.get('index')}"
                                      if launcher.get("array_job_id") else "submitting")
        parts.append(f"job {job} {cluster or lease.phase}"
                     + (f", requeued {launcher['requeues']}x" if launcher.get("requeues")
                        else ""))
    return ("on " + ", ".join(parts)) if parts else ""


def _interesting_first(rows: list[RunStatus]) -> list[RunStatus]:
    rank = {CORRUPT: 0, "CRASHED": 1, "RUNNING": 2, "INTERRUPTED": 3}
    return sorted(rows, key=lambda r: rank.get(r.state, 4))


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value)
