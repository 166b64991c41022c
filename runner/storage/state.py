"""FLAG-file state machine of one run.

A run directory holds one FLAG file naming its state::

    UNHATCHED --claim--> RUNNING --finish--> COMPLETED | CRASH.txt | INTERRUPTED
                            ^                               |           |
                            +-------- claim (resume) -------+-----------+  (CRASH only on retry)

Every FLAG file carries the attempt number it belongs to. A transition writes the new FLAG
atomically (temp file, fsync, rename) and then moves the old one to ``attempts/``; a process killed
between the two steps leaves two FLAG files, and readers pick the newer one by (attempt, rank). So
no kill at any moment can lose or invent a state. Transitions run under an exclusive ``flock`` on
the run's ``.lock`` file, which the kernel releases when its holder dies, so two runner processes
resuming one sweep can never claim the same run twice.
"""

from __future__ import annotations

import contextlib
import enum
import fcntl
import json
import os
import socket
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psutil

from runner.errors import CorruptStateError
from runner.storage.atomic import fsync_dir, write_json_atomic, write_text_atomic
from runner.storage.paths import (
    FLAG_COMPLETED,
    FLAG_CRASH,
    FLAG_INTERRUPTED,
    FLAG_NAMES,
    FLAG_PRUNED,
    FLAG_RUNNING,
    FLAG_UNHATCHED,
    RunPaths,
    SweepPaths,
)


class State(enum.StrEnum):
    UNHATCHED = "UNHATCHED"
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    CRASHED = "CRASHED"
    INTERRUPTED = "INTERRUPTED"
    PRUNED = "PRUNED"

    @property
    def is_terminal(self) -> bool:
        return self in (State.COMPLETED, State.CRASHED, State.INTERRUPTED, State.PRUNED)


FLAG_OF_STATE = {
    State.UNHATCHED: FLAG_UNHATCHED,
    State.RUNNING: FLAG_RUNNING,
    State.COMPLETED: FLAG_COMPLETED,
    State.CRASHED: FLAG_CRASH,
    State.INTERRUPTED: FLAG_INTERRUPTED,
    State.PRUNED: FLAG_PRUNED,
}
STATE_OF_FLAG = {flag: state for state, flag in FLAG_OF_STATE.items()}
_RANK = {State.UNHATCHED: 0, State.RUNNING: 1}  # terminal states rank 2


@dataclass
class Lease:
    """Content of a RUNNING FLAG: who runs the run, since when, and proof of life."""

    token: str
    attempt: int
    host: str
    pid: int
    create_time: float
    started: float
    heartbeat: float
    phase: str = "launching"  # "launching" (the launcher holds it) or "running" (the worker does)
    launcher: dict[str, Any] = field(default_factory=dict)  # e.g. slot, SLURM job id

    @classmethod
    def new(cls, attempt: int, launcher: dict[str, Any] | None = None) -> Lease:
        now = time.time()
        return cls(token=uuid.uuid4().hex, attempt=attempt, host=socket.gethostname(),
                   pid=os.getpid(), create_time=process_create_time(os.getpid()), started=now,
                   heartbeat=now, launcher=dict(launcher or {}))


@dataclass
class FlagRecord:
    """One parsed FLAG file."""

    state: State
    attempt: int
    path: str
    data: dict[str, Any]

    @property
    def lease(self) -> Lease:
        assert self.state is State.RUNNING
        return Lease(**self.data)


def process_create_time(pid: int) -> float:
    try:
        return float(psutil.Process(pid).create_time())
    except psutil.Error:
        return 0.0


# ---------------------------------------------------------------- reading

def flag_names(root: str | Path) -> list[str]:
    """FLAG file names present in a run directory (one ``listdir``)."""
    return [name for name in os.listdir(root) if name in FLAG_NAMES]


def parse_crash_report(text: str) -> tuple[dict[str, str], str]:
    """Split a CRASH.txt into its ``key: value`` header and its free-text body."""
    head, _, body = text.partition("\n\n")
    header: dict[str, str] = {}
    for line in head.splitlines():
        key, sep, value = line.partition(": ")
        if not sep:
            raise ValueError(f"header line {line!r} is not 'key: value'")
        header[key.strip()] = value.strip()
    return header, body


