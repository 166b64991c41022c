"""Crash-safety: SIGKILL the whole runner at awkward moments, then resume.

Every run must end COMPLETED, and each run's task must have *finished* exactly once (counted with
marker files the task writes as its last act): a run killed mid-way is started again, a run that
had completed is never run again.
"""

from __future__ import annotations

import io
import os
import signal
import time

import psutil
import pytest
from rich.console import Console

from conftest import wait_for
from runner.config.schema import RunnerConf
from runner.scheduling.scheduler import prepare
from runner.storage.store import SweepStore

SWEEP = ("seed=range(6)", "task.sleep=1.2", "task.steps=12", "launcher.max_parallel=2")


def _kill_group(proc) -> None:
    os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=30)


def _worker_pids(project) -> list[int]:
    return [r["lease"]["pid"] for r in project.status()["runs"]
            if r["state"] == "RUNNING" and r["lease"]["phase"] == "running"]


def _visible(project) -> list:
    outputs = project.root / "outputs"
    return [d for d in outputs.iterdir() if not d.name.startswith(".")] if outputs.exists() else []


def _no_run_processes_left(project, pids: list[int]) -> bool:
    return not any(psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE
                   for p in pids)


@pytest.mark.parametrize("point", ["while_freezing", "first_runs_running", "mid_sweep",
                                   "last_runs_running"])
def test_sigkill_of_the_runner_then_resume_completes_every_run_once(project, point):
    proc = project.popen(*SWEEP)
    if point == "while_freezing":
        time.sleep(0.4)
    elif point == "first_runs_running":
        wait_for(lambda: len(project.markers_of("start")) >= 2)
    elif point == "mid_sweep":
        wait_for(lambda: len(project.markers_of("done")) >= 2
                 and len(project.markers_of("start")) >= 4)
    else:
        wait_for(lambda: len(project.markers_of("done")) >= 4
                 and len(project.markers_of("start")) == 6)
    time.sleep(0.2)
    try:  # (the sweep may still be a hidden folder being frozen: then no run has started)
        pids = _worker_pids(project) if _visible(project) else []
    finally:
        _kill_group(proc)
    # the runs die with their runner (no orphans keep running unobserved)
    wait_for(lambda: _no_run_processes_left(project, pids), timeout=20)
    visible = _visible(project)
    if not visible:
        assert point == "while_freezing"
        resumed = project.run(*SWEEP)  # nothing frozen yet: the same command starts over
    else:
        assert len(visible) == 1 and (visible[0] / "sweep.json").is_file()
        before = project.status()
        assert before["counts"]["CORRUPT"] == 0
        resumed = project.cli("resume", str(visible[0]))
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    status = project.status()
    assert status["counts"]["COMPLETED"] == 6, status["counts"]
    assert project.markers_of("done") == {r["id"]: 1 for r in status["runs"]}


def test_sigkill_of_one_run_crashes_only_that_run(project):
    proc = project.popen("seed=range(3)", "task.sleep=2", "task.steps=20",
                         "launcher.max_parallel=3")
    wait_for(lambda: len(project.markers_of("start")) == 3)

    def victim():
        for row in project.status()["runs"]:
            lease = row.get("lease")
            if lease and lease["phase"] == "running" and row["values"]["seed"] == 1:
                return lease["pid"]
        return None

    pid = wait_for(victim)
    os.kill(pid, signal.SIGKILL)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 1, out
    rows = {r["values"]["seed"]: r for r in project.status()["runs"]}
    assert rows[1]["state"] == "CRASHED" and rows[1]["reason"].startswith("killed by SIGKILL")
    assert rows[0]["state"] == rows[2]["state"] == "COMPLETED"


def test_two_runners_on_the_same_sweep_never_run_a_run_twice(project):
    args = ("seed=range(8)", "task.sleep=0.3", "launcher.max_parallel=2")
    a, b = project.popen(*args), project.popen(*args)
    out_a, _ = a.communicate(timeout=120)
    out_b, _ = b.communicate(timeout=120)
    assert a.returncode == 0 and b.returncode == 0, out_a + out_b
    status = project.status()
    assert status["counts"]["COMPLETED"] == 8
    assert project.markers_of("start") == {r["id"]: 1 for r in status["runs"]}


