"""Another user of a shared outputs folder: a sweep folder they could write never makes whoever
resumes it run their code, symlinks never lead chat's reads or runner's writes elsewhere, and
files that hold user data beyond results are private."""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

import pytest

from conftest import Project
from runner.errors import RunnerError
from runner.integrations.discord_bot.config import BotConf
from runner.integrations.discord_bot.logic import BotLogic, Caller

USER, CHANNEL = 4242, 777
SECRET_TEXT = "private-file-content-0123456789"


def bot(project: Project) -> BotLogic:
    return BotLogic(BotConf(allowed_users=[USER], channels=[CHANNEL],
                            workdir=str(project.root), tasks=["toy"]))


def mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


@pytest.fixture
def two_sweeps(project: Project) -> tuple[Project, Path]:
    """outputs/real (a real sweep) and a private file outside outputs/."""
    project.run("seed=1,2", "runner.name=real", check=True)
    private = project.root / "private.txt"
    private.write_text(SECRET_TEXT)
    return project, private


def test_a_sweep_made_of_links_is_not_read_for_chat(two_sweeps: tuple[Project, Path]) -> None:
    project, _ = two_sweeps
    elsewhere = project.root / "elsewhere"
    shutil.move(project.root / "outputs" / "real", elsewhere)
    fake = project.root / "outputs" / "fake"
    fake.mkdir()
    (fake / "sweep.json").symlink_to(elsewhere / "sweep.json")
    (fake / "runs").symlink_to(elsewhere / "runs")
    logic = bot(project)
    assert "fake" not in logic.sweeps().text
    for call in (lambda: logic.runs("fake"), lambda: logic.summary("x", sweep="fake")):
        with pytest.raises(RunnerError, match="no sweep named 'fake'|symbolic link"):
            call()


def test_a_link_inside_a_sweep_another_user_owns_is_refused(
        two_sweeps: tuple[Project, Path]) -> None:
    """A run folder's file linked to a private file: chat never shows its content."""
    project, private = two_sweeps
    sweep = project.root / "outputs" / "real"
    run = next((sweep / "runs").iterdir())
    (run / "metrics.jsonl").unlink()
    (run / "metrics.jsonl").symlink_to(private)
    for path in [sweep, *sweep.rglob("*")]:
        os.lchown(path, 65534, 65534)  # another user's sweep (made by them, as they like)
    logic = bot(project)
    with pytest.raises(RunnerError, match="symbolic link"):
        logic.summary(run.name[:8], sweep="real")
    with pytest.raises(RunnerError, match="symbolic link"):
        logic.plot("real", keys="loss")
    assert SECRET_TEXT not in logic.sweeps().text


def test_runner_name_naming_a_link_writes_nothing_elsewhere(project: Project) -> None:
    target = project.root / "target"
    target.mkdir()
    (project.root / "outputs").mkdir()
    (project.root / "outputs" / "link").symlink_to(target)
    proc = project.run("runner.name=link")
    assert proc.returncode != 0 and "symbolic link" in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) <= 2, proc.stderr
    assert list(target.iterdir()) == []
    with pytest.raises(RunnerError, match="symbolic link"):
        bot(project).launch(Caller(USER, CHANNEL), "task=toy runner.name=link")
    assert list(target.iterdir()) == []


def test_runner_never_appends_through_a_planted_link(project: Project) -> None:
    """A metrics file replaced by a link before the run starts: the run fails, the link's
    target is untouched."""
    project.run("seed=1", "runner.name=s", "task.mode=raise")
    (run,) = (project.root / "outputs" / "s" / "runs").iterdir()
    victim = project.root / "victim.txt"
    victim.write_text("untouched\n")
    for name in ("metrics.jsonl", "progress.csv"):
        (run / name).unlink(missing_ok=True)
        (run / name).symlink_to(victim)
    project.run("seed=1", "runner.name=s", "runner.retry_crashed=true")
    assert victim.read_text() == "untouched\n"


@pytest.mark.parametrize("change", ["owner", "world", "group", "added"])
def test_a_sweep_others_could_write_is_never_run(project: Project, change: str) -> None:
    """Its manifest names the code that runs: refused in one clear line, nothing runs."""
    project.run("seed=1,2", "task.mode=raise", "runner.name=s")
    sweep = project.root / "outputs" / "s"
    before = project.markers_of("start")
    if change == "owner":
        os.chown(sweep / "sweep.json", 65534, 65534)
    elif change == "world":
        os.chmod(sweep / "runs", 0o777)
    elif change == "group":
        os.chown(sweep, os.geteuid(), 65534)  # a group that is not the user's own
        os.chmod(sweep, 0o775)
    else:  # the runs added since sweep.json was written: another user's file
        (sweep / "sweep.added.jsonl").write_text("")
        os.chown(sweep / "sweep.added.jsonl", 65534, 65534)
    for proc in (project.run("seed=1,2", "task.mode=raise", "runner.name=s",
                             "runner.retry_crashed=true"),
                 project.cli("resume", str(sweep), "runner.retry_crashed=true")):
        assert proc.returncode != 0, proc.stderr
        assert "nobody else can write" in proc.stderr, proc.stderr
        assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) <= 2
    assert project.markers_of("start") == before


