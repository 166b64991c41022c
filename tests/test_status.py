"""status: the forked JSON path equals the plain one, corrupt runs are rows, the cache is safe."""

from __future__ import annotations

import json
import os
import shutil
import stat
import sys
import time
from pathlib import Path

import pytest

from runner.planning.run_id import run_dirname, run_id
from runner.planning.sweep import Plan, RunSpec
from runner.results import status as status_module
from runner.results.status import json_text, scan, to_json
from runner.storage.state import State, claim, finish
from runner.storage.store import SweepStore

ANY = frozenset({State.UNHATCHED})


def make_sweep(tmp_path: Path, n: int) -> SweepStore:
    runs = [RunSpec(run_id({"x": i}), run_dirname({"x": i}), {"x": i}, {"x": i})
            for i in range(n)]
    store, created = SweepStore.create(Plan("s", "grid", runs, ["x"], ["x"], {}, [], "f"),
                                       tmp_path, "config", [])
    assert created
    for i, ref in enumerate(store.runs()):
        if i % 3 == 0:
            lease = claim(ref.paths, ANY)
            finish(ref.paths, lease.token, State.COMPLETED, {"summary": {"acc": i / n}} if i % 2
                   else {"summary": {"acc": i / n, "note": "a\ttab\nand lines\r ü \u2028 \"x\""}})
        elif i % 3 == 1 and i % 5 == 0:
            lease = claim(ref.paths, ANY)
            finish(ref.paths, lease.token, State.CRASHED, {"reason": f"boom {i}"}, "trace")
    return store


def _without_durations(doc: dict) -> dict:
    return {**doc, "runs": [{k: v for k, v in row.items() if k != "duration_s"}
                            for row in doc["runs"]]}


def test_forked_json_equals_the_plain_scan(tmp_path, quick_settle):
    store = make_sweep(tmp_path, 300)
    time.sleep(0.1)
    json_text(store)  # cache the finished runs, then tear one of them in place
    bad = store.runs()[6]
    (Path(bad.dir) / "COMPLETED").write_text("{torn")
    plain = json.loads(json.dumps(to_json(store, scan(store)), default=str))
    forked = json.loads(json_text(SweepStore(store.root), workers=3))
    assert _without_durations(forked) == _without_durations(plain)
    assert forked["counts"]["COMPLETED"] == 99 and forked["counts"]["CORRUPT"] == 1
    row = forked["runs"][6]
    assert row["state"] == "CORRUPT" and "COMPLETED" in row["reason"]
    assert forked["runs"][10]["reason"] == "boom 10"
    assert forked["runs"][3]["summary"] == {"acc": 0.01}


@pytest.fixture
def quick_settle(monkeypatch):
    """Cache run directories untouched for 50 ms (well above file-time granularity)."""
    monkeypatch.setattr("runner.results.status.SETTLED_NS", 50_000_000)


def test_recently_changed_runs_are_not_cached_yet(tmp_path):
    store = make_sweep(tmp_path, 6)
    json_text(store)
    assert not store.paths.status_cache.exists()  # everything changed within 2 s


def cached(store: SweepStore) -> dict[str, list]:
    """Every entry of the sweep's FLAG cache files."""
    entries: dict[str, list] = {}
    for block in sorted(store.paths.status_cache.glob("*.tsv")):
        entries.update(status_module._read_block(block, str(store.root)))
    return entries