def test_stale_lease_of_a_dead_process_is_recovered_as_interrupted(project):
    proc = project.popen("seed=range(2)", "task.sleep=30", "task.steps=30")
    wait_for(lambda: len(project.markers_of("start")) == 2)
    pids = _worker_pids(project)
    assert len(pids) == 2
    _kill_group(proc)
    wait_for(lambda: _no_run_processes_left(project, pids), timeout=20)
    before = project.status()
    assert before["counts"]["RUNNING"] == 2 and all(r["stale"] for r in before["runs"])
    table = project.cli("status", str(project.sweep_dir())).stdout
    assert table.count("RUNNING (dead)") == 2 and "is gone: interrupted" in table
    # every launch starts with recovery: the dead leases become INTERRUPTED, nothing else changes
    rows = prepare(SweepStore(project.sweep_dir()), RunnerConf(), Console(file=io.StringIO()))
    assert {r.state for r in rows} == {"INTERRUPTED"}
    assert all("found interrupted: process" in r.reason for r in rows)


def test_sigkill_while_freezing_leaves_no_partial_sweep(project):
    args = ("task.lr=range(40)", "seed=range(50)")  # 2,000 runs: freezing takes a while
    proc = project.popen(*args)
    outputs = project.root / "outputs"
    wait_for(lambda: outputs.exists() and any(".creating-" in d.name for d in outputs.iterdir()),
             interval=0.005)
    _kill_group(proc)
    visible = [d for d in outputs.iterdir() if not d.name.startswith(".")]
    assert visible == []  # nothing half-built is ever visible under its real name
    # the same command freezes the whole sweep (and removes the dead runner's leftovers);
    # runner.debug runs just one run, in this process, to keep the test short
    again = project.run(*args, "runner.debug=first")
    assert again.returncode == 0, again.stderr
    assert [d.name for d in outputs.iterdir() if ".creating-" in d.name] == []
    status = project.status()
    assert len(status["runs"]) == 2000 and status["counts"]["CORRUPT"] == 0
    assert status["counts"]["COMPLETED"] == 1 and status["counts"]["UNHATCHED"] == 1999


SLOW_TRACKER = '''
from dataclasses import dataclass
from pathlib import Path
import time
from runner.execution.trackers import Tracker

@dataclass
class SlowConf:
    _target_: str = "slow_tracker.Slow"
    marker: str = ""

class Slow(Tracker):
    config_class = SlowConf

    def start(self, ctx):
        self.ctx = ctx

    def log(self, record):
        pass

    def finish(self, state, summary):  # e.g. a tracker uploading at the end of a run
        Path(self.conf.marker, f"finishing-{self.ctx.run_id}-0").touch()
        time.sleep(60)
'''


def test_sigkill_after_the_body_returned_never_runs_it_again(project):
    """The body/COMPLETED boundary: COMPLETED is written the moment the task returns, before
    trackers finish and files close; a SIGKILL after that point (here: while a tracker is
    finishing) leaves a COMPLETED run that resume never starts again."""
    (project.root / "slow_tracker.py").write_text(SLOW_TRACKER)
    proc = project.popen("seed=1", "+tracker.slow={_target_: slow_tracker.Slow, marker: "
                         f"{project.markers}}}", "runner.preload_trackers=false")
    wait_for(lambda: project.markers_of("finishing"))
    _kill_group(proc)
    (row,) = project.status()["runs"]
    assert row["state"] == "COMPLETED" and row["summary"]["score"] == 2.0
    resumed = project.run("seed=1", "+tracker.slow={_target_: slow_tracker.Slow, marker: "
                          f"{project.markers}}}", "runner.preload_trackers=false")
    assert resumed.returncode == 0, resumed.stderr
    assert "0 of 1 runs to launch" in resumed.stderr
    assert list(project.markers_of("start").values()) == [1]
