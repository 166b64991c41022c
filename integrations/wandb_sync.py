"""``python -m runner wandb-sync SWEEP_DIR``: upload a sweep's offline WandB runs.

Compute nodes without internet log to WandB offline (``WANDB_MODE=offline``): every attempt of
every run leaves ``<run dir>/wandb/offline-run-*/run-<id>.wandb``. From a machine that has
internet this command hands them to WandB's own ``wandb sync`` (attempts of one run in order,
so a resumed run stays one WandB run), a few at a time with a progress bar, and says what it
did. What WandB marked synced already (its ``.synced`` file) is skipped, as are runs still
RUNNING (synced once they end: a half-synced run would be marked done) and attempts killed
before WandB wrote a record. An attempt killed mid-write leaves a torn log: WandB uploads what
it can read and runner marks it (``.runner-synced``) so it is not uploaded twice. Nothing is
deleted.
"""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from runner.config.secrets import redact
from runner.errors import ConfigError, StateError
from runner.storage import atomic
from runner.storage.store import SweepStore

PARALLEL = 4  # `wandb sync` processes at once (one per run)
SYNC_TIMEOUT_S = 1800
BLOCK = 32768
PARTIAL = ".runner-synced"


@dataclass(frozen=True)
class OfflineRun:
    run_id: str  # runner's
    state: str
    file: Path  # run-<id>.wandb

    @property
    def synced(self) -> bool:
        """WandB's own mark, or runner's for a torn log WandB uploaded all it could of."""
        return any(self.file.with_name(self.file.name + mark).exists()
                   for mark in (".synced", PARTIAL))

    @property
    def empty(self) -> bool:
        """No whole record: the attempt was killed before WandB wrote anything."""
        return first_record_end(self.file) is None


def first_record_end(path: Path) -> int | None:
    """Where the first whole record of a .wandb log ends (None: there is none). The log is
    LevelDB's format: a 7-byte header, then 32 KiB blocks of [crc32][length][type] chunks."""
    try:
        with open(path, "rb") as f:
            data = f.read(BLOCK)
    except OSError:
        return None
    pos = 7
    while pos + 7 <= len(data):
        crc, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        payload = data[pos + 7:pos + 7 + length]
        if (kind == 0 or len(payload) < length
                or zlib.crc32(payload, zlib.crc32(bytes([kind]))) != crc):
            return None
        pos += 7 + length
        if kind in (1, 4):  # FULL or LAST
            return pos
    return None


@dataclass
class SyncResult:
    synced: list[OfflineRun] = field(default_factory=list)
    partial: list[OfflineRun] = field(default_factory=list)  # torn tails: what WandB could read
    already: list[OfflineRun] = field(default_factory=list)
    running: list[OfflineRun] = field(default_factory=list)
    empty: list[OfflineRun] = field(default_factory=list)
    failed: list[tuple[OfflineRun, str]] = field(default_factory=list)

    def summary(self) -> str:
        parts = [f"synced {len(self.synced) + len(self.partial)} offline WandB run(s)"
                 + (f" ({len(self.partial)} of killed attempts: up to where their log was torn)"
                    if self.partial else ""),
                 f"{len(self.already)} already synced (skipped)"]
        if self.running:
            parts.append(f"{len(self.running)} still RUNNING (skipped: sync them when they end)")
        if self.empty:
            parts.append(f"{len(self.empty)} empty (attempts killed before WandB wrote "
                         "anything)")
        parts.append(f"{len(self.failed)} failed")
        return ", ".join(parts)


def offline_runs(store: SweepStore) -> list[OfflineRun]:
    """Every attempt's offline WandB data in the sweep, oldest attempt first per run."""
    from runner.results.status import read_run

    found = []
    for ref in store.runs():
        files = sorted(Path(ref.dir).glob("wandb/offline-run-*/run-*.wandb"))
        if not files:
            continue
        state = read_run(ref).state
        found += [OfflineRun(ref.id, state, f) for f in files]
    return found


def _has_key() -> bool:
    from runner.integrations.wandb_tracker import _has_key as has_key

    return has_key()


def _sync(runs: list[OfflineRun], project: str | None, entity: str | None
          ) -> list[tuple[OfflineRun, str | None]]:
    """One run's attempts, in order, through ``wandb sync``: each attempt with None (synced)
    or why not."""
    command = [sys.executable, "-c", "from wandb.cli.cli import cli; cli()", "sync",
               "--no-include-synced"]
    if project:
        command += ["--project", project]
    if entity:
        command += ["--entity", entity]
    env = {k: v for k, v in os.environ.items() if k != "WANDB_MODE"}  # this machine is online
    try:
        proc = subprocess.run([*command, *(str(r.file.parent) for r in runs)], env=env,
                              capture_output=True, text=True, timeout=SYNC_TIMEOUT_S)
        output = redact(proc.stdout + proc.stderr)
    except subprocess.TimeoutExpired:
        output = f"ERROR wandb sync took longer than {SYNC_TIMEOUT_S} s"
    out: list[tuple[OfflineRun, str | None]] = []
    for run in runs:
        mine = [ln.strip() for ln in output.splitlines() if run.file.parent.name in ln]
        if run.synced:
            out.append((run, None))
        elif any("ends with an incomplete record" in ln for ln in mine):
            atomic.write_text_atomic(run.file.with_name(run.file.name + PARTIAL),
                                     "synced up to its torn tail\n")
            out.append((run, "torn"))
        else:
            errors = [ln for ln in mine if "error" in ln.lower()] or [
                ln.strip() for ln in output.splitlines() if "error" in ln.lower()]
            out.append((run, (errors or ["wandb sync gave no reason"])[-1][:200]))
    return out


def sync_sweep(sweep: Path, project: str | None = None, entity: str | None = None,
               dry_run: bool = False, progress: bool = True) -> SyncResult:
    store = SweepStore(sweep)
    _ = store.manifest  # a sweep, or a clear error
    try:
        import wandb  # noqa: F401
    except ImportError:
        raise ConfigError("wandb-sync needs the wandb package: pip install wandb") from None
    found = offline_runs(store)
    if not found:
        raise StateError(f"no offline WandB runs in {sweep} (runs log to WandB offline with "
                         "tracker=wandb and WANDB_MODE=offline)")
    result = SyncResult()
    todo = []
    for run in found:
        if run.synced:
            result.already.append(run)
        elif run.state == "RUNNING":
            result.running.append(run)
        elif run.empty:
            result.empty.append(run)
        else:
            todo.append(run)
    if dry_run or not todo:
        result.synced = todo if dry_run else []
        return result
    if not _has_key():
        raise ConfigError("wandb-sync needs a WandB API key on this machine (run `wandb login` "
                          "or set WANDB_API_KEY)")
    from concurrent.futures import ThreadPoolExecutor

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from runner.config import secrets
    by_run: dict[str, list[OfflineRun]] = {}
    for run in todo:  # a run's attempts together and in order: a resumed run is continued
        by_run.setdefault(run.run_id, []).append(run)
    with Progress(TextColumn("syncing to WandB"), BarColumn(), MofNCompleteColumn(),
                  console=secrets.console(stderr=True), disable=not progress,
                  transient=True) as bar, ThreadPoolExecutor(PARALLEL) as pool:
        task = bar.add_task("sync", total=len(todo))
        for outcomes in pool.map(lambda runs: _sync(runs, project, entity), by_run.values()):
            for run, why in outcomes:
                if why is None:
                    result.synced.append(run)
                elif why == "torn":
                    result.partial.append(run)
                else:
                    result.failed.append((run, why))
            bar.advance(task, len(outcomes))
    return result
