"""SLURM pieces that need no cluster: the rendered script (golden files, shell quoting of weird
paths), squeue/sbatch output parsing, verdicts on dead jobs, and giving a claim back."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import time
from pathlib import Path

import pytest

from conftest import Project
from runner.config.schema import SlurmLauncherConf
from runner.errors import ConfigError, SlurmError
from runner.launchers import launcher_config
from runner.slurm import commands, submissions
from runner.slurm.commands import JobInfo, parse_job_id, parse_squeue
from runner.slurm.script import ArraySpec, job_name, render_script
from runner.storage.paths import RunPaths, SweepPaths
from runner.storage.recovery import judge, observe
from runner.storage.state import (
    Lease,
    State,
    claim,
    create_unhatched,
    finish,
    read_state,
    unclaim,
    update_lease,
)

GOLDEN = Path(__file__).parent / "assets" / "slurm"
WEIRD = ["plain", "a 0", 'a"=0"', "a'; echo foo", "a\n0", "100%_%j"]


def _render(root: Path, **conf_kwargs: object) -> str:
    conf = SlurmLauncherConf(**conf_kwargs)  # type: ignore[arg-type]
    paths = SweepPaths(root).submission("20261123-080000-abcdef")
    return render_script(conf, job_name=job_name("toy grid,1", "20261123-080000-abcdef"),
                         array=ArraySpec(12, conf.max_parallel), paths=paths,
                         cwd=str(root.parent), python="/opt/venv/bin/python",
                         env={"RUNNER_TRACKERS": '{"wandb": {"project": "it\'s"}}'},
                         heartbeat_s=10.0)


def _check_golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("RUNNER_UPDATE_GOLDEN") == "1":
        path.write_text(text)
    assert path.exists(), f"{path} missing: rerun with RUNNER_UPDATE_GOLDEN=1 to record it"
    expected = path.read_text()
    assert text == expected, (f"{name} changed; if that is intended, rerun with "
                              "RUNNER_UPDATE_GOLDEN=1 and review the diff")


def test_script_golden_defaults() -> None:
    _check_golden("defaults.sbatch", _render(Path("/data/sweeps/toy")))


def test_script_golden_every_option_and_a_path_with_spaces_and_quotes() -> None:
    text = _render(Path("/data/my sweeps/it's \"quoted\"/toy"), max_parallel=4,
                   timeout_min=119.5, cpus_per_run=8, gpus_per_run=2, mem_gb=7.5,
                   partition="gpu", account="lab", qos="high", constraint="a100",
                   sbatch_extra=["--exclusive", "#SBATCH --nodelist=n1"],
                   setup=["module load cuda/12", "source ~/env.sh"], max_requeue=2,
                   signal_delay_s=120, nodes=2)
    _check_golden("every-option.sbatch", text)
    assert "#SBATCH --nodes=2\n#SBATCH --ntasks-per-node=1\n" in text  # one agent per node
    assert "#SBATCH --array=0-11%4" in text and "#SBATCH --time=120" in text
    assert "#SBATCH --signal=B:USR1@120" in text and "#SBATCH --gres=gpu:2" in text
    assert "#SBATCH --mem=7680M" in text and "#SBATCH --job-name=toy_grid_1.20261123" in text


def test_short_time_limit_moves_the_warning_to_half_way() -> None:
    assert "#SBATCH --signal=B:USR1@30" in _render(Path("/s/t"), timeout_min=1)


@pytest.mark.parametrize("weird", WEIRD)
def test_script_runs_the_worker_on_weird_paths(tmp_path: Path, weird: str) -> None:
    """The script itself, run by bash: every path reaches the worker intact and the log lands in
    the submission's logs/ folder, whatever the folder names hold."""
    root = tmp_path / weird / "sweep"
    fake_python = tmp_path / "python"
    fake_python.write_text("#!/bin/sh\nprintf '%s\\n' \"$PWD\" \"$@\" > \"$ARGS_OUT\"\n")
    fake_python.chmod(fake_python.stat().st_mode | stat.S_IEXEC)
    paths = SweepPaths(root).submission("s1")
    text = render_script(SlurmLauncherConf(), job_name="x.s1", array=ArraySpec(1),
                         paths=paths, cwd=str(tmp_path / weird), python=str(fake_python),
                         env={"RUNNER_TRACKERS": "{}"}, heartbeat_s=5.0)
    (tmp_path / weird).mkdir(parents=True)
    script = tmp_path / "job.sbatch"
    script.write_text(text)
    out = tmp_path / "args.txt"
    proc = subprocess.run(["bash", str(script)], env={**os.environ, "SLURM_ARRAY_TASK_ID": "0",
                                                      "SLURM_ARRAY_JOB_ID": "7",
                                                      "ARGS_OUT": str(out)},
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    args = out.read_text()
    assert args.startswith(str(tmp_path / weird) + "\n")
    assert f"\n{paths.tasks}\n" in args
    assert paths.log(0).read_text().startswith("=== runner: job 7_0")


@pytest.mark.parametrize("output, expected", [
    ("123\n", "123"), ("4567;cluster\n", "4567"), ("  89 ", "89")])
def test_parse_job_id(output: str, expected: str) -> None:
    assert parse_job_id(output) == expected


@pytest.mark.parametrize("output", ["", "Submitted batch job 12", "12;", "abc"])
def test_parse_job_id_refuses_what_it_does_not_understand(output: str) -> None:
    with pytest.raises(SlurmError, match="could not make sense of sbatch output"):
        parse_job_id(output)


def test_parse_squeue() -> None:
    out = ("12|3|15|RUNNING|None|vm|toy.s1\n"
           "12|4|12|PENDING|JobArrayTaskLimit||toy.s1\n"
           "13|N/A|13|RUNNING|None|vm|other\n"
           "14|0|14|CANCELLED by 0|None|vm|a|b\n"
           "garbage\n")
    jobs = parse_squeue(out)
    assert [(j.name, j.job_id, j.state, j.ended) for j in jobs] == [
        ("12_3", "15", "RUNNING", False), ("12_4", "12", "PENDING", False),
        ("14_0", "14", "CANCELLED", True)]
    assert jobs[1].reason == "JobArrayTaskLimit" and jobs[2].job_name == "a|b"


def test_unknown_launcher_key_lists_the_valid_ones() -> None:
    with pytest.raises(ConfigError) as err:
        launcher_config({"_target_": "runner.launchers.slurm.SlurmLauncher",
                         "partiton": "gpu"})
    assert "launcher.partiton" in str(err.value)
    assert "partition" in str(err.value).split("valid keys are:")[1]


def test_without_slurm_commands_the_launcher_says_what_it_needs(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil

    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(ConfigError, match="needs SLURM's sbatch and squeue on the PATH"):
        launcher_config({"_target_": "runner.launchers.slurm.SlurmLauncher"})


def test_bad_sbatch_extra_is_refused() -> None:
    with pytest.raises(ConfigError, match="launcher.sbatch_extra: 'exclusive'"):
        _render(Path("/s/t"), sbatch_extra=["exclusive"])


# ------------------------------------------------------------------ verdicts on dead jobs

def _slurm_run(tmp_path: Path, sub_id: str, index: int, created: float,
               job_id: str | None, **launcher: object) -> tuple[RunPaths, Lease]:
    sweep = tmp_path / "sweep"
    paths = SweepPaths(sweep).run(f"{sub_id}-r{index}")
    paths.root.mkdir(parents=True)
    create_unhatched(paths)
    sub_paths = SweepPaths(sweep).submission(sub_id)
    sub_paths.logs.mkdir(parents=True, exist_ok=True)
    sub_paths.log(index).write_text("=== runner: job\nTraceback: boom in setup\n")
    submissions.write(sub_paths, submissions.Submission(sub_id, f"toy.{sub_id}", created, 1,
                                                        job_id))
    lease = claim(paths, frozenset({State.UNHATCHED}),
                  {"backend": "slurm", "submission": sub_id, "index": index, **launcher})
    assert lease is not None
    return paths, lease


def _squeue(monkeypatch: pytest.MonkeyPatch, jobs: list[JobInfo] | Exception,
            restarts: dict[str, int] | None = None) -> list[list[str]]:
    calls: list[list[str]] = []
    monkeypatch.setattr(commands, "restarts", lambda job_id: (restarts or {}).get(job_id, 0))

    def query(names: object) -> dict[tuple[str, int], JobInfo]:
        calls.append(sorted(names))  # type: ignore[call-overload]
        if isinstance(jobs, Exception):
            raise jobs
        return {(j.array_job_id, j.index): j for j in jobs}

    monkeypatch.setattr(commands, "query", query)
    return calls


def test_verdicts_from_slurm_states(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    now = time.time()
    items = [
        _slurm_run(tmp_path, "s1", 0, now, "40"),                                 # running
        _slurm_run(tmp_path, "s1", 1, now, "40"),                                 # cancelled
        _slurm_run(tmp_path, "s1", 2, now, "40", requeues=1, max_requeue=3),      # timeout
        _slurm_run(tmp_path, "s1", 3, now, "40", requeues=3, max_requeue=3),      # timeout
        _slurm_run(tmp_path, "s1", 4, now, "40"),                                 # OOM
        _slurm_run(tmp_path, "s1", 5, now, "40"),                                 # FAILED
        _slurm_run(tmp_path, "s1", 6, now, "40"),                                 # forgotten
        _slurm_run(tmp_path, "s2", 0, now - 3600, None),     # killed before sbatch answered
        _slurm_run(tmp_path, "s3", 0, now, None),            # sbatch may still be answering
        _slurm_run(tmp_path, "s4", 0, now - 3600, None),     # found again by its job name
    ]
    calls = _squeue(monkeypatch, [
        JobInfo("40", 0, "41", "RUNNING", "None", "vm", "toy.s1"),
        JobInfo("40", 1, "42", "CANCELLED", "None", "vm", "toy.s1"),
        JobInfo("40", 2, "43", "TIMEOUT", "None", "vm", "toy.s1"),
        JobInfo("40", 3, "44", "TIMEOUT", "None", "vm", "toy.s1"),
        JobInfo("40", 4, "45", "OUT_OF_MEMORY", "None", "vm", "toy.s1"),
        JobInfo("40", 5, "46", "FAILED", "None", "vm", "toy.s1"),
        JobInfo("50", 0, "50", "PENDING", "Priority", "", "toy.s4"),
    ])
    verdicts = judge(items, stale_after_s=120, now=now)
    assert len(calls) == 1, "one squeue call for the whole sweep"
    notes = [note for _, note in observe(items, stale_after_s=120, now=now)]
    assert notes[0] == "RUNNING on vm" and notes[9] == "PENDING (Priority)"
    assert notes[1] == "CANCELLED" and notes[6] == "" and notes[7] == ""
    assert calls[0] == ["toy.s1", "toy.s2", "toy.s3", "toy.s4"]
    got = [(v.state.value, v.reason) if v else None for v in verdicts]
    assert got[0] is None and got[8] is None and got[9] is None
    assert got[1] == ("INTERRUPTED", "SLURM job 40_1 was cancelled")
    assert got[2][0] == "INTERRUPTED" and "time limit" in got[2][1]
    assert got[3][0] == "CRASHED" and "launcher.max_requeue=3 used up" in got[3][1]
    assert got[4][0] == "CRASHED" and "launcher.mem_gb" in got[4][1]
    assert got[5][0] == "CRASHED" and "FAILED" in got[5][1]
    assert "boom in setup" in verdicts[5].details  # type: ignore[union-attr]
    assert got[6] == ("INTERRUPTED", "SLURM job 40_6 is no longer known to SLURM")
    assert got[7][0] == "INTERRUPTED" and "never reached SLURM" in got[7][1]


def test_a_job_slurm_requeued_on_its_own_is_interrupted_when_its_restart_fails(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A lost node: SLURM requeues the job, and the restart fails before the worker runs (on a
    real cluster "Job credential revoked"). More restarts than runner's own requeues: SLURM did
    it, so the run was cut off, not crashed; a plain resume runs it again."""
    now = time.time()
    items = [_slurm_run(tmp_path, "s1", 0, now, "40"),
             _slurm_run(tmp_path, "s1", 1, now, "40", requeues=1, max_requeue=3),
             _slurm_run(tmp_path, "s1", 2, now, "40")]
    _squeue(monkeypatch, [JobInfo("40", i, str(41 + i), "FAILED", "None", "vm", "toy.s1")
                          for i in range(3)], restarts={"40_0": 1, "40_1": 1, "40_2": 0})
    got = [(v.state.value, v.reason) if v else None
           for v in judge(items, stale_after_s=120, now=now)]
    assert got[0] == ("INTERRUPTED", "SLURM job 40_0 was requeued by SLURM (1 time(s): a lost "
                                     "node or preemption) and its restart ended FAILED before "
                                     "the worker ran")
    assert got[1][0] == "CRASHED"  # the one restart was runner's own requeue
    assert got[2][0] == "CRASHED" and "without the worker recording a result" in got[2][1]


@pytest.mark.parametrize("max_queued", [None, 2])
def test_under_max_queued_a_run_keeps_its_place_until_its_task_leaves_the_queue(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, max_queued: int | None) -> None:
    """The worker writes COMPLETED a moment before its array task leaves SLURM's queue (the
    process exits, the epilogue runs). Under launcher.max_queued the run's place is freed only
    once squeue no longer holds the task, so the next submission never makes the queue hold
    more than max_queued of the sweep's tasks; without it, the run ends at once."""
    from runner.launchers.slurm import SlurmLauncher, SlurmRunHandle
    from runner.storage.store import RunRef, SweepStore

    now = time.time()
    handles = []
    for index in range(3):
        paths, lease = _slurm_run(tmp_path, "s1", index, now, "40", array_job_id="40")
        finish(paths, lease.token, State.COMPLETED, {"summary": {}})
        run = RunRef(f"s1-r{index}", paths.root.name, {}, str(paths.root))
        handles.append(SlurmRunHandle(run, lease, index))
    launcher = SlurmLauncher(SweepStore(tmp_path / "sweep"),
                             SlurmLauncherConf(max_queued=max_queued), None)
    states = {0: "RUNNING", 1: "COMPLETING", 2: "COMPLETED"}
    calls = _squeue(monkeypatch, [JobInfo("40", i, str(41 + i), state, "None", "vm", "toy.s1")
                                  for i, state in states.items()])
    launcher._poll(handles)
    if max_queued is None:
        assert [h.code for h in handles] == [0, 0, 0] and calls == []
        return
    assert [h.code for h in handles] == [None, None, 0] and calls == [["toy.s1"]]
    _squeue(monkeypatch, [JobInfo("40", i, str(41 + i), "COMPLETED", "None", "vm", "toy.s1")
                          for i in range(2)])
    launcher._poll(handles[:2])
    assert [h.code for h in handles] == [0, 0, 0]


def test_a_run_that_ends_between_its_flags_read_and_squeues_answer_is_not_a_node_fault(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A short run: the watcher reads its FLAG (RUNNING), the worker records COMPLETED and the
    task leaves the queue, then squeue says the task ended. The worker's record stands, the run
    ends as it completed, and its node is not counted as failing it (before, each such run
    counted as a machine fault of its node: three in a row left the only node out of a
    10,000-run sweep, which then could not submit at all)."""
    from runner.launchers import slurm
    from runner.launchers.slurm import SlurmLauncher, SlurmRunHandle
    from runner.storage.store import RunRef, SweepStore

    now = time.time()
    handles = []
    for index in range(3):
        paths, lease = _slurm_run(tmp_path, "s1", index, now, "40", array_job_id="40",
                                  node="vm")
        lease = update_lease(paths, lease.token, launcher={"node": "vm"})
        assert lease is not None
        handles.append(SlurmRunHandle(RunRef(f"s1-r{index}", paths.root.name, {},
                                             str(paths.root)), lease, index))
    _squeue(monkeypatch, [JobInfo("40", i, str(41 + i), "COMPLETED", "None", "vm", "toy.s1")
                          for i in range(3)])
    judge = slurm.judge

    def late(items: list, now: float) -> list:  # the workers end while squeue is asked
        for paths, lease in items:
            finish(paths, lease.token, State.COMPLETED, {"summary": {"acc": 1.0}})
        return judge(items, now)

    monkeypatch.setattr(slurm, "judge", late)
    launcher = SlurmLauncher(SweepStore(tmp_path / "sweep"),
                             SlurmLauncherConf(bad_node_after=1), None)
    launcher._poll(handles)
    assert [h.code for h in handles] == [0, 0, 0]
    assert [read_state(h.run.paths).state for h in handles] == [State.COMPLETED] * 3
    assert launcher.bad_nodes.excluded() == [] and launcher.news() == []


def test_without_slurm_nothing_is_declared_dead(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    items = [_slurm_run(tmp_path, "s1", 0, 0.0, "40")]
    _squeue(monkeypatch, SlurmError("'squeue' is not installed here"))
    assert judge(items, stale_after_s=0, now=time.time()) == [None]


# ------------------------------------------------------------------ giving a claim back

def test_unclaim_restores_the_state_before_the_claim(tmp_path: Path) -> None:
    paths = RunPaths(tmp_path / "run")
    paths.root.mkdir()
    create_unhatched(paths)
    lease = claim(paths, frozenset({State.UNHATCHED}))
    assert lease is not None and unclaim(paths, lease.token)
    record = read_state(paths)
    assert (record.state, record.attempt) == (State.UNHATCHED, 0)
    assert sorted(p.name for p in paths.root.iterdir()) == [".lock", "UNHATCHED", "attempts"]
    # an INTERRUPTED run comes back INTERRUPTED, with its reason
    lease = claim(paths, frozenset({State.UNHATCHED}))
    assert lease is not None
    finish(paths, lease.token, State.INTERRUPTED, {"reason": "received SIGTERM"})
    lease = claim(paths, frozenset({State.INTERRUPTED}))
    assert lease is not None and lease.attempt == 2
    assert unclaim(paths, lease.token)
    record = read_state(paths)
    assert (record.state, record.attempt) == (State.INTERRUPTED, 1)
    assert record.data["reason"] == "received SIGTERM"
    assert not unclaim(paths, lease.token)  # no longer ours: nothing happens


def test_unclaim_killed_between_its_two_steps_leaves_a_readable_state(tmp_path: Path) -> None:
    """Restore done, RUNNING not yet removed: the RUNNING lease still wins, and recovery will
    find it dead; no state is lost or invented."""
    paths = RunPaths(tmp_path / "run")
    paths.root.mkdir()
    create_unhatched(paths)
    lease = claim(paths, frozenset({State.UNHATCHED}))
    assert lease is not None
    os.replace(paths.attempts / "0.UNHATCHED", paths.root / "UNHATCHED")  # step 1 only
    record = read_state(paths)
    assert record.state is State.RUNNING and record.data["token"] == lease.token
    assert json.loads((paths.root / "UNHATCHED").read_text())["attempt"] == 0


def test_a_stop_signal_during_sbatch_waits_until_the_job_id_is_recorded(
        project: Project) -> None:
    """SIGTERM (SLURM requeueing a sweep loop job, a user's kill) while sbatch answers: the
    submission ends first, its job id is recorded in the submission and every lease, and only
    then does the runner stop (leaving the runs to the cluster). Cut off mid-sbatch, the job id
    was lost and the runs were found interrupted a minute later and run again."""
    bin_dir = project.root / "bin"
    bin_dir.mkdir()
    fakes = {"sbatch": 'kill -TERM "$PPID"; sleep 0.5; echo 4242',
             "squeue": "exit 0", "scontrol": "echo MaxArraySize = 1001"}
    for name, body in fakes.items():
        (bin_dir / name).write_text(f"#!/bin/sh\n{body}\n")
        (bin_dir / name).chmod(0o755)
    env = {**project.env(), "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    proc = subprocess.run(project.args("launcher=slurm", "task.lr=0.1,0.2"), cwd=project.root,
                          env=env, text=True, capture_output=True, timeout=60)
    said = proc.stdout + proc.stderr
    assert "interrupted" in said and "stay with the cluster" in said, said
    assert "Traceback" not in said, said
    root = project.sweep_dir()
    [sub] = submissions.all_submissions(root)
    assert sub.job_id == "4242", sub
    for run in sorted((root / "runs").iterdir()):
        record = read_state(RunPaths(run))
        assert record.state is State.RUNNING, run
        assert record.lease.launcher["array_job_id"] == "4242", record.lease.launcher


def test_a_node_is_left_out_after_k_machine_failures_in_a_row(tmp_path: Path) -> None:
    """Only failures of the machine count (class node, a node failure), K in a row on one node;
    a run completing there ends the streak, a task's own failure neither counts nor ends it.
    The node is named once; bad_node_after=0 uses it again and takes the notice back."""
    from runner.slurm.bad_nodes import BadNodes
    from runner.storage import notices

    lost = {"reason": "SLURM job 7_1 ended FAILED without the worker recording a result"}
    own = {"reason": "ValueError: toy failure"}

    def on(node: str, data: dict[str, object]) -> dict[str, object]:
        return {**data, "launcher": json.dumps({"node": node})}  # (as a CRASH.txt holds it)

    bad = BadNodes(tmp_path, after=3)
    bad.saw("a", State.CRASHED, on("n2", lost))
    bad.saw("b", State.CRASHED, on("n2", lost))
    bad.saw("c", State.COMPLETED, {"launcher": {"node": "n2"}})  # the streak ends
    bad.saw("d", State.CRASHED, on("n2", lost))
    bad.saw("e", State.CRASHED, on("n2", own))  # the task's fault: says nothing of n2
    bad.saw("f", State.INTERRUPTED, {"reason": "SLURM job 7_5 was cancelled",
                                     "launcher": {"node": "n2"}})
    bad.saw("g", State.CRASHED, on("n1", lost))
    bad.saw("h", State.INTERRUPTED, {"reason": "found interrupted: SLURM job 7_6 ended with a "
                                               "node failure", "launcher": {"node": "n2"}})
    assert bad.excluded() == [] and bad.news == []
    bad.saw("i", State.CRASHED, on("n2", lost))
    assert bad.excluded() == ["n2"]
    assert len(bad.news) == 1 and "node n2 is left out" in bad.news[0]
    assert "3 runs in a row" in bad.news[0] and "d, h, i" in bad.news[0]
    bad.saw("j", State.CRASHED, on("n2", lost))
    assert len(bad.news) == 1  # said once
    assert BadNodes(tmp_path, after=3).excluded() == ["n2"]  # a resume keeps it out
    assert list(notices.read(tmp_path)) == ["slurm.bad_node:n2"]
    assert BadNodes(tmp_path, after=0).excluded() == []
    assert notices.read(tmp_path) == {}


def test_pool_script_golden() -> None:
    """launcher.runs_per_job=3: an array of pools, each with three runs' CPUs, GPUs and memory,
    requeued on the time-limit warning, running runner's pool loop on the sweep."""
    from runner.slurm.script import render_pool_script

    conf = SlurmLauncherConf(runs_per_job=3, cpus_per_run=2, gpus_per_run=1, mem_gb=1.5,
                             partition="gpu", sbatch_extra=["--exclusive"])
    root = Path("/data/sweeps/toy")
    paths = SweepPaths(root).submission("pool-20261123-080000-abcdef")
    _check_golden("pool.sbatch", render_pool_script(
        conf, job_name=job_name("toy", "pool-20261123-080000-abcdef"), pools=4, paths=paths,
        sweep_root=str(root), cwd="/data/sweeps", python="/opt/venv/bin/python", env={}))


def test_pools_for_more_runs_than_max_array_size_fit_in_one_array(project: Project) -> None:
    """10,000 runs in pools of 4 want 2,500 pools: one array of them would be refused by any
    cluster with the default MaxArraySize (1001); the array stays below it and the pools take
    the rest of the runs as their slots free (more are submitted later if some end)."""
    bin_dir = project.root / "bin"
    bin_dir.mkdir()
    scripts = project.root / "scripts"
    scripts.mkdir()
    fakes = {"sbatch": f'for a; do last="$a"; done; cp "$last" {scripts}/; echo 4242',
             "squeue": "exit 0", "scontrol": "echo MaxArraySize = 4"}
    for name, body in fakes.items():
        (bin_dir / name).write_text(f"#!/bin/sh\n{body}\n")
        (bin_dir / name).chmod(0o755)
    env = {**project.env(), "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    proc = subprocess.run(project.args("launcher=slurm", "launcher.runs_per_job=2",
                                       "launcher.wait=false", "seed=range(20)"),
                          cwd=project.root, env=env, text=True, capture_output=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    [script] = scripts.iterdir()
    assert "#SBATCH --array=0-3\n" in script.read_text(), script.read_text()
    assert "submitted 4 pool(s) of 2 slot(s)" in proc.stdout + proc.stderr


POOL_KILL_HOOKS = '''
import os, signal
from pathlib import Path

POINT = os.environ.get("KILL_POINT")
ONCE = Path(os.environ.get("KILL_ONCE", "/nonexistent"))
GROUP = Path(os.environ.get("KILL_GROUP", "/nonexistent"))


def _first_time():
    try:
        os.close(os.open(ONCE, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except OSError:
        return False
    return True


def _kill_the_job():  # as SLURM ends a job: every process of the pool at once
    os.killpg(int(GROUP.read_text()), signal.SIGKILL)


if POINT:
    from runner.storage import state
    _claim, _finish, calls = state.claim, state.finish, {"n": 0}

    def claim(*a, **k):
        lease = _claim(*a, **k)
        calls["n"] += 1
        if POINT == "claimed" and lease is not None and calls["n"] == 3 and _first_time():
            _kill_the_job()  # a run leased to the pool, not started
        return lease

    def finish(paths, token, st, *a, **k):
        if POINT == "finishing" and st is state.State.COMPLETED and _first_time():
            state.write_terminal(paths, st, 1, {"summary": {}})  # the end written, the lease
            _kill_the_job()                                      # not yet removed
        return _finish(paths, token, st, *a, **k)

    state.claim, state.finish = claim, finish
    import runner.scheduling.scheduler as scheduler
    scheduler.claim = claim
'''


@pytest.mark.parametrize("point", ["claimed", "running", "finishing"])
def test_a_pool_killed_at_any_moment_loses_and_repeats_no_run(project: Project,
                                                              point: str) -> None:
    """A pool's allocation ends (SIGKILL of every process of the job: its runner, its fork
    server, its runs) right after it leased a run it had not started, while its runs run, or
    between a run's end being written and its lease removed. The next pool finds the dead
    pool's runs INTERRUPTED (SLURM no longer knows its job) and runs them; every run completes,
    and no run recorded as ended runs again."""
    bin_dir = project.root / "bin"
    bin_dir.mkdir()
    for name, body in {"sbatch": "echo 4242", "squeue": "exit 0",
                       "scontrol": "echo MaxArraySize = 1001"}.items():
        (bin_dir / name).write_text(f"#!/bin/sh\n{body}\n")
        (bin_dir / name).chmod(0o755)
    env = {**project.env(), "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    command = project.args("launcher=slurm", "launcher.runs_per_job=2", "launcher.wait=false",
                           "seed=range(6)", "task.steps=10", "task.sleep=0.5")
    submit = subprocess.run(command, cwd=project.root, env=env, text=True,
                            capture_output=True, timeout=60)
    assert submit.returncode == 0, submit.stdout + submit.stderr
    sweep = project.sweep_dir()
    [sub] = submissions.all_submissions(sweep)
    from runner.results.status import scan
    from runner.storage.store import SweepStore

    hooks = project.root / "hooks"
    hooks.mkdir()
    (hooks / "sitecustomize.py").write_text(POOL_KILL_HOOKS)

    def pool(task: int, **more: str) -> subprocess.Popen[str]:
        slurm = {"SLURM_JOB_ID": str(4242 + task), "SLURM_ARRAY_JOB_ID": "4242",
                 "SLURM_ARRAY_TASK_ID": str(task), "SLURM_JOB_NAME": sub.job_name,
                 "SLURMD_NODENAME": "node1"}
        return subprocess.Popen(
            [*command[:1], "-m", "runner.slurm.pool", str(sweep), "--slots", "2"],
            cwd=project.root, env={**env, **slurm, **more,
                                   "PYTHONPATH": f"{hooks}{os.pathsep}{env['PYTHONPATH']}"},
            text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            start_new_session=True)

    group = project.root / "group"
    first = pool(0, KILL_POINT=point, KILL_ONCE=str(project.root / "killed"),
                 KILL_GROUP=str(group))
    group.write_text(str(first.pid))
    if point == "running":
        from conftest import wait_for

        assert wait_for(lambda: len(project.markers_of("start")) >= 3, 60)
        os.killpg(first.pid, 9)
    out, _ = first.communicate(timeout=60)
    assert first.returncode == -9, out  # (killed, not ended)
    assert point == "running" or (project.root / "killed").exists(), out
    ended = {r.ref.id: r.record.attempt for r in scan(SweepStore(sweep))
             if r.state == "COMPLETED" and r.record is not None}
    second = pool(1)
    out, _ = second.communicate(timeout=120)
    assert second.returncode == 0, out
    # (read here: `status` would ask the cluster's squeue, not the stand-in)
    runs = [{"id": r.ref.id, "state": r.state, "attempt": r.record.attempt if r.record else 0}
            for r in scan(SweepStore(sweep))]
    assert [r["state"] for r in runs] == ["COMPLETED"] * 6, out
    assert all(r["attempt"] == ended[r["id"]] for r in runs if r["id"] in ended)
    if point != "finishing":  # (there, the pool's other run may have ended first)
        assert any(r["attempt"] == 2 for r in runs), runs  # the dead pool's runs ran again
    done = project.markers_of("done")
    assert sorted(done) == sorted(r["id"] for r in runs)
    # a run that was recorded as ended never ran again; one that ran again may have returned
    # in its first attempt just before the kill, before its end was written (the one write
    # that a kill can cut off: README, "What is guaranteed")
    assert all(done[r["id"]] == 1 for r in runs if r["attempt"] == 1), (done, runs)
    assert all(done[r["id"]] <= 2 for r in runs), (done, runs)


def test_the_sites_limit_on_queued_jobs_is_read_from_accounting(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without launcher.max_queued, the smaller of the association's MaxSubmitJobs and the
    QOS's MaxSubmitJobsPerUser (as sacctmgr prints them; read once) caps the queue, and the
    sweep says which; launcher.max_queued wins; no accounting (sacctmgr fails) means no cap.
    (Checked against a cluster with slurmdbd: MaxSubmitJobs=3 kept 3 of 9 tasks queued.)"""
    from runner.launchers.slurm import SlurmLauncher
    from runner.storage.store import SweepStore

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "calls"
    (bin_dir / "sacctmgr").write_text(f"""#!/bin/sh
echo "$*" >> {calls}
case "$*" in
  *"show assoc"*) [ -f {tmp_path}/down ] && {{ echo "accounting disabled" >&2; exit 1; }}
                  printf 'lab|40|high\\nother||\\n' ;;
  *"name=high"*) echo '12|' ;;
  *"name=normal"*) echo '|' ;;
  *"name=gpu"*) echo '5|' ;;
esac
""")
    (bin_dir / "sacctmgr").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    assert commands.submit_limit("ada") == (12, "MaxSubmitJobsPerUser of QOS high")
    assert commands.submit_limit("ada", account="lab", qos="normal") == (
        40, "MaxSubmitJobs of the association of ada with account lab")
    assert commands.submit_limit("ada", qos="gpu")[0] == 5  # type: ignore[index]

    def launcher(**conf: object) -> SlurmLauncher:
        return SlurmLauncher(SweepStore(tmp_path / "sweep"), SlurmLauncherConf(**conf), None)

    calls.write_text("")
    site = launcher()
    assert site.max_parallel == 12 and site.max_parallel == 12
    assert len(calls.read_text().splitlines()) == 3  # read once: an association, two QOS
    assert "at most 12 of the sweep's jobs are queued at once" in site.news()[0]
    assert launcher(max_queued=100).max_parallel == 100
    (tmp_path / "down").touch()
    assert commands.submit_limit("ada") is None
    free = launcher()
    assert free.max_parallel > 10**6 and free.news() == []


def test_an_sbatch_still_retrying_a_full_queue_when_its_time_runs_out_is_refused_for_now(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """At the cluster's MaxJobCount, sbatch does not fail: it sleeps and tries again for two
    minutes, longer than runner waits for it. What it said so far makes that a refusal that
    passes with time (the runs wait and are submitted later), not a failed sweep; a command
    that said nothing is still a controller that did not answer. (Before, both were failures
    that asked whether slurmctld was up.)"""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "sbatch").write_text(
        "#!/bin/sh\necho 'sbatch: error: Slurm temporarily unable to accept job, sleeping and "
        "retrying.' >&2\nexec sleep 30\n")
    (bin_dir / "squeue").write_text("#!/bin/sh\nexec sleep 30\n")
    for tool in ("sbatch", "squeue"):
        (bin_dir / tool).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    with pytest.raises(SlurmError) as full:
        commands._call(["sbatch", "--parsable", "job.sbatch"], timeout=0.5)
    assert str(full.value) == ("'sbatch --parsable ...' did not answer within 0.5s; it said: "
                               "sbatch: error: Slurm temporarily unable to accept job, sleeping "
                               "and retrying.")
    assert commands.refused_for_now(full.value)
    with pytest.raises(SlurmError) as silent:
        commands._call(["squeue", "-h"], timeout=0.5)
    assert "(is slurmctld up?)" in str(silent.value)
    assert not commands.refused_for_now(silent.value)


def test_pools_refused_for_a_limit_wait_and_go_again_in_smaller_arrays(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """launcher.runs_per_job: an array of pools refused for a limit is not a failure: the
    launcher holds further submissions, says so, and offers at most half as many pools next
    (an array a limit refuses would be refused for ever at that size); the refusal is kept
    with the submission. A refusal no wait can fix still raises."""
    from runner.launchers.slurm import SlurmLauncher
    from runner.storage.store import SweepStore

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    answers = tmp_path / "answers"
    answers.write_text("limit\nok\n")
    (bin_dir / "sbatch").write_text(f"""#!/bin/sh
answer=$(head -n1 {answers}); sed -i 1d {answers}
grep -o 'array=[^ ]*' "$2" >> {tmp_path}/arrays
case "$answer" in
  limit) echo "sbatch: error: QOSMaxSubmitJobPerUserLimit" >&2
         echo "sbatch: error: Batch job submission failed: Job violates accounting/QOS policy" >&2
         exit 1 ;;
  bad) echo "sbatch: error: invalid partition specified: nope" >&2; exit 1 ;;
  busy) echo "sbatch: error: Batch job submission failed: Socket timed out on send/recv" >&2
        exit 1 ;;
  *) echo 77 ;;