def test_cache_learns_from_every_worker_and_never_goes_stale(tmp_path, quick_settle,
                                                             monkeypatch):
    monkeypatch.setattr("runner.results.status.CACHE_SHARD", 8)
    store = make_sweep(tmp_path, 60)
    time.sleep(0.1)
    plain = json.loads(json.dumps(to_json(store, scan(SweepStore(store.root))), default=str))
    shutil.rmtree(store.paths.status_cache)
    first = json.loads(json_text(store, workers=3))
    assert _without_durations(first) == _without_durations(plain)
    entries = cached(store)  # every run, each worker's blocks (8 files of 8 runs at most)
    assert len(entries) == 60 and len(list(store.paths.status_cache.iterdir())) == 8
    assert {e[0] for e in entries.values()} == {"UNHATCHED", "COMPLETED", "CRASH.txt"}
    again = json.loads(json_text(SweepStore(store.root), workers=2))  # rows from the cache
    assert _without_durations(again) == _without_durations(plain)
    from_cache = scan(SweepStore(store.root))  # FLAGs' data from the cache (its tab-separated
    assert [(r.state, r.record and r.record.data) for r in from_cache] == [  # lines)
        (r.state, r.record and r.record.data) for r in map(status_module.read_run, store.runs())]
    assert from_cache[0].summary["note"] == "a\ttab\nand lines\r ü \u2028 \"x\""
    ref = store.runs()[0]
    again = claim(ref.paths, frozenset({State.COMPLETED}))  # e.g. runner.debug re-runs it
    finish(ref.paths, again.token, State.COMPLETED, {"summary": {"acc": 9.0}})
    doc = json.loads(json_text(SweepStore(store.root), workers=2))
    assert doc["runs"][0]["summary"] == {"acc": 9.0} and doc["runs"][0]["attempt"] == 2
    # an edit in place (same inode, same directory) is noticed too
    crashed = store.runs()[10]
    flag = Path(crashed.dir) / "CRASH.txt"
    flag.write_text(flag.read_text().replace("boom 10", "bang 10!"))
    doc = json.loads(json_text(SweepStore(store.root), workers=2))
    assert doc["runs"][10]["reason"] == "bang 10!"
    # a run not started when cached, claimed since: its new FLAG, not the cached row
    fresh = store.runs()[59]
    assert entries[fresh.id][0] == "UNHATCHED"
    lease = claim(fresh.paths, ANY)
    assert lease is not None
    doc = json.loads(json_text(SweepStore(store.root), workers=2))
    assert doc["runs"][59]["state"] == "RUNNING"
    # the states alone (the list of sweeps, ls): from the cache where it is current, the same
    states = [r.state for r in scan(SweepStore(store.root), details=False)]
    assert states == [row["state"] for row in doc["runs"]]
    # only the block that changed is written again
    time.sleep(0.1)
    json_text(SweepStore(store.root), workers=2)  # (caches what changed above, now settled)
    stamps = {p.name: p.stat().st_mtime_ns for p in store.paths.status_cache.iterdir()}
    finish(fresh.paths, lease.token, State.COMPLETED, {"summary": {}})
    time.sleep(0.1)
    json_text(SweepStore(store.root), workers=2)
    changed = [p.name for p in store.paths.status_cache.iterdir()
               if p.stat().st_mtime_ns != stamps[p.name]]
    assert changed == ["7.tsv"], changed  # (run 59 of 60: the eighth block)


def test_a_moved_sweep_shows_its_new_directories_not_the_cached_ones(tmp_path, quick_settle):
    """The cache keeps each settled run's row as text, directory included: a sweep moved
    elsewhere (mv keeps every mtime, so each entry still looks current) must not show the
    old paths."""
    store = make_sweep(tmp_path / "a", 9)
    time.sleep(0.1)
    json_text(store)
    assert len(cached(store)) == 9
    moved = tmp_path / "b"
    store.root.parent.rename(moved)
    doc = json.loads(json_text(SweepStore(moved / store.root.name)))
    assert all(row["dir"].startswith(str(moved)) for row in doc["runs"]), doc["runs"][0]["dir"]
    assert doc["counts"]["COMPLETED"] == 3


def test_status_reads_again_when_a_flag_moves_under_it(project, monkeypatch):
    """A live runner renames FLAGs while status lists them: never an error, always a state."""
    import threading

    from runner.results import status
    from runner.storage.state import State, claim, finish
    from runner.storage.store import SweepStore

    project.run("seed=range(3)", check=True)
    store = SweepStore(project.sweep_dir())
    ref = store.runs()[0]
    real = status._read_bytes
    calls = {"n": 0}

    def moved_once(path, dir_fd=None):  # the FLAG listed a moment ago is gone when opened
        calls["n"] += 1
        if calls["n"] == 1:
            raise FileNotFoundError(path)
        return real(path, dir_fd)

    monkeypatch.setattr(status, "_read_bytes", moved_once)
    assert status.read_run(ref).state == "COMPLETED" and calls["n"] == 2
    monkeypatch.setattr(status, "_read_bytes", real)

    stop = threading.Event()
    every = frozenset(State)

    def churn() -> None:  # claim and finish one run as fast as possible
        while not stop.is_set():
            lease = claim(ref.paths, every - {State.RUNNING})
            if lease is not None:
                finish(ref.paths, lease.token, State.INTERRUPTED, {"reason": "churn"})

    thread = threading.Thread(target=churn)
    thread.start()
    try:
        seen = {status.read_run(ref, True, None).state for _ in range(400)}
    finally:
        stop.set()
        thread.join()
    assert seen <= {"RUNNING", "INTERRUPTED", "COMPLETED"} and "CORRUPT" not in seen


