"""FLAG-file state machine: transitions, kills between steps, corrupt files, exclusive claims."""

from __future__ import annotations

import json
import multiprocessing
import os
from pathlib import Path

import pytest

from runner.errors import CorruptStateError
from runner.storage.atomic import write_json_atomic
from runner.storage.metrics import MetricsWriter, last_metrics, read_metrics
from runner.storage.paths import RunPaths
from runner.storage.state import (
    State,
    StateWatch,
    claim,
    create_unhatched,
    finish,
    read_state,
    update_lease,
    write_terminal,
)

ANY = frozenset({State.UNHATCHED, State.INTERRUPTED, State.CRASHED})


@pytest.fixture
def run(tmp_path: Path) -> RunPaths:
    paths = RunPaths(tmp_path / "run")
    paths.root.mkdir()
    create_unhatched(paths)
    return paths


def files(paths: RunPaths) -> set[str]:
    return {p.name for p in paths.root.iterdir() if p.name != ".lock"}


def test_full_lifecycle_keeps_history(run):
    assert read_state(run).state is State.UNHATCHED
    lease = claim(run, ANY)
    assert lease is not None and lease.attempt == 1 and lease.pid == os.getpid()
    assert files(run) == {"RUNNING", "attempts"}
    assert update_lease(run, lease.token, heartbeat=123.0).heartbeat == 123.0
    assert finish(run, lease.token, State.INTERRUPTED, {"reason": "SIGTERM"})
    rec = read_state(run)
    assert (rec.state, rec.attempt, rec.data["reason"]) == (State.INTERRUPTED, 1, "SIGTERM")
    second = claim(run, ANY)
    assert second.attempt == 2
    assert finish(run, second.token, State.COMPLETED, {"summary": {"acc": 0.9}})
    assert read_state(run).data["summary"] == {"acc": 0.9}
    assert sorted(p.name for p in run.attempts.iterdir()) == ["0.UNHATCHED", "1.INTERRUPTED"]
    assert not any(p.name.startswith(".") and "tmp" in p.name for p in run.root.iterdir())


def test_claim_refuses_other_states_and_stale_tokens(run):
    lease = claim(run, ANY)
    assert claim(run, ANY) is None  # already RUNNING
    assert not finish(run, "not-the-token", State.COMPLETED, {})
    assert update_lease(run, "not-the-token", heartbeat=1.0) is None
    assert finish(run, lease.token, State.COMPLETED, {})
    assert claim(run, ANY) is None  # COMPLETED is final
    assert not finish(run, lease.token, State.CRASHED, {})  # a late writer cannot undo it


def test_crash_report_is_readable_text_with_header(run):
    lease = claim(run, ANY)
    finish(run, lease.token, State.CRASHED, {"reason": "ValueError: x\ny", "exit_status": 1},
           "Traceback (most recent call last):\n  boom")
    text = run.flag("CRASH.txt").read_text()
    assert text.startswith("attempt: 1\n") and "reason: ValueError: x y" in text
    rec = read_state(run)
    assert rec.data["exit_status"] == "1" and "boom" in rec.data["details"]


@pytest.mark.parametrize("leftover, expected", [
    # killed after writing the new FLAG but before archiving the old one
    (("UNHATCHED", 0, "RUNNING", 1), State.RUNNING),
    (("RUNNING", 1, "COMPLETED", 1), State.COMPLETED),
    (("RUNNING", 1, "CRASH.txt", 1), State.CRASHED),
    (("INTERRUPTED", 1, "RUNNING", 2), State.RUNNING),
    (("CRASH.txt", 1, "RUNNING", 2), State.RUNNING),
])
def test_two_flags_after_a_kill_resolve_to_the_newer_state(run, leftover, expected):
    old, old_attempt, new, new_attempt = leftover
    run.flag("UNHATCHED").unlink()
    for name, attempt in ((old, old_attempt), (new, new_attempt)):
        state = {"UNHATCHED": State.UNHATCHED, "RUNNING": State.RUNNING,
                 "COMPLETED": State.COMPLETED, "CRASH.txt": State.CRASHED,
                 "INTERRUPTED": State.INTERRUPTED}[name]
        if state is State.RUNNING:
            from dataclasses import asdict

            from runner.storage.state import Lease
            lease = asdict(Lease.new(attempt))
            write_json_atomic(run.flag("RUNNING"), lease)
        elif state is State.UNHATCHED:
            create_unhatched(run)
        else:
            write_terminal(run, state, attempt, {"reason": "x"})
    assert read_state(run).state is expected
    if expected is State.RUNNING:
        token = json.loads(run.flag("RUNNING").read_text())["token"]
        assert finish(run, token, State.COMPLETED, {})  # the next transition tidies up
        assert {n for n in files(run) if n != "attempts"} == {"COMPLETED"}


