"""End to end on the local launcher: real processes, real FLAG files, real resumes."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time

import yaml

from conftest import wait_for

GRID = ("+sweep=grid", "task.lr=0.1,0.01", "seed=1,2", "launcher.max_parallel=2")


def test_grid_sweep_runs_every_run_and_records_everything(project):
    proc = project.run(*GRID, check=True)
    sweep = project.sweep_dir()
    status = project.status()
    assert status["counts"]["COMPLETED"] == 4 and sum(status["counts"].values()) == 4
    for row in status["runs"]:
        lr, seed = row["values"]["task.lr"], row["values"]["seed"]
        assert row["summary"] == {"score": lr * 10 + seed, "steps": 3}
        assert row["attempt"] == 1 and row["duration_s"] >= 0
        run_dir = sweep / "runs" / os.path.basename(row["dir"])
        cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
        assert cfg["task"]["lr"] == lr and cfg["seed"] == seed
        assert json.loads((run_dir / "values.json").read_text()) == row["values"]
        lines = (run_dir / "metrics.jsonl").read_text().splitlines()
        metrics = [json.loads(line) for line in lines]
        assert [m["step"] for m in metrics] == [0, 1, 2] and metrics[2]["loss"] == 1 / 3
        assert (run_dir / "progress.csv").read_text().splitlines()[0] == "step,time,attempt,loss,lr"
        assert "=== runner: attempt 1" in (run_dir / "stdout.log").read_text()
    manifest = json.loads((sweep / "sweep.json").read_text())
    assert manifest["varying"] == ["task.lr", "seed"]
    assert [r["values"] for r in manifest["runs"]] == [
        {"task.lr": lr, "seed": s} for lr in (0.1, 0.01) for s in (1, 2)]
    prov = manifest["provenance"]
    assert prov["python"].count(".") == 2 and "hydra-core" in prov["packages"]
    assert prov["host"] and "git" in prov
    assert "sweep finished" in proc.stderr
    # the same command again: the same sweep, nothing is run twice
    again = project.run(*GRID, check=True)
    assert "resuming sweep" in again.stderr and "0 of 4 runs to launch" in again.stderr
    assert set(project.markers_of("start").values()) == {1}


def test_each_kind_of_crash_is_recorded_for_that_run_only(project):
    proc = project.run("task.mode=ok,raise,exit3,segv,sigkill", "launcher.max_parallel=2")
    assert proc.returncode == 1
    rows = {r["values"]["task.mode"]: r for r in project.status()["runs"]}
    assert rows["ok"]["state"] == "COMPLETED"
    assert {m: rows[m]["state"] for m in ("raise", "exit3", "segv", "sigkill")} == dict.fromkeys(
        ("raise", "exit3", "segv", "sigkill"), "CRASHED")
    assert rows["raise"]["reason"] == "ValueError: toy failure lr=0.1"
    assert "sys.exit(3)" in rows["exit3"]["reason"]
    assert rows["segv"]["reason"] == "killed by SIGSEGV"
    assert rows["sigkill"]["reason"].startswith("killed by SIGKILL")
    crash = (project.sweep_dir() / "runs" / os.path.basename(rows["raise"]["dir"]) / "CRASH.txt")
    assert "exit_status: 1" in crash.read_text() and "Traceback" in crash.read_text()
    segv_dir = project.sweep_dir() / "runs" / os.path.basename(rows["segv"]["dir"])
    assert "Segmentation fault" in (segv_dir / "stderr.log").read_text()
    assert "Segmentation fault" in (segv_dir / "CRASH.txt").read_text()  # stderr tail kept
    assert "exit_status: 3" in (project.sweep_dir() / "runs" / os.path.basename(
        rows["exit3"]["dir"]) / "CRASH.txt").read_text()


def test_resume_retries_crashed_runs_only_when_asked(project):
    project.run("task.mode=ok,raise")
    sweep = project.sweep_dir()
    assert project.cli("resume", str(sweep)).returncode == 1
    assert project.markers_of("start") and sum(project.markers_of("start").values()) == 2
    proc = project.cli("resume", str(sweep), "runner.retry_crashed=true")
    assert proc.returncode == 1  # it crashes again, deterministically
    starts = project.markers_of("start")
    assert sorted(starts.values()) == [1, 2]
    raise_row = next(r for r in project.status()["runs"] if r["values"]["task.mode"] == "raise")
    assert raise_row["attempt"] == 2
    attempts = sorted(p.name for p in (sweep / "runs" / os.path.basename(raise_row["dir"])
                                       / "attempts").iterdir())
    assert attempts == ["0.UNHATCHED", "1.CRASH.txt"]


def test_dry_run_prints_the_plan_and_writes_nothing(project):
    proc = project.run("+sweep=grid", "task.lr=0.1,0.01", "seed=1,2,3", "runner.dry_run=true",
                       check=True)
    assert "6 runs (grid)" in proc.stdout and "task.lr" in proc.stdout
    assert "nothing was written or launched" in proc.stderr
    assert not (project.root / "outputs").exists() and not project.markers.exists()


def test_changed_config_warns_and_keeps_frozen_runs_or_refuses(project):
    project.run("task.lr=0.1,0.2", check=True)
    toy = project.root / "conf" / "task" / "toy.yaml"
    toy.write_text(toy.read_text().replace("steps: 3", "steps: 5"))
    proc = project.run("task.lr=0.1,0.2", check=True)
    assert "the config changed since" in proc.stderr and "frozen runs" in proc.stderr
    assert "2 kept, whose configs differ in task.steps: 3 -> 5" in proc.stderr  # what changed
    run_dirs = list((project.sweep_dir() / "runs").iterdir())
    assert all(yaml.safe_load((d / "config.yaml").read_text())["task"]["steps"] == 3
               for d in run_dirs)
    refused = project.run("task.lr=0.1,0.2", "runner.on_config_change=error")
    assert refused.returncode == 2 and "runner.on_config_change=error" in refused.stderr


def test_debug_runs_one_run_inside_the_runner_process(project):
    proc = project.popen("task.lr=0.1,0.2", "runner.debug=first")
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, out
    starts = list(project.markers.iterdir())
    assert len(starts) == 2  # start + done of exactly one run
    assert all(f.name.endswith(f"-{proc.pid}") for f in starts)
    counts = project.status()["counts"]
    assert counts["COMPLETED"] == 1 and counts["UNHATCHED"] == 1


def test_timeout_kills_the_run_and_marks_it_crashed(project):
    proc = project.run("task.mode=hang", "launcher.timeout_min=0.01", "launcher.kill_grace_s=1")
    assert proc.returncode == 1
    (row,) = project.status()["runs"]
    assert row["state"] == "CRASHED" and "timed out" in row["reason"]


def test_max_parallel_is_respected(project):
    project.run("seed=range(6)", "task.sleep=0.6", "launcher.max_parallel=2", check=True)
    intervals = []
    for f in project.markers.iterdir():
        kind, rid, pid = f.name.split("-")
        if kind == "start":
            done = project.markers / f"done-{rid}-{pid}"
            intervals.append((f.stat().st_mtime, done.stat().st_mtime))
    peak = max(sum(1 for s, e in intervals if s <= t < e) for t, _ in intervals)
    assert len(intervals) == 6 and peak == 2


def test_sigint_stops_cleanly_and_resume_finishes(project):
    proc = project.popen("seed=range(4)", "task.sleep=3", "task.steps=30",
                         "launcher.max_parallel=2")
    wait_for(lambda: len(project.markers_of("start")) == 2)
    time.sleep(0.3)
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130, out
    counts = project.status()["counts"]
    assert counts["INTERRUPTED"] == 2 and counts["UNHATCHED"] == 2, out
    reasons = {r["reason"] for r in project.status()["runs"] if r["state"] == "INTERRUPTED"}
    assert reasons == {"received SIGTERM"}
    done = project.cli("resume", str(project.sweep_dir()))
    assert done.returncode == 0, done.stderr
    assert project.status()["counts"]["COMPLETED"] == 4
    assert set(project.markers_of("done").values()) == {1}
    assert sorted(project.markers_of("start").values()) == [1, 1, 2, 2]


def test_spawn_start_method_runs_fresh_interpreters(project):
    proc = project.run("task.mode=ok,raise,sigkill", "launcher.start_method=spawn",
                       "task.record_env=true")
    assert proc.returncode == 1, proc.stderr
    rows = {r["values"]["task.mode"]: r for r in project.status()["runs"]}
    assert rows["ok"]["state"] == "COMPLETED"
    assert rows["raise"]["reason"] == "ValueError: toy failure lr=0.1"
    assert rows["sigkill"]["reason"].startswith("killed by SIGKILL")
    env = json.loads((project.sweep_dir() / "runs" / os.path.basename(rows["ok"]["dir"])
                      / "env.json").read_text())["env"]
    assert env["RUNNER_RUN_ID"] == rows["ok"]["id"]


def test_status_cache_follows_state_changes(project):
    project.run("task.mode=ok,raise")
    sweep = project.sweep_dir()
    time.sleep(2.1)  # run directories changed in the last 2 s are not cached yet
    first = project.status()
    cache = sweep / ".status-cache" / "0.tsv"
    assert cache.is_file() and len(cache.read_text().splitlines()) == 1 + 2  # (head, 2 runs)
    cache.write_text("{not json\n1\t2")  # an unreadable cache is ignored, then rebuilt
    assert project.status()["runs"] == first["runs"]
    project.cli("resume", str(sweep), "runner.retry_crashed=true")
    raise_row = next(r for r in project.status()["runs"] if r["values"]["task.mode"] == "raise")
    assert raise_row["attempt"] == 2  # the new CRASH.txt (a new inode) is read, not the cache


def test_corrupt_flag_skips_that_run_only_and_is_left_untouched(project):
    project.run("seed=range(3)", "runner.dry_run=false", "task.mode=raise")  # freeze the sweep
    sweep = project.sweep_dir()
    rows = project.status()["runs"]
    victim = sweep / "runs" / os.path.basename(rows[1]["dir"]) / "CRASH.txt"
    victim.write_bytes(b"\x00garbage")
    proc = project.cli("resume", str(sweep), "runner.retry_crashed=true")
    assert proc.returncode == 1
    assert f"skipping run {rows[1]['id']}" in proc.stderr and "CRASH.txt" in proc.stderr
    assert victim.read_bytes() == b"\x00garbage"
    after = {r["id"]: r for r in project.status()["runs"]}
    assert after[rows[1]["id"]]["state"] == "CORRUPT"
    assert after[rows[0]["id"]]["attempt"] == 2 and after[rows[2]["id"]]["attempt"] == 2


def test_half_built_sweeps_of_dead_runners_are_removed(project):
    project.run(check=True)
    sweep = project.sweep_dir()
    shutil.rmtree(sweep)
    dead_pid = subprocess.Popen(["true"])
    dead_pid.wait()
    abandoned = sweep.with_name(f".{sweep.name}.creating-{dead_pid.pid}-0000")
    in_progress = sweep.with_name(f".{sweep.name}.creating-{os.getpid()}-1111")
    for d in (abandoned, in_progress):
        (d / "runs").mkdir(parents=True)
    project.run(check=True)
    assert not abandoned.exists() and in_progress.exists() and (sweep / "sweep.json").is_file()


def test_progress_display_on_a_terminal(project):
    import io

    from rich.console import Console

    from runner.config.compose import composer
    from runner.planning.sweep import expand
    from runner.scheduling.scheduler import run_sweep
    from runner.storage.store import SweepStore

    with composer() as comp:
        plan = expand(comp, ["task=toy", "seed=range(3)", "task.mode=ok",
                             "runner.output_dir=outputs"])
    store, _ = SweepStore.create(plan, project.root / "outputs", "config", [])
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=150)
    result = run_sweep(store, plan.execution, console)
    text = out.getvalue()
    assert result.exit_code == 0 and result.counts["COMPLETED"] == 3
    assert "3/3" in text and "running 0 · crashed 0 · left 0" in text


def test_cancel_stops_the_runner_and_leaves_the_sweep_resumable(project):
    proc = project.popen("seed=range(4)", "task.sleep=30", "task.steps=30",
                         "launcher.max_parallel=2")
    wait_for(lambda: len(project.markers_of("start")) == 2)
    sweep = project.sweep_dir()
    cancel = project.cli("cancel", str(sweep), "--timeout", "10")
    out, _ = proc.communicate(timeout=60)
    assert cancel.returncode == 0 and "stopped 1 runner process" in cancel.stderr, out
    assert proc.returncode == 130, out
    counts = project.status()["counts"]
    assert counts["INTERRUPTED"] == 2 and counts["UNHATCHED"] == 2
    again = project.cli("cancel", str(sweep))
    assert again.returncode == 0 and "no runner process" in again.stderr


def test_a_corrupt_completed_run_is_counted_and_fails_the_exit_code(project):
    project.run("seed=range(3)", check=True)
    sweep = project.sweep_dir()
    rows = project.status()["runs"]
    victim = sweep / "runs" / os.path.basename(rows[0]["dir"]) / "COMPLETED"
    victim.write_text("garbage{")
    proc = project.run("seed=range(3)")
    assert proc.returncode == 1, proc.stderr
    assert "sweep finished" in proc.stderr and "2 completed, 1 corrupt" in proc.stderr
    assert f"1 run(s) have a corrupt FLAG file ({rows[0]['id']})" in proc.stderr
    assert victim.read_text() == "garbage{"


def test_an_interrupted_sweep_says_how_to_resume(project):
    proc = project.popen("seed=range(2)", "task.mode=wait_file")
    wait_for(lambda: len(project.markers_of("start")) == 2)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert "2 run(s) not finished: resume with `python -m runner resume" in out


def test_a_command_that_runs_nothing_says_what_and_how(project) -> None:
    """Re-running a finished or crashed sweep: the last line says what did not run and the
    override that would run it."""
    project.run("task.mode=raise", "seed=1")
    again = project.run("task.mode=raise", "seed=1")
    last = again.stderr.strip().splitlines()[-1]
    assert last.startswith("nothing ran: 1 crashed run(s)") and \
        "runner.retry_crashed=true" in last, again.stderr
    project.run("seed=2", check=True)
    done = project.run("seed=2", check=True).stderr.strip().splitlines()[-1]
    assert done.startswith("nothing ran: 1 finished run(s)") and "runner.name=" in done
    ran = project.run("seed=2", "seed=3", check=True).stderr  # a new sweep: it ran
    assert "nothing ran" not in ran


def test_a_failure_budget_stops_new_runs_and_the_next_launch_goes_on(project) -> None:
    """A streak of crashes before any run completed (a broken machine, a bad config) starts
    no new run; the end says why and how to go on; the next launch goes on where it stopped."""
    proc = project.run("task.mode=raise", "seed=range(12)", "launcher.max_parallel=2",
                       "runner.failure_streak=4")
    assert proc.returncode == 1
    counts = project.status()["counts"]
    assert 4 <= counts["CRASHED"] <= 5 and counts["UNHATCHED"] >= 7, counts
    assert "the first 4 runs to end all crashed (runner.failure_streak=4)" in proc.stderr
    assert "goes on where it stopped" in proc.stderr
    again = project.run("task.mode=raise", "seed=range(12)", "launcher.max_parallel=2",
                        "runner.failure_streak=null", "runner.max_failures=3")
    assert "runner.max_failures=3" in again.stderr
    later = project.status()["counts"]
    assert later["CRASHED"] - counts["CRASHED"] in (3, 4), later  # (2 at a time: one more)
    rate = project.run("task.mode=raise", "seed=range(40)", "launcher.max_parallel=2",
                       "runner.failure_streak=null", "runner.max_failure_rate=0.5",
                       "runner.name=rate")
    assert "of the 10 runs that ended in this launch crashed (100%, over " \
        "runner.max_failure_rate=0.5)" in rate.stderr, rate.stderr
    counts = project.status(project.root / "outputs" / "rate")["counts"]
    assert counts["CRASHED"] in (10, 11) and counts["UNHATCHED"] >= 29, counts


def test_a_full_disk_starts_no_new_run_and_marks_nothing_crashed(project) -> None:
    """runner.min_free_gb: below it no new run starts, the end says why, nothing is CRASHED,
    and the next launch (with room) goes on where it stopped."""
    proc = project.run("seed=range(4)", "runner.min_free_gb=1e12")  # a petabyte free: never
    counts = project.status()["counts"]
    assert counts["UNHATCHED"] == 4 and counts["CRASHED"] == 0, counts
    assert "GB free on the disk of" in proc.stderr and "runner.min_free_gb=1e+12" in proc.stderr
    assert "goes on where it stopped" in proc.stderr and proc.returncode != 0
    assert "none was marked crashed" in proc.stderr and "Look at a crash" not in proc.stderr
    assert "Traceback" not in proc.stderr
    bad = project.run("seed=range(4)", "runner.min_free_gb=-1")
    assert bad.returncode != 0 and "runner.min_free_gb" in bad.stderr
    project.run("seed=range(4)", check=True)
    assert project.status()["counts"]["COMPLETED"] == 4


def test_retries_by_class_of_failure(project) -> None:
    """runner.retries=2: a run killed by a signal (a machine's failure) runs again, up to twice
    (every attempt kept and classed); a task's own exception is not retried by default."""
    proc = project.run("task.mode=sigkill,raise", "runner.retries=2")
    assert proc.returncode == 1, proc.stderr
    rows = {r["values"]["task.mode"]: r for r in project.status()["runs"]}
    assert rows["sigkill"]["attempt"] == 3 and rows["raise"]["attempt"] == 1
    assert proc.stderr.count("retrying run") == 2
    table = project.cli("status", str(project.sweep_dir())).stdout
    assert "signal failure: killed by SIGKILL" in table and "task failure: ValueError" in table
    shown = project.cli("show", str(project.sweep_dir()), rows["sigkill"]["id"]).stdout
    assert shown.count("a signal failure") == 3, shown
    retried = project.run("task.mode=sigkill,raise", "runner.retries=1",
                          "runner.retry_on=[task]", "runner.retry_crashed=true")
    rows = {r["values"]["task.mode"]: r for r in project.status()["runs"]}
    assert rows["raise"]["attempt"] == 3 and rows["sigkill"]["attempt"] == 4, retried.stderr
