"""The run store: a sweep directory frozen from a Plan, and the runs inside it.

A sweep directory is built complete in a hidden temporary directory next to its final place,
flushed to disk, and renamed into place in one step. So a kill during expansion leaves either no
sweep or a whole one, and two runner processes creating the same sweep at once end up sharing the
one that won the rename.

Runs added later (a study's trials, a Hydra sweeper's batches, ``extend``) are appended to
``sweep.added.jsonl``, one fsynced line per addition, so that an addition costs its runs and not
the sweep's size; the manifest is ``sweep.json`` and those lines. Any rewrite of ``sweep.json``
(a launch's record, or the lines outgrowing it: amortised, each byte is rewritten a bounded number
of times) takes the lines in and removes the file; a reader skips lines whose runs are listed
already (a kill between the two) and a last line without its newline (being written, or cut
off: the next addition drops it).
"""

from __future__ import annotations

import ctypes
import fcntl
import glob
import hashlib
import json
import os
import shutil
import socket
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runner.config.configfile import dump_yaml
from runner.config.schema import without_one_shot
from runner.config.secrets import redact
from runner.config.trust import no_group_write
from runner.errors import CorruptStateError, EnvironmentFault, StateError, describe_os_error
from runner.planning.sweep import VARYING_RULE, Plan, RunSpec, axes_after, axes_of
from runner.storage import provenance
from runner.storage.atomic import (
    fsync_dir,
    write_bytes_atomic,
    write_json_atomic,
    write_new_text,
    write_text_atomic,
)
from runner.storage.paths import FLAG_NAMES, FLAG_UNHATCHED, RunPaths, SweepPaths, check_component
from runner.storage.state import create_unhatched, process_create_time