@pytest.mark.parametrize("name, content", [
    ("COMPLETED", b'{"attempt": 1, "summ'),         # torn JSON
    ("RUNNING", b'{"attempt": 1}'),                  # lease without its fields
    ("CRASH.txt", b"Traceback only, no header"),     # not our format
    ("COMPLETED", b"\xff\xfe\x00garbage"),          # not text
    ("INTERRUPTED", b"[1, 2]"),                      # not an object
])
def test_corrupt_flag_is_a_named_error_and_is_left_untouched(run, name, content):
    run.flag("UNHATCHED").unlink()
    run.flag(name).write_bytes(content)
    with pytest.raises(CorruptStateError) as err:
        read_state(run)
    assert err.value.path == run.flag(name) and name in str(err.value)
    with pytest.raises(CorruptStateError):
        claim(run, ANY)
    assert run.flag(name).read_bytes() == content


def test_missing_flag_is_corrupt(run):
    run.flag("UNHATCHED").unlink()
    with pytest.raises(CorruptStateError, match="no FLAG file"):
        read_state(run)


def _try_claim(root: str) -> bool:
    return claim(RunPaths(Path(root)), ANY) is not None


def test_concurrent_claims_have_exactly_one_winner(tmp_path):
    roots = []
    for i in range(20):
        paths = RunPaths(tmp_path / f"r{i}")
        paths.root.mkdir()
        create_unhatched(paths)
        roots.append(str(paths.root))
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        results = pool.map(_try_claim, roots * 4)  # every run claimed by four processes
    wins = {root: 0 for root in roots}
    for root, won in zip(roots * 4, results, strict=True):
        wins[root] += won
    assert set(wins.values()) == {1}


def _record_launches(root: str) -> None:
    from runner.storage.store import SweepStore

    for i in range(10):
        SweepStore(root).update_execution({"runner": {"name": str(i)}, "launcher": {}})


def test_concurrent_launches_each_keep_their_entry_in_the_manifest(tmp_path):
    from runner.storage.store import MANIFEST_VERSION

    (tmp_path / "sweep.json").write_text(json.dumps(
        {"version": MANIFEST_VERSION, "name": "s", "runs": [], "execution": {}}))
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        pool.map(_record_launches, [str(tmp_path)] * 4)
    manifest = json.loads((tmp_path / "sweep.json").read_text())
    assert len(manifest["launches"]) == 40  # read-modify-write under a lock: none lost
    assert len({launch["pid"] for launch in manifest["launches"]}) == 4


def test_metrics_are_appended_every_step_and_csv_grows_columns(run):
    lease = claim(run, ANY)
    writer = MetricsWriter(run, lease.attempt)
    writer.log({"loss": 1.0})
    writer.log({"loss": 0.5}, step=5)
    writer.log({"val": {"acc": 0.75}})  # nested -> val/acc, a new CSV column
    writer.close()
    records = list(read_metrics(run.metrics))
    assert [r["step"] for r in records] == [0, 5, 6]
    assert records[2]["val/acc"] == 0.75
    lines = run.progress.read_text().splitlines()
    assert lines[0] == "step,time,attempt,loss,val/acc"
    assert [line.split(",")[0] for line in lines[1:]] == ["0", "5", "6"]
    assert lines[1].endswith(",1.0,") and lines[3].endswith(",,0.75")