def dict_field(value: Any) -> dict[str, Any]:
    """A dict field of a FLAG's data (a CRASH.txt header holds it as JSON text)."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return {}
    return value if isinstance(value, dict) else {}


def read_flag(path: str | Path, name: str | None = None) -> FlagRecord:
    """Parse one FLAG file (``name``: its FLAG name, when the file is an archived copy such as
    ``attempts/1.CRASH.txt``); a torn or foreign file raises ``CorruptStateError``."""
    path = str(path)
    with open(path, "rb") as f:
        raw = f.read()
    return parse_flag(path, raw, name)


def parse_flag(path: str, raw: bytes, name: str | None = None) -> FlagRecord:
    """``read_flag`` of a FLAG file's bytes, already read."""
    state = STATE_OF_FLAG[name or os.path.basename(path)]
    try:
        text = raw.decode("utf-8")
        if state is State.CRASHED:
            header, body = parse_crash_report(text)
            data: dict[str, Any] = {**header, "details": body}
            attempt = int(header["attempt"])
        else:
            data = json.loads(text)
            if not isinstance(data, dict):
                raise ValueError("not a JSON object")
            attempt = int(data["attempt"])
            if state is State.RUNNING:
                Lease(**data)  # every lease field present, nothing unknown
    except (ValueError, KeyError, TypeError) as exc:
        raise CorruptStateError(path, raw, f"{type(exc).__name__}: {exc}") from None
    return FlagRecord(state, attempt, path, data)


def _newest(records: list[FlagRecord]) -> FlagRecord:
    return max(records, key=lambda r: (r.attempt, _RANK.get(r.state, 2)))


def read_state(paths: RunPaths) -> FlagRecord:
    """The run's current state. Raises ``CorruptStateError`` for an unreadable FLAG file.

    Read without the run's lock: a worker may replace a FLAG between the listing and the
    reading (RUNNING gone once COMPLETED is written), so a FLAG that vanished is looked for
    again; a run directory that is gone raises as ever."""
    for _ in range(READ_TRIES):
        names = flag_names(paths.root)
        if not names:
            raise CorruptStateError(paths.root, "", "no FLAG file in the run directory")
        try:
            return _newest([read_flag(paths.root / name) for name in names])
        except FileNotFoundError:
            if not paths.root.is_dir():
                raise
    raise CorruptStateError(paths.root, "", f"its FLAG files kept changing while they were "
                                            f"read ({READ_TRIES} tries)")


READ_TRIES = 20


# like git's "racily clean" rule: file times are coarse, so a directory changed in the last
# seconds may change again within the same tick; what was read then is read again later
SETTLED_NS = 2_000_000_000


class StateWatch:
    """A run's state read again only when its directory has changed: every state change (and a
    lease's update) creates or renames a FLAG there, so a directory whose mtime is the one seen
    at a settled read holds the FLAG read then. A watcher of many runs that mostly wait (a
    SLURM queue of thousands) pays one ``stat`` per run and look instead of a listing and a
    parse. A FLAG edited in place by hand is not seen until the next change."""

    __slots__ = ("paths", "_mtime", "_record")

    def __init__(self, paths: RunPaths) -> None:
        self.paths = paths
        self._mtime: int | None = None
        self._record: FlagRecord | None = None

    def read(self) -> FlagRecord:
        """``read_state``, or what it said last while the directory is unchanged."""
        try:
            mtime: int | None = os.stat(self.paths.root).st_mtime_ns
        except OSError:
            mtime = None
        if mtime is not None and mtime == self._mtime and self._record is not None:
            return self._record
        record = read_state(self.paths)  # (raises as ever; nothing is kept then)
        settled = mtime is not None and time.time_ns() - mtime > SETTLED_NS
        self._mtime, self._record = (mtime, record) if settled else (None, None)
        return record


# ---------------------------------------------------------------- transitions