def test_status_into_a_closed_pipe_ends_quietly(project, monkeypatch):
    """`status --json | head`: the reader goes away (BrokenPipeError, an OSError); runner says
    nothing and exits 0, never "error: ..." about the pipe."""
    import io

    from runner.cli.main import main

    class ClosedPipe(io.StringIO):
        def write(self, text: str) -> int:
            raise BrokenPipeError(32, "Broken pipe")

    class Stderr(io.StringIO):
        def close(self) -> None:  # (runner closes it; the test still reads what it got)
            self.closed_by_runner = True

    project.run("seed=range(3)", check=True)
    err = Stderr()
    monkeypatch.setattr(sys, "stdout", ClosedPipe())
    monkeypatch.setattr(sys, "stderr", err)
    assert main(["status", str(project.sweep_dir()), "--json"]) == 0
    assert err.getvalue() == ""


def test_small_things_a_newcomer_hit(project) -> None:
    """show takes an id or a prefix as status prints it; status sorts by a swept value without
    asking which way is better; report names a missing folder before asking for --mode;
    report.md ends with a newline."""
    project.run("seed=1,2,3", check=True)
    sweep = project.sweep_dir()
    ids = [r["id"] for r in project.status()["runs"]]
    for args in ([str(sweep), ids[1]], [str(sweep), ids[1][:5]], [str(sweep / "runs" / ids[1])]):
        shown = project.cli("show", *args)
        assert shown.returncode == 0 and shown.stdout.startswith(ids[1]), shown.stderr
    sorted_ = project.cli("status", str(sweep), "--sort", "seed", "--max")
    assert sorted_.returncode == 0 and "sorted by seed (descending)" in sorted_.stderr
    order = [word for line in sorted_.stdout.splitlines() for word in line.split()[:1]
             if word in ids]
    assert order == ids[::-1], sorted_.stdout
    missing = project.cli("report", str(project.root / "nope"), "--metric", "score")
    assert "nope is not a sweep directory" in missing.stderr, missing.stderr
    assert project.cli("report", str(sweep), "--metric", "loss").returncode == 0
    assert (sweep / "report" / "loss" / "report.md").read_text().endswith("\n")


def test_two_stores_adding_runs_in_turn_each_see_the_others_runs(tmp_path: Path) -> None:
    """A store keeps the manifest it read or wrote while the file is unchanged: another
    process's rewrite is seen (another file), every run lands once, and the manifest reads back
    as JSON with its axes counted over every run."""
    make_sweep(tmp_path, 3)
    a, b = SweepStore(tmp_path / "s"), SweepStore(tmp_path / "s")
    assert len(a.runs()) == len(b.runs()) == 3

    def spec(values: dict) -> RunSpec:
        return RunSpec(run_id(values), run_dirname(values), values, values)

    for i in range(3, 9):
        (a if i % 2 else b).add_runs([spec({"x": i, **({"y": 1} if i == 7 else {})})])
    a.add_runs([spec({"x": 8})])  # (listed by b: a sees it and adds nothing)
    for store in (a, SweepStore(tmp_path / "s")):
        assert [r.values.get("x") for r in store.runs()] == list(range(9))
        assert store.manifest["axes"] == ["x", "y"] and store.manifest["varying"] == ["x", "y"]
    b.update_execution({})  # a rewrite of sweep.json takes the added runs in
    assert not (tmp_path / "s" / "sweep.added.jsonl").exists()
    manifest = json.loads((tmp_path / "s" / "sweep.json").read_text())
    assert [r["values"]["x"] for r in manifest["runs"]] == list(range(9))
    assert manifest["axes"] == ["x", "y"] and manifest["varying"] == ["x", "y"]
    assert [r.values.get("x") for r in a.runs()] == list(range(9))