def test_runner_makes_its_sweep_folders_unwritable_to_others(project: Project) -> None:
    old = os.umask(0o002)
    try:
        project.run("seed=1", "runner.name=s", "runner.dry_run=false", check=True)
        project.run("+sweep=optuna", "sweep.metric=score", "sweep.mode=max",
                    "sweep.n_trials=1", "task.lr=interval(0.01,0.1)", "runner.name=st",
                    check=True)
    finally:
        os.umask(old)
    for name in ("s", "st"):
        sweep = project.root / "outputs" / name
        assert mode(sweep) & 0o022 == 0 and mode(sweep / "runs") & 0o022 == 0
        assert mode(sweep / "sweep.json") & 0o022 == 0
    assert mode(project.root / "outputs" / "st" / "study.json") & 0o022 == 0
    assert mode(project.root / "outputs" / "st" / "sweep.added.jsonl") & 0o022 == 0  # (trials)
    from runner.config.trust import why_untrusted
    from runner.storage.store import SweepStore

    plan_only = project.root / "outputs" / "s" / "sweep.json"
    assert why_untrusted(plan_only) is None and SweepStore(plan_only.parent).exists()


def test_files_holding_user_data_are_private(project: Project) -> None:
    """Diffs and environments (0600, code/ 0700), the bot's log, state and launch logs."""
    import subprocess

    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@x", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@x", "HOME": str(project.root), "PATH": "/usr/bin:/bin"}
    (project.root / ".gitignore").write_text("outputs/\nmarkers/\n")
    for args in (["init", "-q"], ["add", "."], ["commit", "-qm", "x"]):
        subprocess.run(["git", *args], cwd=project.root, check=True, env=env,
                       capture_output=True)
    (project.root / "helper.py").write_text("X = 1\n")
    project.run("seed=1", "runner.name=s", check=True)
    sweep = project.root / "outputs" / "s"
    assert mode(sweep / "git.diff") == 0o600
    assert mode(sweep / "code") == 0o700
    assert {mode(p) for p in (sweep / "code").iterdir()} == {0o600}

    logic = bot(project)
    logic.audit("a line")
    logic.subscribe(Caller(USER, CHANNEL), 5, "sweeps")
    item = logic.launches.start(["seed=1", "runner.name=t", "task=toy"], "t", 1, USER)
    item.proc.wait(60)
    assert mode(logic.log_dir) == 0o700
    assert mode(logic.log_dir / "bot.log") == 0o600
    assert mode(project.root / logic.conf.state_file) == 0o600
    assert mode(item.log) == 0o600 and mode(item.log.parent) == 0o700


def test_a_sweep_in_a_shared_group_folder_runs_and_resumes(project: Project) -> None:
    """A lab's folder (setgid, a shared group) under a umask of 002: runner's own files are
    made so nobody else can write them, so its own sweeps run and resume."""
    outputs = project.root / "outputs"
    outputs.mkdir()
    os.chown(outputs, os.geteuid(), 65534)
    os.chmod(outputs, 0o2775)
    old = os.umask(0o002)
    try:
        project.run("seed=1,2", "runner.name=s", check=True)
        again = project.run("seed=1,2", "runner.name=s", check=True)
    finally:
        os.umask(old)
    assert "nothing ran" in again.stderr
    assert os.stat(outputs / "s").st_gid == 65534  # (the group folder's group, not writable)
    # nothing runner made there is writable by the group: a run's config names its code,
    # its FLAGs, metrics and attempts are its results (before: run folders, config.yaml and
    # values.json, attempts/ were group-writable)
    writable = [str(p.relative_to(outputs)) for p in (outputs / "s").rglob("*")
                if not p.is_symlink() and stat.S_IMODE(p.lstat().st_mode) & 0o022]
    assert writable == []
    from runner.storage.atomic import make_folders

    old = os.umask(0o002)
    try:
        make_folders(outputs / "s" / "slurm" / "abc" / "logs")  # (a SLURM submission's)
    finally:
        os.umask(old)
    made = [outputs / "s" / "slurm", outputs / "s" / "slurm" / "abc",
            outputs / "s" / "slurm" / "abc" / "logs"]
    assert [stat.S_IMODE(p.stat().st_mode) & 0o022 for p in made] == [0, 0, 0]