def test_torn_metrics_tail_is_skipped_but_a_bad_middle_line_is_an_error(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 0, "loss": 1}\n{"step": 1, "lo')
    assert [r["step"] for r in read_metrics(path)] == [0]
    assert last_metrics(path) == {"step": 0, "loss": 1}
    path.write_text('{"step": 0}\nnot json\n{"step": 2}\n')
    with pytest.raises(ValueError, match="metrics.jsonl:2"):
        list(read_metrics(path))


def test_a_whole_metrics_file_reads_as_it_does_line_by_line(tmp_path):
    """(A complete file is parsed in one go: the same records as line by line, blank lines
    skipped, NaN kept.)"""
    import math

    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 0, "loss": NaN}\n\n{"step": 1, "val": {"acc": 0.5}}\n')
    records = list(read_metrics(path))
    assert [r["step"] for r in records] == [0, 1] and math.isnan(records[0]["loss"])
    assert records[1]["val"] == {"acc": 0.5}
    path.write_text('{"step": 0}\n{"step": 1}\n')
    assert [r["step"] for r in read_metrics(path)] == [0, 1]


def test_leases_of_other_hosts_die_by_heartbeat_age():
    from dataclasses import replace

    from runner.storage.recovery import death_reason
    from runner.storage.state import Lease

    lease = replace(Lease.new(1), host="node-7", pid=1, heartbeat=1000.0)
    assert death_reason(lease, stale_after_s=120, now=1100.0) is None  # pid 1 is not ours to ask
    reason = death_reason(lease, stale_after_s=120, now=1200.0)
    assert reason == "no heartbeat from node-7 for 200s (runner.stale_after_s=120)"
    mine = Lease.new(1)  # this process: alive on this host whatever the heartbeat says
    assert death_reason(replace(mine, heartbeat=0.0), stale_after_s=1) is None
    assert "is gone" in death_reason(replace(mine, create_time=mine.create_time - 50), 1)


def test_a_flag_replaced_between_listing_and_reading_is_read_again(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """read_state takes no lock: a worker finishing on a node replaces RUNNING by COMPLETED
    between the reader's listing and its reading. The reader looks again; before, the
    FileNotFoundError ended the SLURM sweep loop that was watching (seen at 200 runs)."""
    from runner.storage import state as state_module

    paths = RunPaths(tmp_path / "run")
    paths.root.mkdir()
    create_unhatched(paths)
    lease = claim(paths, frozenset({State.UNHATCHED}))
    assert lease is not None
    listed = state_module.flag_names(paths.root)  # the listing: RUNNING
    assert finish(paths, lease.token, State.COMPLETED, {"summary": {}})  # then it ends
    stale = [listed]
    real = state_module.flag_names
    monkeypatch.setattr(state_module, "flag_names",
                        lambda root: stale.pop() if stale else real(root))
    assert read_state(paths).state is State.COMPLETED


def test_a_watched_run_is_read_again_only_when_its_directory_changed(
        run: RunPaths, monkeypatch: pytest.MonkeyPatch) -> None:
    """A SLURM sweep's launcher looks at thousands of queued runs every few seconds:
    ``StateWatch`` reads a FLAG again only when the run directory changed since a settled read
    (a lease update, a claim, an end), and never keeps a read of a directory changed in the
    last seconds (a change within the same tick would keep its mtime)."""
    from runner.storage import state as state_module

    reads: list[Path] = []
    real = state_module.read_state
    monkeypatch.setattr(state_module, "read_state",
                        lambda paths: reads.append(paths.root) or real(paths))
    lease = claim(run, ANY)
    assert lease is not None
    watch = StateWatch(run)
    assert watch.read().state is State.RUNNING
    assert watch.read().state is State.RUNNING
    assert len(reads) == 2  # just changed: not kept

    def settle() -> None:
        old = os.stat(run.root).st_mtime - 10
        os.utime(run.root, (old, old))

    settle()
    first = watch.read()
    assert [watch.read() for _ in range(5)] == [first] * 5 and len(reads) == 3
    update_lease(run, lease.token, heartbeat=123.0)  # a rename in the directory
    assert watch.read().lease.heartbeat == 123.0 and len(reads) == 4
    settle()
    watch.read()
    assert finish(run, lease.token, State.COMPLETED, {"summary": {"acc": 1}})
    assert watch.read().state is State.COMPLETED and len(reads) == 6