def test_added_runs_are_appended_as_lines_and_taken_into_sweep_json_by_a_rewrite(
        tmp_path: Path) -> None:
    """Adding runs (a study's trial, a Hydra sweeper's batch, extend) appends one line to
    sweep.added.jsonl instead of rewriting sweep.json, so it costs the runs added, not the
    sweep; another process's store takes in the new lines alone. Once the lines outgrow
    sweep.json, the next addition rewrites sweep.json with every run (the journal gone), as a
    launch's rewrite does. A line cut off (a full disk) is not read and is dropped by the next
    addition; lines a rewrite already took in (a kill before the journal was removed) are
    skipped, their extension too; a complete line that is not JSON is a corrupt manifest."""
    from runner.errors import CorruptStateError

    make_sweep(tmp_path, 40)
    root = tmp_path / "s"
    added = root / "sweep.added.jsonl"
    a, b = SweepStore(root), SweepStore(root)
    assert len(b.runs()) == 40

    def spec(i: int) -> RunSpec:
        return RunSpec(run_id({"x": i}), run_dirname({"x": i}), {"x": i}, {"x": i})

    inode = (root / "sweep.json").stat().st_ino
    a.add_runs([spec(40)])
    a.add_runs([spec(41), spec(42)], record={"overrides": ["x=41,42"]})
    assert (root / "sweep.json").stat().st_ino == inode  # not rewritten
    lines = added.read_text().splitlines()
    assert [[r["values"]["x"] for r in json.loads(ln)["runs"]] for ln in lines] == [[40],
                                                                                   [41, 42]]
    b.refresh()  # (b reads the new lines alone)
    assert [r.values["x"] for r in b.runs()] == list(range(43))
    assert b.manifest["extensions"] == [{"overrides": ["x=41,42"], "added": 2}]
    with open(added, "ab") as f:  # a line cut off
        f.write(b'{"runs": [{"id": "cut"')
    assert [r.values["x"] for r in SweepStore(root).runs()] == list(range(43))
    a.add_runs([spec(43)])
    assert [json.loads(ln)["runs"][0]["values"]["x"] for ln in added.read_text().splitlines()
            ] == [40, 41, 43]
    journal = added.read_bytes()
    a.update_execution({})  # a launch rewrites sweep.json: every run in it, no journal
    assert not added.exists()
    assert [r["values"]["x"] for r in json.loads((root / "sweep.json").read_text())["runs"]
            ] == list(range(44))
    added.write_bytes(journal)  # (as if killed before the journal was removed)
    again = SweepStore(root)
    assert [r.values["x"] for r in again.runs()] == list(range(44))
    assert again.manifest["extensions"] == [{"overrides": ["x=41,42"], "added": 2}]
    size = (root / "sweep.json").stat().st_size
    i = 44
    while added.exists():  # the lines outgrow sweep.json: a rewrite takes them in
        again.add_runs([spec(i)])
        i += 1
    assert (root / "sweep.json").stat().st_size > size
    assert [r.values["x"] for r in SweepStore(root).runs()] == list(range(i))
    b.refresh()
    assert [r.values["x"] for r in b.runs()] == list(range(i))
    added.write_text('{"runs": [}\n')
    with pytest.raises(CorruptStateError, match="sweep.added.jsonl"):
        SweepStore(root).runs()


