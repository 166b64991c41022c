"""Environmental faults: a fault confined to one run marks that run and the sweep goes on; a fault
of the whole machine (disk full) stops it with one clear line, nothing lost or torn, and a later
resume completes it. Uses chattr and a small tmpfs, so these tests need root (as CI has)."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import Project, wait_for

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="chattr and mount need root")


def _chattr(flag: str, path: Path) -> None:
    proc = subprocess.run(["chattr", flag, str(path)], capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"chattr does not work here: {proc.stderr.strip()}")


@pytest.fixture
def immutable() -> Iterator[list[Path]]:
    """Paths the test made immutable: made mutable again afterwards, whatever happens."""
    paths: list[Path] = []
    yield paths
    for path in paths:
        subprocess.run(["chattr", "-i", str(path)], capture_output=True)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "disk"
    mount.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def _runs(project: Project, sweep: Path) -> dict[int, dict]:
    return {r["values"]["seed"]: r for r in project.status(sweep)["runs"]}


def _freeze(project: Project, *overrides: str) -> Path:
    """Freeze the sweep ``project.run(*overrides)`` would run, launching nothing."""
    from runner.config.compose import composer
    from runner.planning.sweep import expand
    from runner.storage.store import SweepStore

    with composer() as comp:
        plan = expand(comp, ["task=toy", "runner.output_dir=outputs", *overrides])
        dirs = [str(d) for d in comp.dirs]
    store, created = SweepStore.create(plan, project.root / "outputs", "config", dirs)
    assert created
    return store.root


@needs_root
def test_an_immutable_flag_file_does_not_stop_its_run(project: Project, immutable) -> None:
    sweep = _freeze(project, "seed=range(3)")
    flag = Path(_runs(project, sweep)[1]["dir"]) / "UNHATCHED"
    _chattr("+i", flag)
    immutable.append(flag)
    proc = project.run("seed=range(3)")
    assert proc.returncode == 0, proc.stderr
    assert {r["state"] for r in _runs(project, sweep).values()} == {"COMPLETED"}
    assert flag.exists()  # left where it was; the newer FLAG wins


@needs_root
def test_an_unwritable_run_directory_skips_that_run_only(project: Project, immutable) -> None:
    sweep = _freeze(project, "seed=range(3)")
    victim = Path(_runs(project, sweep)[1]["dir"])
    _chattr("+i", victim)
    immutable.append(victim)
    proc = project.run("seed=range(3)")
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert f"skipping run {_runs(project, sweep)[1]['id']}: permission denied" in proc.stderr
    assert "the other runs go on" in proc.stderr
    runs = _runs(project, sweep)
    assert [runs[s]["state"] for s in range(3)] == ["COMPLETED", "UNHATCHED", "COMPLETED"]
    subprocess.run(["chattr", "-i", str(victim)], check=True)
    assert project.run("seed=range(3)").returncode == 0
    assert _runs(project, sweep)[1]["state"] == "COMPLETED"


def test_a_run_directory_deleted_while_it_runs(project: Project) -> None:
    proc = project.popen("seed=range(3)", "task.mode=wait_file", "launcher.max_parallel=3")
    wait_for(lambda: len(project.markers_of("start")) == 3)
    sweep = project.sweep_dir()
    shutil.rmtree(_runs(project, sweep)[1]["dir"])
    (project.markers / "release").touch()
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 1, out
    assert "Traceback" not in out and "the other runs go on" in out
    rows = project.status(sweep)["runs"]
    assert sorted(r["state"] for r in rows) == ["COMPLETED", "COMPLETED", "CORRUPT"], rows
    assert "is missing" in next(r["reason"] for r in rows if r["state"] == "CORRUPT")


@needs_root
def test_disk_full_while_freezing_says_so_and_leaves_nothing(project: Project,
                                                            small_disk: Path) -> None:
    proc = project.run("seed=range(400)", f"runner.output_dir={small_disk}/out")
    assert proc.returncode == 1, proc.stderr
    assert "no space left on the device" in proc.stderr and "Traceback" not in proc.stderr
    assert "free some space, then resume" in proc.stderr
    out = small_disk / "out"
    assert not out.exists() or not list(out.iterdir())  # no half-built sweep left


@needs_root
def test_disk_full_during_a_sweep_then_resume(project: Project, small_disk: Path) -> None:
    out = f"runner.output_dir={small_disk}/out"
    proc = project.run("seed=range(3)", out, "runner.dry_run=false", "task.mode=raise")
    assert proc.returncode == 1
    sweep = next((small_disk / "out").iterdir())
    filler = small_disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:  # fill the disk to the last byte
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError:
        pass
    finally:
        os.close(fd)
    proc = project.cli("resume", str(sweep), "runner.retry_crashed=true")
    assert proc.returncode == 1, proc.stderr
    assert "no space left on the device" in proc.stderr and "Traceback" not in proc.stderr
    assert {r["state"] for r in project.status(sweep)["runs"]} <= {"CRASHED", "RUNNING",
                                                                   "INTERRUPTED"}
    filler.unlink()
    proc = project.cli("resume", str(sweep), "runner.retry_crashed=true")
    assert proc.returncode == 1  # the toy task raises again: every run ran its second attempt
    assert all(r["attempt"] >= 2 and r["state"] == "CRASHED"
               for r in project.status(sweep)["runs"]), project.status(sweep)


def test_a_killed_fork_server_is_named_and_the_sweep_resumes(project: Project) -> None:
    import signal

    import psutil

    proc = project.popen("seed=range(4)", "task.mode=wait_file", "launcher.max_parallel=2")
    wait_for(lambda: len(project.markers_of("start")) == 2)
    (server,) = [p for p in psutil.Process(proc.pid).children()
                 if "runner.launchers.forkserver" in " ".join(p.cmdline())]
    server.send_signal(signal.SIGKILL)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 2, out
    assert f"runner's fork server (pid {server.pid}) was killed by SIGKILL" in out
    assert "The sweep is resumable: `python -m runner resume" in out and "Traceback" not in out
    (project.markers / "release").touch()
    assert project.run("seed=range(4)", "task.mode=wait_file",
                       "launcher.max_parallel=2").returncode == 0
    assert {r["state"] for r in project.status()["runs"]} == {"COMPLETED"}