esac
""")
    (bin_dir / "sbatch").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    _squeue(monkeypatch, [])
    monkeypatch.setattr(commands, "max_array_size", lambda: 1001)
    sweep = tmp_path / "sweep"
    (sweep / "runs").mkdir(parents=True)
    store = SweepStore(sweep)
    monkeypatch.setattr(SweepStore, "manifest", property(lambda self: {"name": "toy"}))
    launcher = SlurmLauncher(store, SlurmLauncherConf(runs_per_job=2, max_queued=50), None)
    said = launcher.hand_over(8, 0)
    assert said.startswith("not submitted now: sbatch failed: sbatch: error: "
                           "QOSMaxSubmitJobPerUserLimit"), said
    assert "next try in" in said and launcher.held_s() > 0
    assert launcher.news() == ["SLURM refused 4 of the sweep's jobs at once for a limit: at "
                               "most 2 per submission from now on"]
    assert launcher.hand_over(8, 0) == ""  # (held)
    launcher._held_until = 0.0
    said = launcher.hand_over(8, 0)
    assert said.startswith("submitted 2 pool(s) of 2 slot(s) as job 77"), said
    assert (tmp_path / "arrays").read_text().split() == ["array=0-3", "array=0-1"]
    kept = [json.loads((d / "submission.json").read_text())
            for d in (sweep / "slurm").iterdir()]
    assert sorted(bool(k.get("error")) for k in kept) == [False, True]
    answers.write_text("bad\n")
    with pytest.raises(SlurmError, match="invalid partition"):
        launcher.hand_over(8, 0)
    # a controller too busy to answer is waited out with the same array: not a limit
    busy = SlurmLauncher(store, SlurmLauncherConf(runs_per_job=2, max_queued=50), None)
    answers.write_text("busy\nok\n")
    (tmp_path / "arrays").write_text("")
    said = busy.hand_over(8, 0)
    assert said.startswith("not submitted now: sbatch failed: sbatch: error: Batch job "
                           "submission failed: Socket timed out"), said
    assert busy.held_s() > 0 and busy.news() == []
    busy._held_until = 0.0
    assert busy.hand_over(8, 0).startswith("submitted 4 pool(s) of 2 slot(s) as job 77")
    assert (tmp_path / "arrays").read_text().split() == ["array=0-3", "array=0-3"]


def test_a_spent_failure_budget_takes_the_queued_runs_back_from_slurm(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Once no new run may start (runner.max_failures, failure_streak, ...), the array tasks
    SLURM still queues are cancelled with --state=PENDING (SLURM's own check: a task that
    started meanwhile goes on), and the next poll ends those runs INTERRUPTED for the next
    launch; a running one is left to end. Before, every run of an array went on crashing."""
    from runner.launchers.slurm import SlurmLauncher, SlurmRunHandle
    from runner.storage.store import RunRef, SweepStore

    now = time.time()
    items = [_slurm_run(tmp_path, "s1", i, now, "40", array_job_id="40") for i in range(3)]
    handles = [SlurmRunHandle(RunRef(f"r{i}", p.root.name, {}, str(p.root)), lease, i)
               for i, (p, lease) in enumerate(items)]
    monkeypatch.setattr(SweepStore, "manifest", property(lambda self: {"name": "toy"}))
    monkeypatch.setattr(commands, "max_array_size", lambda: 1001)
    launcher = SlurmLauncher(SweepStore(tmp_path / "sweep"), SlurmLauncherConf(), None)
    cancelled: list[list[str]] = []
    monkeypatch.setattr(commands, "scancel_pending", lambda ids: cancelled.append(sorted(ids)))
    _squeue(monkeypatch, [JobInfo("40", 0, "41", "RUNNING", "None", "vm", "toy.s1"),
                          JobInfo("40", 1, "42", "PENDING", "Resources", "", "toy.s1"),
                          JobInfo("40", 2, "43", "PENDING", "JobArrayTaskLimit", "", "toy.s1")])
    taken = launcher.withdraw(list(handles))
    assert taken == handles[1:] and cancelled == [["40_1", "40_2"]]
    _squeue(monkeypatch, [JobInfo("40", 0, "41", "RUNNING", "None", "vm", "toy.s1"),
                          JobInfo("40", 1, "42", "CANCELLED", "None", "", "toy.s1"),
                          JobInfo("40", 2, "43", "CANCELLED", "None", "", "toy.s1")])
    launcher._poll(handles)
    assert [h.code for h in handles] == [None, 0, 0]
    ended = [read_state(p) for p, _ in items]
    assert [r.state for r in ended] == [State.RUNNING, State.INTERRUPTED, State.INTERRUPTED]
    assert "was cancelled" in ended[1].data["reason"]
    monkeypatch.setattr(commands, "query", lambda names: (_ for _ in ()).throw(  # (no answer)
        SlurmError("squeue failed")))
    assert launcher.withdraw([handles[0]]) == []