def test_an_addition_that_finds_the_disk_full_leaves_the_manifest_as_it_was(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A full disk part-way through the appended line: one clear error naming the file, the
    part written is taken back, and the manifest lists what it listed before."""
    import errno
    import types

    from runner.errors import EnvironmentFault
    from runner.storage import store as stores

    make_sweep(tmp_path, 3)
    root = tmp_path / "s"
    store = SweepStore(root)

    def spec(i: int) -> RunSpec:
        return RunSpec(run_id({"x": i}), run_dirname({"x": i}), {"x": i}, {"x": i})

    store.add_runs([spec(3)])
    before = (root / "sweep.added.jsonl").read_bytes()

    def write(fd: int, data: bytes) -> int:
        if os.readlink(f"/proc/self/fd/{fd}").endswith("sweep.added.jsonl"):
            os.write(fd, bytes(data[:7]))
            raise OSError(errno.ENOSPC, "No space left on device")
        return os.write(fd, data)

    monkeypatch.setattr(stores, "os", types.SimpleNamespace(
        **{**{k: getattr(os, k) for k in dir(os) if not k.startswith("__")}, "write": write}))
    with pytest.raises(EnvironmentFault, match="sweep.added.jsonl"):
        store.add_runs([spec(4)])
    monkeypatch.undo()
    assert (root / "sweep.added.jsonl").read_bytes() == before
    assert [r.values["x"] for r in SweepStore(root).runs()] == [0, 1, 2, 3]
    assert [r.values["x"] for r in store.add_runs([spec(4)])] == [4]  # (goes on when it can)
    assert [r.values["x"] for r in SweepStore(root).runs()] == [0, 1, 2, 3, 4]


def test_a_live_scan_reads_ended_runs_once_and_again_once_one_is_claimed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A study's proposals look at the runs again and again: an ended run is read once, a run
    still to end at every look, and an ended run claimed again (a retry, a re-run) is seen at
    the next look, even one taken in the middle of that claim."""
    from runner.results import status
    from runner.results.status import LiveScan
    from runner.storage import state

    store = make_sweep(tmp_path, 30)
    live = LiveScan(store)
    states = [(r.ref.id, r.state, r.summary) for r in scan(store)]
    assert [(r.ref.id, r.state, r.summary) for r in live.rows()] == states
    read: list[str] = []
    real_read = status.read_run
    monkeypatch.setattr(status, "read_run", lambda ref, *a: read.append(ref.id) or real_read(
        ref, *a))
    assert [(r.ref.id, r.state, r.summary) for r in live.rows()] == states
    assert len(read) == sum(s == "UNHATCHED" for _, s, _ in states) == 18

    done = store.runs()[0]  # COMPLETED: claimed again (runner.debug, a re-run)
    lease = claim(done.paths, frozenset({State.COMPLETED}))
    assert live.rows()[0].state == "RUNNING"
    finish(done.paths, lease.token, State.COMPLETED, {"summary": {"acc": 9.0}})
    assert live.rows()[0].summary == {"acc": 9.0}

    other = store.runs()[3]  # a look between the claim's first token and its RUNNING FLAG
    during: list[str] = []
    real_write = state.write_json_atomic

    def write(path: Path, obj: object, **kw: object) -> None:
        if Path(path).name == "RUNNING" and Path(path).parent == Path(other.dir):
            during.append(live.rows()[3].state)
        real_write(path, obj, **kw)

    monkeypatch.setattr(state, "write_json_atomic", write)
    assert claim(other.paths, frozenset({State.COMPLETED})) is not None
    assert during == ["COMPLETED"]  # (the old FLAG, read after the first token)
    assert live.rows()[3].state == "RUNNING"


def test_a_live_scan_walks_the_open_and_new_runs_and_says_what_it_read_afresh(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A study's looks: each reads and walks only the runs not ended and the ones this process
    added, and ``changes()`` gives what the looks read afresh since it was last asked (a run's
    latest row), so the sampler is brought forward from those alone; the first time, and after
    an ended run is claimed again, it says None: take every row."""
    from runner.results import status
    from runner.results.status import LiveScan

    store = make_sweep(tmp_path, 12)  # 0, 3, 6, 9 COMPLETED, 10 CRASHED, 7 UNHATCHED

    def states(rows: list) -> list:
        return [(r.ref.id, r.state) for r in rows]

    live = LiveScan(store)
    assert states(live.rows()) == states(scan(store))
    assert live.changes() is None
    opened = [r.ref.id for r in scan(store) if r.state == "UNHATCHED"]
    assert len(opened) == 7
    live.rows()
    assert sorted(r.ref.id for r in live.changes()) == sorted(opened)
    one = store.runs()[1]
    lease = claim(one.paths, ANY)
    finish(one.paths, lease.token, State.COMPLETED, {"summary": {"acc": 0.5}})
    live.rows()
    live.rows()
    changed = {r.ref.id: r.state for r in live.changes()}
    assert changed[one.id] == "COMPLETED" and sorted(changed) == sorted(opened)
    live.rows()
    assert one.id not in {r.ref.id for r in live.changes()}  # ended: read once
    read: list[str] = []
    real_read = status.read_run
    monkeypatch.setattr(status, "read_run", lambda ref, *a: read.append(ref.id) or real_read(
        ref, *a))
    walked = 0
    real_get = dict.get

    class Counting(dict):  # the ended runs' cache: looked up for every run a look walks
        def get(self, key, default=None):  # noqa: ANN001, ANN201
            nonlocal walked
            walked += 1
            return real_get(self, key, default)

    live.ended = Counting(live.ended)
    new = [RunSpec(run_id({"x": i}), run_dirname({"x": i}), {"x": i}, {"x": i})
           for i in (12, 13)]
    store.add_runs(new)
    rows, looked, seen = live.rows(), list(read), walked
    assert states(rows) == states(scan(store))
    assert sorted(looked) == sorted([*opened[1:], *(r.id for r in new)])  # 6 open, 2 new
    assert seen == 0  # (the ended runs were not walked)
    assert sorted(r.ref.id for r in live.changes()) == sorted(looked)
    again = store.runs()[0]  # COMPLETED, claimed again (a re-run)
    assert claim(again.paths, frozenset({State.COMPLETED})) is not None
    assert live.rows()[0].state == "RUNNING"
    assert live.changes() is None


def test_a_scan_keeps_a_callers_freeze_of_the_collector(tmp_path):
    """A study freezes what it holds out of the collector's sight; a scan in that process
    (which freezes the manifest while it reads) leaves it frozen, and leaves nothing frozen
    where nothing was."""
    import gc

    store = make_sweep(tmp_path, 6)
    held = [[i] for i in range(100)]
    gc.freeze()
    try:
        frozen = gc.get_freeze_count()
        scan(store)
        assert gc.get_freeze_count() >= frozen and held
    finally:
        gc.unfreeze()
    scan(store)
    assert gc.get_freeze_count() == 0


def test_a_row_of_a_run_not_started_is_the_row_json_would_encode() -> None:
    """``status --json`` puts the rows of runs not started together directly: the same text
    as encoding ``row_json``, whatever the values hold."""
    from runner.storage.store import RunRef

    for values in ({"x": 1}, {"lr": 0.1, "name": 'quo"te\\ \t\n ü \u2028', "l": [1, None]},
                   {"model": {"depth": 3, "act": "relu"}, "flag": True}, {}):
        ref = RunRef("a\"b", "x=1-ab", values, "/tmp/sw eep/runs/x=ü-ab")
        row = status_module.RunStatus(ref, "UNHATCHED", None)
        assert status_module._unhatched_row(ref) == status_module._ROWS.encode(
            status_module.row_json(row, time.time()))


def test_a_cache_another_user_could_write_is_not_believed(tmp_path, quick_settle) -> None:
    """Another user of a shared folder who writes the FLAG cache (a forged summary, a planted
    link) changes nothing ``status`` shows, and nothing is written through a link; a cache
    folder of ours that others could write is made unwritable to them first."""
    store = make_sweep(tmp_path, 6)
    time.sleep(0.1)
    truth = json.loads(json_text(store))
    block = store.paths.status_cache / "0.tsv"
    forged = block.read_text().replace('"acc": 0.0', '"acc": 99.0')
    assert forged != block.read_text()
    block.write_text(forged)
    os.chown(block, 12345, 12345)  # written by another user
    doc = json.loads(json_text(SweepStore(store.root)))
    assert doc["runs"][0]["summary"]["acc"] == 0.0 == truth["runs"][0]["summary"]["acc"]
    assert [r.record and r.record.data for r in scan(SweepStore(store.root))][0]["summary"][
        "acc"] == 0.0
    shutil.rmtree(store.paths.status_cache)
    store.paths.status_cache.mkdir(mode=0o777)
    os.chmod(store.paths.status_cache, 0o777)
    json_text(SweepStore(store.root))
    assert stat.S_IMODE(store.paths.status_cache.stat().st_mode) & 0o022 == 0
    assert (store.paths.status_cache / "0.tsv").is_file()
    shutil.rmtree(store.paths.status_cache)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    store.paths.status_cache.symlink_to(elsewhere)
    assert json.loads(json_text(SweepStore(store.root)))["runs"] == truth["runs"]
    assert list(elsewhere.iterdir()) == []