MANIFEST_VERSION = 1
def _syncfs(path: Path) -> None:
    """Flush the file system holding ``path`` (one call instead of an fsync per file)."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if getattr(libc, "syncfs", None) is None or libc.syncfs(fd) != 0:
            os.sync()
    finally:
        os.close(fd)


@dataclass(frozen=True, slots=True)
class RunRef:
    """A run as the manifest lists it (``dir`` is a plain string: 100,000 of these are cheap)."""

    id: str
    dirname: str
    values: dict[str, Any]
    dir: str

    @property
    def paths(self) -> RunPaths:
        return RunPaths(Path(self.dir))


class SweepStore:
    """One sweep directory: its manifest and its runs."""

    def __init__(self, root: Path | str) -> None:
        self.paths = SweepPaths(Path(root).resolve())
        self._manifest: dict[str, Any] | None = None
        self._manifest_stat: tuple[int, int, int] | None = None  # the file it was read from
        self._added_at: tuple[int | None, int] = (None, 0)  # sweep.added.jsonl: inode, bytes in
        self._ids: set[str] | None = None  # the manifest's run ids (made when first needed)
        self._manifest_of_ids: dict[str, Any] | None = None  # ... of this manifest
        self._run_lines: dict[str, str] = {}  # run id -> its manifest line (a run never changes)
        self._refs: tuple[list[RunRef], Any] = ([], None)  # runs(), and its last entry
        # what killed ``add_runs`` left (unlisted run directories, half-built ones) is removed
        # by this process's first add: a later one's leftovers are never launched, and the
        # next process removes them
        self._tidied = False
        # what ``create`` recorded when this process froze the sweep: its first launch's code
        self.fresh_provenance: tuple[dict[str, Any], str] | None = None

    @property
    def root(self) -> Path:
        return self.paths.root

    def exists(self) -> bool:
        return self.paths.manifest.is_file()

    def refresh(self) -> dict[str, Any]:
        """The manifest as it is on disk now, read again only where it changed since this
        process last read or wrote it: all of it if ``sweep.json`` was rewritten (an atomic
        rewrite is a new file: another inode, size or time), the new lines alone if runs were
        appended to ``sweep.added.jsonl``, so that adding a trial to a large study does not
        parse every run again."""
        try:
            st = os.stat(self.paths.manifest)
        except OSError:
            self._manifest = None
            return self.manifest
        if self._manifest is None or self._manifest_stat != _identity(st):
            self._manifest = None
            return self.manifest
        inode, taken = self._added_at
        try:
            added = os.stat(self.paths.added)
        except FileNotFoundError:
            if taken:  # (gone without a rewrite of sweep.json: read it all again)
                self._manifest = None
            return self.manifest
        if (inode is not None and added.st_ino != inode) or added.st_size < taken:
            self._manifest = None
        elif added.st_size > taken:
            with open(self.paths.added, "rb") as f:
                f.seek(taken)
                chunk = f.read()
            ids = self._listed()
            manifest = dict(self._manifest)
            manifest["runs"] = list(manifest["runs"])
            self._take_added(manifest, chunk, added.st_ino, taken, ids)
            self._manifest = self._manifest_of_ids = manifest
        return self.manifest

    def _write(self, manifest: dict[str, Any]) -> None:
        """Rewrite ``sweep.json`` whole, taking in what ``sweep.added.jsonl`` held (a kill
        before that file is removed leaves lines whose runs are listed: they are skipped)."""
        write_bytes_atomic(self.paths.manifest, manifest_bytes(manifest, self._run_lines))
        try:
            os.unlink(self.paths.added)
        except FileNotFoundError:
            pass
        self._manifest, self._added_at, self._ids = manifest, (None, 0), None
        try:
            self._manifest_stat = _identity(os.stat(self.paths.manifest))
        except OSError:
            self._manifest_stat = None

    def _append(self, manifest: dict[str, Any], entries: list[dict[str, Any]],
                record: dict[str, Any] | None, ids: set[str]) -> None:
        """Add ``entries`` (and ``record``, an extension) to the manifest as one line appended
        to ``sweep.added.jsonl``, made durable; ``manifest`` (a copy of what ``refresh`` read,
        ``ids`` its run ids) becomes the manifest with them. Under the manifest lock."""
        lines = [_run_line(e, self._run_lines) for e in entries]
        text = '{"runs": [' + ", ".join(lines) + "]" + (
            f', "extension": {redact(json.dumps(record, default=str))}' if record else "") + "}\n"
        data = text.encode()
        fd = os.open(self.paths.added, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW,
                     0o644)
        try:
            st = os.fstat(fd)
            size = _complete(fd, st.st_size)
            if size != st.st_size:  # a line cut off (a full disk, a power loss): dropped
                os.ftruncate(fd, size)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
                os.fsync(fd)
            except OSError as exc:  # (a full disk: nothing half-written stays behind)
                os.ftruncate(fd, size)
                raise EnvironmentFault(describe_os_error(exc, self.paths.added),
                                       exc.errno) from exc
        finally:
            os.close(fd)
        if size == 0:
            fsync_dir(self.root)  # (a new file)
        self._take_added(manifest, data, st.st_ino, size, ids)
        self._manifest = self._manifest_of_ids = manifest

    def _take_added(self, manifest: dict[str, Any], chunk: bytes, inode: int | None,
                    start: int, ids: set[str]) -> None:
        """Take the complete lines of ``chunk`` (``sweep.added.jsonl`` from byte ``start``)
        into ``manifest`` (its runs list and ``ids``, its run ids, are extended in place); a
        last line without its end is left for later (being written, or cut off and dropped by
        the next append)."""
        end = chunk.rfind(b"\n") + 1
        for line in chunk[:end].splitlines():
            try:
                record = json.loads(line)
                entries = [e for e in record["runs"] if e["id"] not in ids]
            except (ValueError, TypeError, KeyError) as exc:
                raise CorruptStateError(self.paths.added, line, str(exc)) from None
            if not entries:  # (taken into sweep.json already by a rewrite)
                continue
            _list_more(manifest, entries, record.get("extension"))
            ids.update(e["id"] for e in entries)
        self._added_at = (inode, start + end)

    def _listed(self) -> set[str]:
        """The ids of the manifest's runs (kept while it is the same manifest)."""
        manifest = self.manifest
        if self._ids is None or manifest is not self._manifest_of_ids:
            self._ids = {r["id"] for r in manifest["runs"]}
            self._manifest_of_ids = manifest
        return self._ids

    @property
    def manifest(self) -> dict[str, Any]:
        if self._manifest is None:
            path = self.paths.manifest
            if not path.is_file():
                raise StateError(f"{self.root} is not a sweep directory: {path.name} is missing")
            added, inode = _read_added(self.paths.added)  # (first: a rewrite takes it in)
            self._manifest_stat = _identity(os.stat(path))
            raw = path.read_bytes()
            try:
                data = json.loads(raw)
                if data.get("version") != MANIFEST_VERSION:
                    raise ValueError(f"unsupported manifest version {data.get('version')!r}")
            except (ValueError, AttributeError) as exc:
                raise CorruptStateError(path, raw, str(exc)) from None
            if data.get("varying_rule") != VARYING_RULE:  # (written before absent counted)
                data["axes"], data["varying"] = axes_of(r["values"] for r in data["runs"])
            self._added_at, self._ids = (inode, 0), None
            if added:
                self._ids = {r["id"] for r in data["runs"]}
                self._take_added(data, added, inode, 0, self._ids)
            self._manifest = self._manifest_of_ids = data
        return self._manifest

    def runs(self, start: int = 0, stop: int | None = None) -> list[RunRef]:
        """The runs in manifest order (optionally a slice of them). The refs are kept while
        the manifest is the same (and extended when runs are added), so a process that asks
        again and again (a study's proposals) does not build one per run each time."""
        entries = self.manifest["runs"]
        refs, known = self._refs
        if not (refs and len(entries) >= len(refs) and entries[len(refs) - 1] is known):
            refs = []
        if len(refs) < len(entries):
            runs_dir = str(self.paths.runs)
            if start or stop is not None:  # a slice (a status worker's share): only its refs
                return [_ref(r, runs_dir) for r in entries[start:stop]]
            refs = [*refs, *(_ref(r, runs_dir) for r in entries[len(refs):])]
            self._refs = (refs, entries[-1])
        return refs[start:stop]

    def find(self, prefix: str) -> RunRef:
        matches = [r for r in self.runs() if r.id.startswith(prefix) or r.dirname == prefix]
        if len(matches) != 1:
            raise StateError(f"run '{prefix}' matches {len(matches)} runs of {self.root}")
        return matches[0]

    def live_runners(self) -> list[Any]:
        """The runner processes launching this sweep that are alive on this host (each launch
        records its host, pid and the process's start time, so a reused pid is not taken)."""
        import psutil

        host = socket.gethostname()
        live = []
        for launch in self.manifest.get("launches", []):
            if launch.get("host") != host:
                continue
            try:
                proc = psutil.Process(int(launch["pid"]))
                if abs(proc.create_time() - float(launch.get("create_time", 0))) < 1.0:
                    live.append(proc)
            except (psutil.Error, KeyError, ValueError, TypeError):
                continue
        return live

    def set_fingerprint(self, fingerprint: str) -> None:
        """Record the sweep's fingerprint anew (computed another way by an older version)."""
        fd = os.open(self.paths.manifest_lock, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            manifest = {**self.refresh(), "fingerprint": fingerprint}
            self._write(manifest)
        finally:
            os.close(fd)

    def update_execution(self, execution: dict[str, Any],
                         code: dict[str, Any] | None = None) -> None:
        """Record the execution settings of the latest launch (they may change on resume), and
        the code it launches with (``code``: provenance, see ``record_code``).

        Read, changed and rewritten under an exclusive lock, so that runners launching the
        same sweep at once each add their entry to ``launches`` (none is lost).
        """
        fd = os.open(self.paths.manifest_lock, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            manifest = dict(self.refresh())  # what is on disk now, not what we read before
            manifest["execution"] = without_one_shot(execution)
            manifest["launches"] = [*manifest.get("launches", []), {
                "time": time.time(), "argv": sys.argv[1:], "pid": os.getpid(),
                "host": socket.gethostname(), "create_time": process_create_time(os.getpid()),
                **({"code": code} if code else {})}]
            self._write(manifest)
        finally:
            os.close(fd)

    def add_runs(self, runs: list[RunSpec],
                 record: dict[str, Any] | None = None) -> list[RunRef]:
        """Freeze more runs into this sweep (a Hydra sweeper's next batch, a search's next
        trial); runs it already lists are left as they are. Returns the refs of ``runs``.

        Each new run directory is built complete under a hidden name and renamed into
        ``runs/``; the manifest then lists them in one line appended to ``sweep.added.jsonl``
        (or one atomic rewrite of ``sweep.json``), under the manifest lock (two processes adding
        at once both land). A kill before that leaves unlisted directories, which are never
        launched and are rebuilt by the next ``add_runs``. ``record``: added to the manifest's
        ``extensions`` with them (what ``extend`` added, and from which overrides).
        """
        fd = os.open(self.paths.manifest_lock, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            manifest = self.refresh()
            listed = self._listed()
            new = [r for r in dict((r.id, r) for r in runs).values() if r.id not in listed]
            if new:
                if not self._tidied:  # (once per process: each lists every run directory)
                    self._drop_unlisted({r["dir"] for r in manifest["runs"]})
                    _remove_abandoned(self.paths.runs / "*")
                    self._tidied = True
                try:
                    self._freeze_runs(new)
                except OSError as exc:
                    raise EnvironmentFault(describe_os_error(exc, self.root, "adding runs to"),
                                           exc.errno) from exc
                entries = [_entry(r) for r in new]
                extension = {**record, "added": len(new)} if record is not None else None
                manifest = {**manifest, "runs": list(manifest["runs"])}
                if self._added_at[1] <= (self._manifest_stat or (0, 0, 0))[1]:
                    self._append(manifest, entries, extension, listed)
                else:  # more appended than sweep.json holds: one rewrite takes them in
                    _list_more(manifest, entries, extension)
                    manifest["varying_rule"] = VARYING_RULE
                    self._write(manifest)
        finally:
            os.close(fd)
        # refs for these only, not one per run of the sweep; the new ones' entries at hand
        by_id = {e["id"]: e for e in manifest["runs"][len(manifest["runs"]) - len(new):]}
        wanted = {r.id for r in runs} - by_id.keys()  # (listed before: looked up)
        if wanted:
            by_id.update((e["id"], e) for e in manifest["runs"] if e["id"] in wanted)
        runs_dir = str(self.paths.runs)
        return [_ref(by_id[r.id], runs_dir) for r in runs]

    def _drop_unlisted(self, listed: set[str]) -> None:
        """Run directories a killed ``add_runs`` renamed into place but never listed: never
        launched (only listed runs are), so they hold only what freezing wrote; removed."""
        launched = {*FLAG_NAMES, "attempts", "stdout.log", "stderr.log", "metrics.jsonl"} - {
            FLAG_UNHATCHED}
        for name in os.listdir(self.paths.runs):
            if name.startswith(".") or name in listed:  # (names first: no path per run)
                continue
            path = self.paths.runs / name
            if not path.is_dir():
                continue
            names = set(os.listdir(path))
            if FLAG_UNHATCHED in names and not names & launched:
                shutil.rmtree(path, ignore_errors=True)

    def _freeze_runs(self, runs: list[RunSpec]) -> None:
        tag = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        built = []
        for run in runs:
            final = self.paths.run(run.dirname).root
            tmp = final.with_name(f".{final.name}.creating-{tag}")
            _write_run(RunPaths(tmp), run)
            built.append((tmp, final))
        if len(built) <= 8:  # a few runs (a study's next trial): their files, not the disk
            for tmp, _ in built:
                for name in os.listdir(tmp):
                    fd = os.open(tmp / name, os.O_RDONLY)
                    try:
                        os.fsync(fd)
                    finally:
                        os.close(fd)
                fsync_dir(tmp)
        else:
            _syncfs(self.paths.runs)
        for tmp, final in built:
            if final.exists():  # unlisted: left by a kill before the manifest listed it
                shutil.rmtree(final)
            os.rename(tmp, final)
        fsync_dir(self.paths.runs)

    def record_code(self, prov: dict[str, Any], diff: str) -> dict[str, Any]:
        """Keep this launch's code and environment (once per distinct version) under
        ``code/``; returns the short record a launch entry holds."""
        code = str(prov.get("code"))
        self.paths.code.mkdir(mode=0o700, exist_ok=True)
        if diff and not self.paths.code_diff(code).exists():
            write_text_atomic(self.paths.code_diff(code), diff, private=True)
        env = prov.get("environment") or {}
        env_id = hashlib.sha1(json.dumps(env, sort_keys=True).encode()).hexdigest()[:10]
        if env and not self.paths.environment(env_id).exists():
            write_json_atomic(self.paths.environment(env_id), env, private=True)
        git = prov.get("git") or {}
        return {"id": code, "commit": git.get("commit"), "dirty": git.get("dirty"),
                "environment": env_id, "python": prov.get("python"),
                "accelerator": prov.get("accelerator") or {}}

    @classmethod
    def create(cls, plan: Plan, output_dir: Path, config_name: str,
               config_dirs: list[str]) -> tuple[SweepStore, bool]:
        """Freeze ``plan`` into ``output_dir/plan.name``; (store, False) if it already existed."""
        final = output_dir.resolve() / check_component(plan.name, "runner.name")
        if final.is_symlink():  # (planted in a shared folder: never written through)
            raise StateError(f"{final} is a symbolic link: runner never writes a sweep through "
                             "one; remove it or choose another runner.name")
        store = cls(final)
        if store.exists():
            return store, False
        final.parent.mkdir(parents=True, exist_ok=True)
        _remove_abandoned(final)
        tmp = final.with_name(f".{final.name}.creating-{os.getpid()}-{uuid.uuid4().hex[:8]}")
        try:
            try:
                store.fresh_provenance = _write_sweep(tmp, plan, config_name, config_dirs)
                _syncfs(tmp)
            except OSError as exc:  # (an EnvironmentFault too: said of the sweep, not a file)
                raise EnvironmentFault(describe_os_error(exc, final, "freezing the sweep into"),
                                       exc.errno) from exc
            try:
                os.rename(tmp, final)
            except OSError:
                if not store.exists():
                    raise
                return store, False  # another runner created it first: share theirs
            fsync_dir(final.parent)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        return store, True


def create_here(plan: Plan, root: Path, config_name: str) -> tuple[SweepStore, bool]:
    """Freeze ``plan`` into the directory ``root``, which may exist already and hold other
    files (a Hydra sweep directory holds multirun.yaml and the jobs' own output folders);
    (store, False) if ``root`` already is a sweep.

    Everything is built in a hidden folder inside ``root`` and moved in, the manifest last: a
    sweep exists once its manifest does, and what a kill leaves before that is replaced by the
    next attempt. Creators of one ``root`` take turns (the manifest lock).
    """
    store = SweepStore(root)
    if store.exists():
        return store, False
    store.root.mkdir(parents=True, exist_ok=True)
    if os.stat(store.root).st_uid == os.geteuid():
        no_group_write(store.root)
    fd = os.open(store.paths.manifest_lock, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        if store.exists():
            return store, False
        _remove_abandoned(store.root / "*")
        tmp = store.root / f".runner.creating-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        try:
            try:
                store.fresh_provenance = _write_sweep(tmp, plan, config_name, [])
                _syncfs(tmp)
                for name in sorted(os.listdir(tmp), key=lambda n: n == store.paths.manifest.name):
                    target = store.root / name
                    if name != store.paths.manifest.name and os.path.lexists(target):
                        shutil.rmtree(target) if target.is_dir() else target.unlink()
                    os.rename(tmp / name, target)
                fsync_dir(store.root)
            except OSError as exc:
                raise EnvironmentFault(describe_os_error(exc, store.root, "freezing the sweep "
                                                         "into"), exc.errno) from exc
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    finally:
        os.close(fd)
    return store, True


def run_of_dir(run_dir: str | Path) -> tuple[SweepStore, RunRef]:
    """The sweep and the run that ``<sweep>/runs/<run>`` is; a clear error if it is none."""
    paths = RunPaths(Path(run_dir).resolve())
    if not paths.config.is_file():
        found = _run_by_id(Path(run_dir))
        if found is not None:
            return found
        raise StateError(f"{run_dir} is not a run directory (no config.yaml): give "
                         "<sweep>/runs/<run>, or <sweep> and a run id as `status` prints it")
    store = SweepStore(paths.root.parent.parent)
    ref = next((r for r in store.runs() if r.dirname == paths.root.name), None)
    if ref is None:
        raise StateError(f"{paths.root.name} is not a run of the sweep {store.root}")
    return store, ref


def _run_by_id(path: Path) -> tuple[SweepStore, RunRef] | None:
    """``<sweep>/runs/<id or a unique prefix>`` (or ``<sweep>/<id>``): that run."""
    prefix, parent = path.name, path.parent
    sweep = parent.parent if parent.name == "runs" else parent
    store = SweepStore(sweep)
    if not prefix or not store.exists():
        return None
    hits = [r for r in store.runs() if r.id.startswith(prefix) or r.dirname.startswith(prefix)]
    if len(hits) > 1:
        raise StateError(f"'{prefix}' is the start of {len(hits)} runs of {store.root} "
                         f"({', '.join(r.id for r in hits[:5])}): give more of the id")
    return (store, hits[0]) if hits else None


def _remove_abandoned(final: Path) -> None:
    """Delete half-built copies of this sweep left by a runner killed while freezing it."""
    import psutil

    name = final.name if final.name == "*" else glob.escape(final.name)
    for leftover in final.parent.glob(f".{name}.creating-*"):
        pid = leftover.name.rsplit(".creating-", 1)[1].split("-")[0]
        if pid.isdigit() and not psutil.pid_exists(int(pid)):
            shutil.rmtree(leftover, ignore_errors=True)


def _write_sweep(root: Path, plan: Plan, config_name: str,
                 config_dirs: list[str]) -> tuple[dict[str, Any], str]:
    """Write the sweep into ``root``; returns the provenance it recorded (and its diff)."""
    paths = SweepPaths(root)
    paths.runs.mkdir(parents=True)
    no_group_write(root, paths.runs)  # (the manifest names code: nobody else may write it)
    cwd = Path.cwd()
    code_files = (plan.origin or {}).get("code_files") or task_files(plan)
    prov, diff = provenance.collect(cwd, code_files)
    if diff:  # private: uncommitted code is the user's
        write_text_atomic(paths.git_diff, diff, durable=False, private=True)
    for run in plan.runs:
        _write_run(paths.run(run.dirname), run)
    for name, text in plan.files.items():
        write_new_text(root / check_component(name, "a sweep file"), text)
    manifest = {
        "version": MANIFEST_VERSION,
        "name": plan.name,
        "kind": plan.kind,
        "created": time.time(),
        "fingerprint": plan.fingerprint,
        "command": [os.path.basename(sys.argv[0]), *sys.argv[1:]],
        "overrides": plan.overrides,
        "config_name": config_name,
        "config_dirs": config_dirs,
        "cwd": str(cwd),
        "sys_path": [p for p in sys.path if p and os.path.isdir(p)][:5],
        "axes": plan.axes,
        "varying": plan.varying,
        "varying_rule": VARYING_RULE,
        "notes": plan.notes,
        "parent": plan.parent,
        "execution": without_one_shot(plan.execution),
        "provenance": prov,
        "runs": [_entry(r) for r in plan.runs],
        "code_files": code_files,
        **({"entry": plan.entry} if plan.entry else {}),
        **({"origin": plan.origin} if plan.origin else {}),
        **({"source": plan.source} if plan.source else {}),
        **({"run_hooks": plan.run_hooks} if plan.run_hooks else {}),
    }
    paths.manifest.write_bytes(manifest_bytes(manifest))
    for name in (paths.manifest.name, *plan.files):  # (they name code: whatever the umask)
        os.chmod(root / name, 0o644)
    return prov, diff


def task_files(plan: Plan) -> list[str]:
    """The source files of the plan's task functions (their digests name the code version)."""
    from runner.execution.tasks import source_files

    configs = [r.config for r in plan.runs] + ([plan.template] if plan.template else [])
    return source_files({str((c.get("task") or {}).get("fn")) for c in configs
                         if isinstance(c.get("task"), dict)})


def manifest_bytes(manifest: dict[str, Any], lines: dict[str, str] | None = None) -> bytes:
    """``sweep.json``: its settings indented, then one line per run (``lines``: run id -> its
    line, kept by the caller so that adding a trial to a large study encodes only the trial)."""
    head = {k: v for k, v in manifest.items() if k != "runs"}
    text = redact(json.dumps(head, indent=1, default=str))
    cache = {} if lines is None else lines
    encoded = [_run_line(entry, cache) for entry in manifest["runs"]]
    runs = "[\n  " + ",\n  ".join(encoded) + "\n ]" if encoded else "[]"
    return (text[:-1].rstrip() + (",\n" if head else "\n") + f' "runs": {runs}\n}}\n').encode()


def _ref(entry: dict[str, Any], runs_dir: str) -> RunRef:
    """A manifest line's run (``runs_dir``: the sweep's runs/ folder as text)."""
    return RunRef(entry["id"], entry["dir"], entry["values"], f"{runs_dir}/{entry['dir']}")


def _run_line(entry: dict[str, Any], cache: dict[str, str]) -> str:
    """A run's line of the manifest, encoded once (``cache``: run id -> its line)."""
    line = cache.get(entry["id"])
    if line is None:
        line = cache[entry["id"]] = redact(json.dumps(entry, default=str))
    return line


def _list_more(manifest: dict[str, Any], entries: list[dict[str, Any]],
               extension: dict[str, Any] | None) -> None:
    """``manifest`` (changed in place) with ``entries`` listed after its runs, its axes and
    what varies counted with them, and ``extension`` (what ``extend`` added) recorded."""
    runs = manifest["runs"]
    manifest["axes"], manifest["varying"] = axes_after(
        manifest["axes"], manifest["varying"], runs[0]["values"] if runs else None,
        (e["values"] for e in entries))
    runs.extend(entries)
    if extension:
        manifest["extensions"] = [*manifest.get("extensions", []), extension]


def _identity(st: os.stat_result) -> tuple[int, int, int]:
    return (st.st_ino, st.st_size, st.st_mtime_ns)


def _read_added(path: Path) -> tuple[bytes, int | None]:
    """``sweep.added.jsonl``'s bytes and inode (none: b"", None)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        return b"", None
    try:
        inode = os.fstat(fd).st_ino
        with os.fdopen(os.dup(fd), "rb") as f:
            return f.read(), inode
    finally:
        os.close(fd)


def _complete(fd: int, size: int) -> int:
    """The length of the complete lines of the file open at ``fd`` (``size`` bytes long): up
    to and with its last newline."""
    pos = size
    while pos > 0:
        start = max(0, pos - 4096)
        chunk = os.pread(fd, pos - start, start)
        cut = chunk.rfind(b"\n")
        if cut >= 0:
            return start + cut + 1
        pos = start
    return 0


def _entry(run: RunSpec) -> dict[str, Any]:
    """A run's line in the manifest."""
    entry: dict[str, Any] = {"id": run.id, "dir": run.dirname, "values": run.values}
    if run.index is not None:
        entry["index"] = run.index
    return entry


def _write_run(paths: RunPaths, run: RunSpec) -> None:
    """A run's folder and files, writable by this user only whatever the umask (its config
    names the code its run executes; in a lab's shared folder a group member could edit it)."""
    paths.root.mkdir(mode=0o755)
    write_new_text(paths.config, dump_yaml(run.config))
    for name, text in run.files.items():
        write_new_text(paths.root / check_component(name, "a run file"), text)
    write_new_text(paths.values, json.dumps(run.values, default=str) + "\n")
    create_unhatched(paths, durable=False)  # the whole tree is flushed once, then renamed