@contextlib.contextmanager
def run_lock(paths: RunPaths) -> Iterator[None]:
    """Exclusive lock over the run's state; released by the kernel if the holder dies."""
    fd = os.open(paths.lock, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            yield
        finally:  # unlocked, not only closed: a process forked meanwhile (a rank forked while
            fcntl.flock(fd, fcntl.LOCK_UN)  # the heartbeat held this) shares the descriptor
    finally:
        os.close(fd)


def _archive(paths: RunPaths, record: FlagRecord) -> None:
    """Move a superseded FLAG into attempts/ (kept for history), if it can be moved.

    Not fsynced: if a power loss undoes the move, both FLAGs are back and the newer one still
    wins; only writing the *new* state must be durable.
    """
    try:
        paths.attempts.mkdir(mode=0o755, exist_ok=True)  # (others never write history)
        os.replace(record.path,
                   paths.attempts / f"{record.attempt}.{os.path.basename(record.path)}")
    except OSError:  # e.g. an immutable file: left where it is, the newer FLAG still wins
        pass


def _settle(paths: RunPaths) -> FlagRecord:
    """Read the state and archive FLAGs left behind by a killed transition (lock held)."""
    records = [read_flag(paths.root / name) for name in flag_names(paths.root)]
    if not records:
        raise CorruptStateError(paths.root, "", "no FLAG file in the run directory")
    newest = _newest(records)
    for record in records:
        if record is not newest:
            _archive(paths, record)
    return newest


def create_unhatched(paths: RunPaths, *, durable: bool = True) -> None:
    write_json_atomic(paths.flag(FLAG_UNHATCHED), {"attempt": 0, "created": time.time()},
                      durable=durable)


def note_reopening(paths: RunPaths) -> None:
    """Say, in the sweep's ``.reopened`` file, that an ended run changes again: a new token,
    written before the run's new FLAG (a claim killed after it changed the FLAG has changed the
    token too) and again after it (a reader that took the first token and then read the old
    FLAG sees the second at its next look). Not durable: a reader's ended runs live in its
    memory, which a power cut ends too."""
    if paths.root.parent.name != "runs":  # (a run directory outside a sweep)
        return
    write_text_atomic(SweepPaths(paths.root.parent.parent).reopened, uuid.uuid4().hex + "\n",
                      durable=False)


def claim(paths: RunPaths, allowed: frozenset[State],
          launcher: dict[str, Any] | None = None, phase: str = "launching") -> Lease | None:
    """Atomically move a run from one of ``allowed`` states to RUNNING.

    Returns the new lease, or None when the run is in another state (for example another runner
    claimed it first).
    """
    with run_lock(paths):
        current = _settle(paths)
        if current.state not in allowed:
            return None
        reopening = current.state.is_terminal
        if reopening:
            note_reopening(paths)
        lease = Lease.new(current.attempt + 1, launcher)
        lease.phase = phase
        write_json_atomic(paths.flag(FLAG_RUNNING), asdict(lease))
        _archive(paths, current)
        if reopening:
            note_reopening(paths)
        return lease


def update_lease(paths: RunPaths, token: str, **changes: Any) -> Lease | None:
    """Rewrite our RUNNING lease (heartbeat, worker pid); None if it is no longer ours.

    A ``launcher`` change is merged into the lease's launcher facts, not put in their place.
    """
    with run_lock(paths):
        current = _settle(paths)
        if current.state is not State.RUNNING or current.data["token"] != token:
            return None
        if "launcher" in changes:
            changes["launcher"] = {**current.data.get("launcher", {}), **changes["launcher"]}
        lease = Lease(**{**current.data, **changes})
        # atomic but not fsynced: losing a heartbeat to a power cut only ages the lease
        write_json_atomic(paths.flag(FLAG_RUNNING), asdict(lease), durable=False)
        return lease


def unclaim(paths: RunPaths, token: str) -> bool:
    """Undo our claim of a run that was never started (e.g. ``sbatch`` refused the job).

    The state before the claim is moved back from ``attempts/`` first and our RUNNING FLAG removed
    second: a kill in between leaves both, the RUNNING one wins, and since its job never existed
    recovery later finds it interrupted. Returns False if the lease is no longer ours.
    """
    with run_lock(paths):
        current = _settle(paths)
        if current.state is not State.RUNNING or current.data["token"] != token:
            return False
        previous = [p for p in (paths.attempts.glob(f"{current.attempt - 1}.*")
                                if paths.attempts.is_dir() else [])
                    if p.name.split(".", 1)[1] in FLAG_NAMES
                    and p.name.split(".", 1)[1] != FLAG_RUNNING]
        if previous:
            os.replace(previous[0], paths.root / previous[0].name.split(".", 1)[1])
            fsync_dir(paths.root)  # durable before the RUNNING FLAG goes
        else:
            create_unhatched(paths)
        os.unlink(current.path)
        return True


def finish(paths: RunPaths, token: str, state: State, payload: dict[str, Any],
           crash_details: str = "") -> bool:
    """End our RUNNING attempt in a terminal state. False if the lease is no longer ours."""
    assert state.is_terminal
    with run_lock(paths):
        current = _settle(paths)
        if current.state is not State.RUNNING or current.data["token"] != token:
            return False
        launcher = current.data.get("launcher")
        if launcher and "launcher" not in payload:  # where it ran: slot, SLURM job
            payload = {**payload, "launcher": launcher}
        # who ran the attempt, and since when: the attempt's history outlives its lease
        payload = {"host": current.data.get("host"), "pid": current.data.get("pid"),
                   "started": current.data.get("started"), **payload}
        write_terminal(paths, state, current.attempt, payload, crash_details)
        os.unlink(current.path)  # not fsynced: a resurrected RUNNING loses to the newer FLAG
        return True


def write_terminal(paths: RunPaths, state: State, attempt: int, payload: dict[str, Any],
                   crash_details: str = "") -> None:
    flag = paths.flag(FLAG_OF_STATE[state])
    if state is State.CRASHED:
        header = {"attempt": attempt, "time": time.time(), **payload}
        lines = [f"{k}: {json.dumps(v) if isinstance(v, dict) else ' '.join(str(v).split())}"
                 for k, v in header.items()]
        write_text_atomic(flag, "\n".join(lines) + "\n\n" + crash_details.rstrip() + "\n")
    else:
        write_json_atomic(flag, {"attempt": attempt, "time": time.time(), **payload})
