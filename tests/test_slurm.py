"""The SLURM launcher against a real cluster of two nodes on localhost (slurmctld, munge and one
slurmd per node, each node its own hostname and address), started by ``tests/slurm/cluster-up.sh``
when the tests run as root."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from conftest import Project, wait_for
from runner.storage.state import dict_field, read_flag

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

CLUSTER = Path(__file__).parent / "slurm"


def _sinfo_works() -> bool:
    try:
        return subprocess.run(["sinfo", "-h"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@pytest.fixture(scope="module")
def cluster() -> Any:
    started = False
    if os.geteuid() == 0 and shutil.which("apt-get"):
        proc = subprocess.run(["bash", str(CLUSTER / "cluster-up.sh")], capture_output=True,
                              text=True, timeout=900, stdin=subprocess.DEVNULL,
                              env={**os.environ, "SLURM_ACCOUNTING": "1", "SLURM_CPUS": "2",
                                   "SLURM_NODES": "2"})
        assert proc.returncode == 0, f"cluster-up.sh failed:\n{proc.stdout}\n{proc.stderr}"
        started = True
    elif not _sinfo_works():
        pytest.fail("the tests marked slurm need a SLURM cluster: run them as root on Debian "
                    "(tests/slurm/cluster-up.sh installs and starts one) or deselect them with "
                    "-m 'not slurm'")
    yield
    if started:
        subprocess.run(["bash", str(CLUSTER / "cluster-down.sh")], capture_output=True,
                       timeout=120, stdin=subprocess.DEVNULL)


SLURM = ("launcher=slurm", "launcher.poll_s=0.5")


def rows(project: Project, sweep: Path | None = None) -> dict[str, dict[str, Any]]:
    return {r["id"]: r for r in project.status(sweep)["runs"]}


def submission_dirs(sweep: Path) -> list[Path]:
    return sorted(p for p in (sweep / "slurm").iterdir() if p.is_dir())


def terminal_records(sweep: Path) -> list[dict[str, Any]]:
    out = []
    for run in (sweep / "runs").iterdir():
        flag = run / "COMPLETED"
        if flag.exists():
            out.append(json.loads(flag.read_text()))
    return out


def max_overlap(records: list[dict[str, Any]]) -> int:
    events = sorted([(r["time"] - r["duration_s"], 1) for r in records]
                    + [(r["time"], -1) for r in records])
    level = peak = 0
    for _, step in events:
        level += step
        peak = max(peak, level)
    return peak


def rows_so_far(project: Project) -> dict[str, dict[str, Any]]:
    """Like ``rows``, but empty while the sweep directory does not exist yet."""
    try:
        return rows(project)
    except (AssertionError, FileNotFoundError):
        return {}


def leased_jobs(project: Project) -> dict[str, dict[str, Any]]:
    """run id -> lease launcher facts, for RUNNING runs whose job id is known."""
    return {rid: r["lease"]["launcher"] for rid, r in rows_so_far(project).items()
            if r["state"] == "RUNNING" and r["lease"]["launcher"].get("job")}


def release(project: Project) -> None:
    """Let the runs in mode wait_file finish."""
    project.markers.mkdir(parents=True, exist_ok=True)
    (project.markers / "release").touch()


def resume_until_reattached(project: Project, sweep: Path, runs: int) -> str:
    """``resume`` the sweep; let the runs finish only once it has re-attached to them."""
    resume = subprocess.Popen([*project.args()[:3], "resume", str(sweep)], cwd=project.root,
                              env=project.env(), text=True, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT)
    assert resume.stdout is not None
    lines = []
    for line in resume.stdout:  # the runs wait for release: this line comes first
        lines.append(line)
        if "re-attached to" in line:
            assert f"re-attached to {runs} run(s)" in line
            break
    release(project)
    rest, _ = resume.communicate(timeout=120)
    out = "".join(lines) + rest
    assert resume.returncode == 0, out
    assert "re-attached to" in out
    return out


def running_on_node(project: Project) -> dict[str, dict[str, Any]]:
    """run id -> lease, for runs whose worker has started on the node."""
    return {rid: r["lease"] for rid, r in rows_so_far(project).items()
            if r["state"] == "RUNNING" and r["lease"]["phase"] == "running"}


def test_array_sweep_completes_and_respects_max_parallel(cluster: Any, time_limited: Any,
                                                          project: Project) -> None:
    proc = project.run("+sweep=grid", "task.lr=0.1,0.2,0.3", "seed=1,2", "task.sleep=1.5",
                       *SLURM, "launcher.max_parallel=2", timeout=180)
    assert proc.returncode == 0, proc.stderr
    sweep = project.sweep_dir()
    states = {r["state"] for r in rows(project).values()}
    assert states == {"COMPLETED"}
    (sub,) = submission_dirs(sweep)  # one sbatch call for the whole sweep
    script = (sub / "job.sbatch").read_text()
    assert "#SBATCH --array=0-5%2" in script
    records = terminal_records(sweep)
    jobs = {r["launcher"]["array_job_id"] for r in records}
    assert len(jobs) == 1 and json.loads((sub / "submission.json").read_text())["job_id"] in jobs
    assert sorted(r["launcher"]["index"] for r in records) == list(range(6))
    # the cluster has 4 CPUs: without the %2 cap, 4 would have run at once
    assert max_overlap(records) <= 2
    assert project.markers_of("done") == {rid: 1 for rid in rows(project)}


def test_max_queued_keeps_at_most_n_runs_in_the_queue_and_submits_more_as_runs_end(
        cluster: Any, project: Project) -> None:
    """launcher.max_queued=2: never more than 2 of the sweep's array tasks pending or running
    (sampled from squeue while it runs), more submitted as runs end, every run done once."""
    proc = project.popen("+sweep=grid", "task.lr=0.1,0.2,0.3", "seed=1,2", "task.sleep=1.0",
                         *SLURM, "launcher.max_queued=2", "runner.name=queued")
    peak, samples = 0, 0
    while proc.poll() is None:
        out = subprocess.run(["squeue", "-h", "-r", "-t", "PENDING,RUNNING", "-o", "%j"],
                             capture_output=True, text=True).stdout.split()
        mine = [name for name in out if name.startswith("queued.")]  # (not a job's epilogue)
        peak, samples = max(peak, len(mine)), samples + 1
        time.sleep(0.1)
    output, _ = proc.communicate()
    assert proc.returncode == 0, output
    assert samples > 10 and 1 <= peak <= 2, (peak, samples)
    sweep = project.root / "outputs" / "queued"
    assert len(submission_dirs(sweep)) >= 3  # 2 at first, the rest as slots freed
    assert {r["state"] for r in rows(project, sweep).values()} == {"COMPLETED"}
    assert project.markers_of("done") == {rid: 1 for rid in rows(project, sweep)}


def _sacctmgr(*args: str, check: bool = True) -> None:
    proc = subprocess.run(["sacctmgr", "-i", *args], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 or not check, (args, proc.stdout, proc.stderr)


@pytest.fixture
def capped_qos(cluster: Any) -> Any:
    """A QOS of the cluster's accounting that lets a user queue 2 jobs at most (array tasks
    count one each), which root may use: what a site's limit looks like."""
    _sacctmgr("modify", "user", "root", "set", "qos-=capped", check=False)  # (a run cut off)
    _sacctmgr("delete", "qos", "capped", check=False)
    _sacctmgr("add", "qos", "capped", "MaxSubmitJobsPerUser=2")
    _sacctmgr("modify", "user", "root", "set", "qos+=capped")
    try:
        yield "capped"
    finally:
        _sacctmgr("modify", "user", "root", "set", "qos-=capped")
        _sacctmgr("delete", "qos", "capped")


def _peak_queued(proc: subprocess.Popen, name: str) -> tuple[int, int]:
    """The most of the sweep ``name``'s array tasks pending or running at once while ``proc``
    runs (sampled from squeue), and how many samples."""
    peak, samples = 0, 0
    while proc.poll() is None:
        out = subprocess.run(["squeue", "-h", "-r", "-t", "PENDING,RUNNING", "-o", "%j"],
                             capture_output=True, text=True).stdout.split()
        peak = max(peak, sum(1 for job in out if job.startswith(f"{name}.")))
        samples += 1
        time.sleep(0.1)
    return peak, samples


def test_the_sites_qos_limit_is_read_from_accounting_and_met(
        capped_qos: str, project: Project) -> None:
    """launcher.qos=capped, a QOS whose MaxSubmitJobsPerUser=2 SLURM enforces (a third job is
    refused: checked with sbatch itself): without launcher.max_queued runner reads the limit
    from sacctmgr, says so, keeps at most 2 of the sweep's tasks queued, and every run
    completes once with no submission refused."""
    refused = subprocess.run(["sbatch", f"--qos={capped_qos}", "--array=0-2", "-o", "/dev/null",
                              "--wrap", "sleep 1"], capture_output=True, text=True)
    assert refused.returncode != 0 and "QOSMaxSubmitJobPerUserLimit" in refused.stderr, refused
    proc = project.popen("+sweep=grid", "task.lr=0.1,0.2,0.3", "seed=1,2", "task.sleep=1.0",
                         *SLURM, f"launcher.qos={capped_qos}", "runner.name=site")
    peak, samples = _peak_queued(proc, "site")
    output, _ = proc.communicate()
    assert proc.returncode == 0, output
    assert "at most 2 of the sweep's jobs are queued at once: the MaxSubmitJobsPerUser of QOS " \
        f"{capped_qos}" in output, output
    assert "not submitted now" not in output, output
    assert samples > 10 and 1 <= peak <= 2, (peak, samples)
    sweep = project.root / "outputs" / "site"
    assert {r["state"] for r in rows(project, sweep).values()} == {"COMPLETED"}
    assert project.markers_of("done") == {rid: 1 for rid in rows(project, sweep)}


def test_a_queue_limit_above_the_sites_is_refused_by_slurm_and_the_submissions_shrink(
        capped_qos: str, project: Project) -> None:
    """launcher.max_queued=4 above the QOS's real limit of 2: SLURM refuses the array of 4
    (QOSMaxSubmitJobPerUserLimit), the runs wait and go again in smaller submissions (never
    an array larger than the one refused, which would never fit), and every run completes once.
    (Before, the same 4 were submitted again and again: the sweep never ended.)"""
    proc = project.popen("+sweep=grid", "task.lr=0.1,0.2,0.3", "seed=1,2", "task.sleep=1.0",
                         *SLURM, f"launcher.qos={capped_qos}", "launcher.max_queued=4",
                         "runner.name=above")
    try:
        peak, _ = _peak_queued(proc, "above")
        output, _ = proc.communicate(timeout=240)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, output
    assert "QOSMaxSubmitJobPerUserLimit" in output or "accounting/QOS policy" in output, output
    assert "SLURM refused 4 of the sweep's jobs at once for a limit: at most 2 per " \
        "submission from now on" in output, output
    assert peak <= 2, peak
    sweep = project.root / "outputs" / "above"
    assert {r["state"] for r in rows(project, sweep).values()} == {"COMPLETED"}
    assert project.markers_of("done") == {rid: 1 for rid in rows(project, sweep)}


def test_max_queued_with_wait_false_leaves_the_rest_to_the_sweep_loop_job(
        cluster: Any, project: Project) -> None:
    """launcher.wait=false with launcher.max_queued=2 on a 4-run grid: the command submits 2
    runs and the sweep loop job, which submits the other 2 as slots free."""
    proc = project.run("+sweep=grid", "task.lr=0.1,0.2", "seed=1,2", "task.sleep=0.5", *SLURM,
                       "launcher.max_queued=2", "launcher.wait=false", timeout=120)
    said = proc.stdout + proc.stderr
    assert proc.returncode == 0 and "submitted the sweep loop as job" in said, said

    def complete() -> bool:
        found = rows_so_far(project).values()
        return len(found) == 4 and all(r["state"] == "COMPLETED" for r in found)

    wait_for(complete, 180)
    assert project.markers_of("done") == {rid: 1 for rid in rows(project)}


def test_a_run_of_two_ranks_runs_them_on_its_node(cluster: Any, project: Project) -> None:
    """launcher.nproc_per_run=2 on SLURM: the array task runs torch's elastic agent and its 2
    ranks on the run's node; one run, rank 0's summary, both ranks' output."""
    pytest.importorskip("torch")
    from test_ranks import with_ddp_task

    with_ddp_task(project)
    # (one CPU for both ranks: the time-limited run, started first, holds a CPU of each node)
    proc = project.run("task=ddp", "launcher.nproc_per_run=2", *SLURM, timeout=180)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (row,) = rows(project).values()
    assert row["state"] == "COMPLETED" and row["summary"]["world"] == 2
    assert row["summary"]["sum"] == 3.0
    out = (Path(row["dir"]) / "stdout.log").read_text()
    assert "[rank0]:rank 0 of 2: sum 3.0" in out and "[rank1]:rank 1 of 2: sum 3.0" in out
    envs = [json.loads((Path(row["dir"]) / f"rank-{r}.json").read_text()) for r in (0, 1)]
    assert [e["RANK"] for e in envs] == ["0", "1"] and envs[0]["WORLD_SIZE"] == "2"


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_a_rank_failing_on_the_second_node_crashes_the_run_and_stops_the_first(
        cluster: Any, project: Project) -> None:
    """Rank 1 (on node2) raises while rank 0 (on node1) would wait for it: the run is CRASHED
    with rank 1's traceback, and no rank is left on either node."""
    pytest.importorskip("torch")
    from test_ranks import with_ddp_task

    with_ddp_task(project)
    proc = project.run("task=ddp", "task.mode=raise", "launcher.nodes=2", *SLURM, timeout=240)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    (row,) = rows(project).values()
    assert row["state"] == "CRASHED"
    assert row["reason"] == "RankFailed: rank 1 of 2 failed: ValueError: rank 1 fails on purpose"
    run = Path(row["dir"])
    crash = (run / "CRASH.txt").read_text()
    assert "the rank's traceback:" in crash and "raise ValueError" in crash
    pids = [json.loads((run / f"rank-{r}.json").read_text())["pid"] for r in (0, 1)]
    assert wait_for(lambda: all(_gone(p) for p in pids), 30)


def test_a_run_on_two_nodes_runs_a_rank_on_each_and_resumes_after_a_rank_is_killed(
        cluster: Any, project: Project) -> None:
    """launcher.nodes=2: one job of two nodes, torch's elastic agent on each (one srun step),
    ranks with the environment torch.distributed expects. SIGKILL of rank 1 on node2 mid-run:
    every rank on both nodes ends, the run is INTERRUPTED saying which rank, and the same
    command runs it again (attempt 2). Warned of its time limit then (SIGUSR1, as SLURM sends
    it), the job of two nodes requeues itself; requeued by SLURM after that (preemption), it
    restarts: each time every rank of the start before ends on both nodes and both start
    again, while the same command waits (it took the run for ended when SLURM requeued the
    job). The run ends COMPLETED once: one run of the store, rank 0's summary and metrics,
    every rank's output, each rank's process and host in the attempt's record."""
    pytest.importorskip("torch")
    from test_ranks import with_ddp_task

    with_ddp_task(project)
    command = ("task=ddp", "task.mode=wait", "launcher.nodes=2", *SLURM,
               "launcher.max_requeue=1")
    runner = project.popen(*command)
    run_dir: list[Path] = []

    def both_ranks_up(not_pids: tuple[int, ...] = ()) -> bool:
        found = rows_so_far(project)
        run_dir[:] = [Path(r["dir"]) for r in found.values()]
        try:
            up = [json.loads((run_dir[0] / f"rank-{r}.json").read_text()) for r in (0, 1)]
        except (IndexError, OSError, ValueError):
            return False
        return not {e["pid"] for e in up} & set(not_pids)

    def said(starts: int) -> bool:  # rank 1's line of each start has come through to the log
        line = "[rank1]:rank 1 of 2: sum 3.0"
        return (run_dir[0] / "stdout.log").read_text().count(line) >= starts

    assert wait_for(both_ranks_up, 120) and wait_for(lambda: said(1), 30)
    run = run_dir[0]
    ranks = [json.loads((run / f"rank-{r}.json").read_text()) for r in (0, 1)]
    assert [(e["RANK"], e["LOCAL_RANK"], e["GROUP_RANK"], e["WORLD_SIZE"], e["host"])
            for e in ranks] == [("0", "0", "0", "2", "node1"), ("1", "0", "1", "2", "node2")]
    assert {e["MASTER_ADDR"] for e in ranks} == {"node1"}
    os.kill(ranks[1]["pid"], signal.SIGKILL)
    out, _ = runner.communicate(timeout=120)
    (row,) = rows(project).values()
    assert row["state"] == "INTERRUPTED", out
    assert row["reason"] == "rank 1 of 2 was killed by SIGKILL"
    assert wait_for(lambda: all(_gone(r["pid"]) for r in ranks), 30)

    again = project.popen(*command)
    seen = tuple(r["pid"] for r in ranks)
    assert wait_for(lambda: both_ranks_up(seen), 120) and wait_for(lambda: said(2), 30)
    for how in ("the time-limit warning", "SLURM's own requeue"):
        started = [json.loads((run / f"rank-{r}.json").read_text()) for r in (0, 1)]
        (lease,) = running_on_node(project).values()
        if how == "the time-limit warning":  # the job requeues itself
            subprocess.run(["scancel", "--signal=USR1", "--batch", lease["launcher"]["job"]],
                           check=True)
        else:  # preemption: the run is INTERRUPTED by its first start, the restart resumes it
            subprocess.run(["scontrol", "requeue", lease["launcher"]["job"]], check=True)
        assert wait_for(lambda s=started: all(_gone(r["pid"]) for r in s), 60), how
        seen += tuple(r["pid"] for r in started)
        assert wait_for(lambda s=seen: both_ranks_up(s), 120), how
        starts = len(seen) // 2 + 1
        assert wait_for(lambda n=starts: said(n), 30), how
        assert again.poll() is None, how  # (the runner waits for the restart)
    (project.root / "release").touch()
    out, _ = again.communicate(timeout=240)
    assert again.returncode == 0, out
    (row,) = rows(project).values()
    assert row["state"] == "COMPLETED" and row["attempt"] == 3, row  # (the restart claimed it)
    assert "requeue 1 of 1" in (run / "stderr.log").read_text()
    assert row["summary"]["world"] == 2 and row["summary"]["sum"] == 3.0  # 1 + 2
    ranks = [json.loads((run / f"rank-{r}.json").read_text()) for r in (0, 1)]
    out = (run / "stdout.log").read_text()
    assert out.count("[rank1]:rank 1 of 2: sum 3.0") == 4, out  # every start, on node2 too
    assert all("#SBATCH --nodes=2" in (sub / "job.sbatch").read_text()
               for sub in submission_dirs(project.sweep_dir()))
    (record,) = terminal_records(project.sweep_dir())
    signed = {k: v for k, v in record["launcher"].items() if k.startswith("rank")}
    assert {k: (v["pid"], v["host"]) for k, v in signed.items()} == {
        f"rank{r}": (ranks[r]["pid"], ranks[r]["host"]) for r in (0, 1)}
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [(m["sum"], m["rank"]) for m in metrics] == [(3.0, 0)] * 4  # rank 0's, each start


def test_a_crashing_run_is_recorded_with_its_traceback(cluster: Any, project: Project) -> None:
    proc = project.run("+sweep=grid", "seed=1", "task.lr=0.1", "task.mode=ok,raise", *SLURM,
                       timeout=120)
    assert proc.returncode == 1
    by_mode = {r["values"]["task.mode"]: r for r in rows(project).values()}
    assert by_mode["ok"]["state"] == "COMPLETED"
    assert by_mode["raise"]["state"] == "CRASHED"
    assert by_mode["raise"]["reason"].startswith("ValueError: toy failure lr=")
    crash = (Path(by_mode["raise"]["dir"]) / "CRASH.txt").read_text()
    assert "Traceback" in crash and '"backend": "slurm"' in crash


def test_a_spent_failure_budget_takes_the_queued_tasks_back_and_the_next_launch_goes_on(
        cluster: Any, project: Project) -> None:
    """Every run crashes; one array task at a time (max_parallel=1, so the rest wait in the
    queue). Once runner.max_failures=2 runs have crashed, the tasks SLURM still queues are
    cancelled and their runs end INTERRUPTED, not crashed; the same command then goes on with
    them. Before, every queued task ran and crashed."""
    args = ("task.mode=raise", "seed=range(6)", *SLURM, "launcher.max_parallel=1")
    proc = project.run(*args, "runner.max_failures=2", timeout=180)
    said = proc.stdout + proc.stderr
    assert proc.returncode == 1, said
    assert "queued run(s) taken back from the cluster's queue" in said, said
    counts = project.status()["counts"]
    assert counts["CRASHED"] in (2, 3) and counts["INTERRUPTED"] >= 3, counts
    assert counts["CRASHED"] + counts["INTERRUPTED"] == 6, counts
    again = project.run(*args, timeout=240)
    assert again.returncode == 1, again.stdout + again.stderr
    assert project.status()["counts"]["CRASHED"] == 6


def test_a_worker_killed_on_its_node_is_a_crash_with_both_logs(cluster: Any,
                                                                project: Project) -> None:
    proc = project.run("task.mode=sigkill", *SLURM, timeout=120)
    assert proc.returncode == 1
    (row,) = rows(project).values()
    assert row["state"] == "CRASHED"
    assert re.fullmatch(r"SLURM job \d+_0 ended FAILED without the worker recording a result "
                        r"\(see the job's log below\)", row["reason"])
    crash = (Path(row["dir"]) / "CRASH.txt").read_text()
    assert "logs/0.out:\n=== runner: job" in crash  # the batch script's own output
    assert "stderr.log:\ntoy: about to be killed" in crash  # and the run's own stderr


def test_sbatch_rejection_names_slurms_reason_and_touches_no_run(cluster: Any,
                                                                 project: Project) -> None:
    proc = project.run("+sweep=grid", "seed=1", "task.lr=0.1,0.2", *SLURM,
                       "launcher.partition=nope")
    assert proc.returncode == 2
    assert "Invalid partition name specified" in proc.stderr
    assert "job.sbatch" in proc.stderr and "no run was started" in proc.stderr
    sweep = project.sweep_dir()
    assert {(r["state"], r["attempt"]) for r in rows(project).values()} == {("UNHATCHED", 0)}
    # fixed on resume, without re-expanding anything
    proc = project.cli("resume", str(sweep), "launcher.partition=debug", timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert {r["state"] for r in rows(project).values()} == {"COMPLETED"}


def test_dry_run_writes_and_prints_the_script_and_submits_nothing(cluster: Any,
                                                                 project: Project) -> None:
    proc = project.run("+sweep=grid", "seed=1", "task.lr=0.1,0.2,0.3", *SLURM,
                       "runner.dry_run=true", "launcher.partition=gpu", "launcher.gpus_per_run=1",
                       "launcher.timeout_min=120", "launcher.max_parallel=16")
    assert proc.returncode == 0, proc.stderr
    runs = len(re.findall(r"^ *\d+ │", proc.stdout, re.M))  # the plan's table
    assert runs == 3
    for line in (f"#SBATCH --array=0-{runs - 1}%16", "#SBATCH --partition=gpu",
                 "#SBATCH --gres=gpu:1", "#SBATCH --time=120", "#SBATCH --signal=B:USR1@90"):
        assert line in proc.stdout
    (written,) = (project.root / "outputs").glob("*.dry-run.sbatch")
    assert "#SBATCH --partition=gpu" in written.read_text()
    assert not [p for p in (project.root / "outputs").iterdir() if p.is_dir()]


def test_fire_and_forget_then_status_and_resume_pick_it_up(cluster: Any,
                                                           project: Project) -> None:
    proc = project.run("+sweep=grid", "seed=1", "task.lr=0.1,0.2", "task.mode=wait_file",
                       *SLURM, "launcher.wait=false", timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "handed 2 run(s) over" in proc.stderr
    sweep = project.sweep_dir()
    jobs = wait_for(lambda: len(leased_jobs(project)) == 2 and leased_jobs(project), 30)
    assert len({j["array_job_id"] for j in jobs.values()}) == 1
    assert all(not r["stale"] for r in rows(project).values())
    wait_for(lambda: all(r.get("cluster_state", "").startswith("RUNNING on ")
                         for r in rows(project).values()), 30)
    table = project.cli("status", str(sweep)).stdout
    assert f"job {next(iter(jobs.values()))['array_job_id']}_0 RUNNING on" in table
    resume_until_reattached(project, sweep, 2)
    assert len(submission_dirs(sweep)) == 1
    assert {r["state"] for r in rows(project).values()} == {"COMPLETED"}
    assert project.markers_of("start") == {rid: 1 for rid in rows(project)}


def test_runner_sigkilled_after_submission_resume_reattaches(cluster: Any,
                                                             project: Project) -> None:
    runner = project.popen("+sweep=grid", "seed=1", "task.lr=0.1,0.2,0.3",
                           "task.mode=wait_file", *SLURM)
    wait_for(lambda: len(leased_jobs(project)) == 3, 60)
    os.killpg(runner.pid, signal.SIGKILL)
    runner.communicate(timeout=10)
    sweep = project.sweep_dir()
    assert {r["state"] for r in rows(project).values()} == {"RUNNING"}
    assert not any(r["stale"] for r in rows(project).values())  # their jobs live on
    resume_until_reattached(project, sweep, 3)
    assert len(submission_dirs(sweep)) == 1, "nothing was submitted twice"
    assert {r["state"] for r in rows(project).values()} == {"COMPLETED"}
    assert project.markers_of("start") == {rid: 1 for rid in rows(project)}


KILLED_AROUND_SBATCH = """
import os, signal, sys
from runner.slurm import commands

real = commands.sbatch

def sbatch(*args, **kwargs):
    if sys.argv[1] == "after":
        real(*args, **kwargs)
    os.kill(os.getpid(), signal.SIGKILL)

commands.sbatch = sbatch
from runner.cli.main import main
sys.exit(main(sys.argv[2:]))
"""


def run_killed_around_sbatch(project: Project, when: str) -> Path:
    script = project.root / "killed_around_sbatch.py"
    script.write_text(KILLED_AROUND_SBATCH)
    args = project.args("+sweep=grid", "seed=1", "task.lr=0.1,0.2", "task.mode=wait_file",
                        *SLURM)[3:]
    proc = subprocess.run([project.args()[0], str(script), when, *args], cwd=project.root,
                          env=project.env(), capture_output=True, text=True, timeout=60)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    (sub,) = submission_dirs(project.sweep_dir())
    assert json.loads((sub / "submission.json").read_text())["job_id"] is None
    assert {r["state"] for r in rows(project).values()} == {"RUNNING"}
    return sub


def test_runner_sigkilled_after_sbatch_before_recording_the_job_id(cluster: Any,
                                                                   project: Project) -> None:
    """The job is found again by its unique name: resume re-attaches, nothing runs twice."""
    run_killed_around_sbatch(project, "after")
    assert not any(r["stale"] for r in rows(project).values())
    sweep = project.sweep_dir()
    resume_until_reattached(project, sweep, 2)
    assert len(submission_dirs(sweep)) == 1
    assert {r["state"] for r in rows(project).values()} == {"COMPLETED"}
    assert project.markers_of("start") == {rid: 1 for rid in rows(project)}


def test_runner_sigkilled_before_sbatch_answered(cluster: Any, project: Project) -> None:
    """Nothing reached SLURM: once the grace period is over the runs are found interrupted and
    the next resume submits them (once)."""
    sub = run_killed_around_sbatch(project, "before")
    assert not any(r["stale"] for r in rows(project).values())  # sbatch may still answer
    record = json.loads((sub / "submission.json").read_text())
    record["created"] -= 3600  # as if an hour had passed
    (sub / "submission.json").write_text(json.dumps(record))
    assert all(r["stale"] for r in rows(project).values())
    release(project)
    proc = project.cli("resume", str(project.sweep_dir()), timeout=120)
    assert proc.returncode == 0, proc.stderr
    by_state = {r["state"] for r in rows(project).values()}
    assert by_state == {"COMPLETED"}
    assert len(submission_dirs(project.sweep_dir())) == 2
    attempts = [p.name for r in rows(project).values()
                for p in (Path(r["dir"]) / "attempts").iterdir()]
    assert sorted(attempts) == ["0.UNHATCHED", "0.UNHATCHED", "1.INTERRUPTED", "1.INTERRUPTED"]
    assert project.markers_of("start") == {rid: 1 for rid in rows(project)}


def test_scancel_of_a_running_job_then_resume(cluster: Any, project: Project) -> None:
    runner = project.popen("+sweep=grid", "seed=1", "task.lr=0.1,0.2", "task.mode=wait_file",
                           *SLURM, "launcher.max_parallel=1")
    wait_for(lambda: running_on_node(project), 60)
    (job,) = {j["array_job_id"] for j in leased_jobs(project).values()}
    subprocess.run(["scancel", job], check=True)
    out, _ = runner.communicate(timeout=60)
    assert runner.returncode == 1, out
    reasons = sorted(r["reason"] for r in rows(project).values())
    assert [r["state"] for r in rows(project).values()] == ["INTERRUPTED"] * 2
    assert reasons[1] == "received SIGTERM"  # the running one, recorded by its worker
    assert re.fullmatch(r"SLURM job \d+_1 was cancelled", reasons[0])  # the pending one
    release(project)
    proc = project.cli("resume", str(project.sweep_dir()), timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert {r["state"] for r in rows(project).values()} == {"COMPLETED"}
    assert len(submission_dirs(project.sweep_dir())) == 2


def test_cancel_command_scancels_queued_and_running_jobs(cluster: Any,
                                                         project: Project) -> None:
    proc = project.run("+sweep=grid", "seed=1", "task.lr=0.1,0.2,0.3", "task.mode=wait_file",
                       *SLURM, "launcher.wait=false", "launcher.max_parallel=1")
    assert proc.returncode == 0, proc.stderr
    wait_for(lambda: running_on_node(project), 60)
    sweep = project.sweep_dir()
    proc = project.cli("cancel", str(sweep))
    assert proc.returncode == 0, proc.stderr
    assert "slurm: cancelled job(s)" in proc.stderr
    states = [r["state"] for r in rows(project).values()]
    assert states == ["INTERRUPTED"] * 3
    jobs = {json.loads((s / "submission.json").read_text())["job_id"]
            for s in submission_dirs(sweep)}
    live = subprocess.run(["squeue", "-h", "-t", "PD,R,CG", "-o", "%F"], capture_output=True,
                          text=True)
    assert not jobs & set(live.stdout.split())


def test_requeue_on_the_time_limit_warning_resumes_from_the_checkpoint(
        cluster: Any, project: Project) -> None:
    """SLURM's warning (the signal --signal asks for, sent here at once with scancel) lets the
    task checkpoint; its array task requeues itself and the run resumes from its checkpoint.
    The warned task is the one that holds the array's own job id: requeued by that id, every
    task of the array would be (the other run here would restart too)."""
    runner = project.popen("task.mode=checkpoint", "task.steps=60", "task.lr=0.1,0.2", *SLURM,
                           "launcher.max_requeue=1")
    wait_for(lambda: len(running_on_node(project)) == 2, 60)
    time.sleep(2.0)  # some steps done
    leases = running_on_node(project)
    (warned,) = [rid for rid, lease in leases.items()
                 if lease["launcher"]["job_id"] == lease["launcher"]["array_job_id"]]
    subprocess.run(["scancel", "--signal=USR1", "--batch", leases[warned]["launcher"]["job"]],
                   check=True)
    out, _ = runner.communicate(timeout=150)
    assert runner.returncode == 0, out
    final = rows(project)
    other = next(r for rid, r in final.items() if rid != warned)
    assert other["state"] == "COMPLETED" and other["summary"]["restarts"] == 0, other
    assert other["summary"]["resumed_from"] == 0
    row = final[warned]
    assert row["state"] == "COMPLETED"
    assert row["summary"]["resumed_from"] > 0 and row["summary"]["step"] == 60
    assert row["summary"]["restarts"] == 1
    record = json.loads((Path(row["dir"]) / "COMPLETED").read_text())
    assert record["launcher"]["requeues"] == 1 and record["attempt"] == 1
    assert "requeue 1 of 1" in (Path(row["dir"]) / "stderr.log").read_text()


def test_arrays_larger_than_max_array_size_are_split_and_chained(
        cluster: Any, project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    from runner.cli.main import main
    from runner.slurm import commands

    monkeypatch.setattr(commands, "max_array_size", lambda: 2)
    code = main(["task=toy", "runner.output_dir=outputs", "+sweep=grid", "seed=1",
                     "task.lr=0.1,0.2,0.3,0.4,0.5", "task.sleep=0.5", *SLURM,
                     "launcher.max_parallel=2", "runner.progress=false"])
    assert code == 0
    sweep = project.sweep_dir()
    subs = submission_dirs(sweep)
    arrays = [re.findall(r"--array=(\S+)", (s / "job.sbatch").read_text())[0]
              for s in subs]
    assert sorted(arrays) == ["0-0%2", "0-1%2", "0-1%2"]
    records = terminal_records(sweep)
    assert len(records) == 5 and len({r["launcher"]["array_job_id"] for r in records}) == 3
    assert max_overlap(records) <= 2


@pytest.fixture(scope="module")
def time_limited(cluster: Any, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A run that outlives its 1-minute limit, started first so that its ~90 s (SLURM checks
    limits on a ~30 s tick) pass while the other tests run: a run on two nodes whose rank on
    node2 hangs (SIGSTOP) before a collective, so that rank 0 on node1 waits in it."""
    project = Project(tmp_path_factory.mktemp("time-limit") / "proj")
    if importlib.util.find_spec("torch") is None:
        proc = project.popen("task.mode=hang", *SLURM, "launcher.timeout_min=1",
                             "launcher.max_requeue=0")
    else:
        from test_ranks import with_ddp_task

        with_ddp_task(project)
        proc = project.popen("task=ddp", "task.mode=stop", "launcher.nodes=2", *SLURM,
                             "launcher.timeout_min=1", "launcher.max_requeue=0")
    yield project, proc
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=30)


def test_a_run_killed_by_its_time_limit_is_a_crash_with_the_reason(time_limited: Any) -> None:
    """timeout_min=1 and no requeue: SLURM warns at 30 s and kills at 60 s, every rank on both
    nodes with the job, the hung one included."""
    project, proc = time_limited
    out, _ = proc.communicate(timeout=240)
    assert proc.returncode == 1, out
    (row,) = rows(project).values()
    assert row["state"] == "CRASHED"
    assert "time limit" in row["reason"] and "max_requeue=0 used up" in row["reason"]
    assert "time-limit warning; no requeue left" in (Path(row["dir"]) / "stderr.log").read_text()
    pids = [int(p.read_text()) for p in Path(row["dir"]).glob("pid-*")]
    if importlib.util.find_spec("torch") is not None:
        assert len(pids) == 2 and wait_for(lambda: all(_gone(p) for p in pids), 30)


DEAF_TASK = """
import signal, time
from pathlib import Path

def main(cfg):
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # as on a lost node: it records nothing
    while not Path(cfg.task.release).exists():
        time.sleep(0.1)
    return {"ok": 1}
"""


def test_a_run_lost_with_its_node_is_interrupted_and_resumes(cluster: Any,
                                                             project: Project) -> None:
    """SLURM requeues a job whose node was lost; when the restart fails before the worker runs
    (on a real cluster "Job credential revoked"), the run is INTERRUPTED, not CRASHED. The lost
    node here: a worker that ignores SIGTERM, so SLURM SIGKILLs it on `scontrol requeue` and
    nothing is recorded, and a restart that fails in launcher.setup."""
    release = project.root / "release"
    (project.root / "deaf.py").write_text(DEAF_TASK)
    (project.root / "conf" / "task" / "deaf.yaml").write_text(
        f"name: deaf\nfn: deaf:main\nrelease: {release}\n")
    (project.root / "fail_on_restart.sh").write_text('[ "${SLURM_RESTART_COUNT:-0}" = 0 ]\n')
    args = [sys.executable, "-m", "runner", "task=deaf", "runner.output_dir=outputs", *SLURM,
            "launcher.setup=['bash fail_on_restart.sh || exit 1']"]
    runner = subprocess.Popen(args, cwd=project.root, env=project.env(), text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              start_new_session=True)
    wait_for(lambda: running_on_node(project), 60)
    (lease,) = running_on_node(project).values()
    subprocess.run(["scontrol", "requeue", lease["launcher"]["job_id"]], check=True)
    out, _ = runner.communicate(timeout=180)
    assert runner.returncode == 1, out
    (row,) = rows(project).values()
    assert row["state"] == "INTERRUPTED", row
    assert re.search(r"was requeued by SLURM \(1 time\(s\)", row["reason"]), row["reason"]
    assert "1 run(s) not finished: resume with `python -m runner resume" in out
    release.touch()
    proc = subprocess.run(args, cwd=project.root, env=project.env(), text=True,
                          capture_output=True, timeout=180)
    assert proc.returncode == 0, proc.stderr
    assert rows(project)[row["id"]]["state"] == "COMPLETED"


def test_a_hydra_app_on_the_cluster_runs_and_resumes(cluster: Any, tmp_path: Path) -> None:
    """hydra/launcher=runner with backend=slurm: each job runs on the node in a fresh process
    (the task found again in the app's script, its config rebuilt from the run directory)."""
    from test_hydra_plugin import App

    app = App(tmp_path / "app")
    slurm = ("hydra.launcher.backend=slurm", "hydra.launcher.poll_s=0.5")
    out = app.ok(*slurm, "db=mysql,postgresql", "lr=0.1,0.01", "record=true",
                 "hydra.job.chdir=true")
    assert "4 of 4 job(s) completed" in out
    sweep = app.sweep()
    for num in range(4):
        assert (sweep / str(num) / ".hydra" / "overrides.yaml").is_file()
        seen = json.loads((app.markers / f"env-{num}.json").read_text())
        assert seen["cwd"] == str(sweep / str(num))
    leases = [json.loads(p.read_text()) for p in sweep.glob("runs/*/COMPLETED")]
    assert all(r["launcher"].get("job") for r in leases)  # ran as SLURM jobs
    app.ok(*slurm, "lr=0.1,0.01", "db=mysql,postgresql", "record=true", "hydra.job.chdir=true")
    assert app.marks("start") == {0: 1, 1: 1, 2: 1, 3: 1}  # resumed: none ran again
    failed = app.run(*slurm, "lr=-1", "hydra.sweep.dir=neg")
    assert failed.returncode == 1 and "ValueError: negative lr -1" in failed.stderr
    (crash,) = (app.root / "neg").glob("runs/*/CRASH.txt")
    assert "ValueError: negative lr -1" in crash.read_text()


def test_a_study_with_wait_false_is_carried_on_by_its_sweep_loop_job(
        cluster: Any, project: Project) -> None:
    """launcher.wait=false on a study: the command submits the first trials and the sweep loop
    itself as a one-CPU job, which asks each next trial as a slot frees (TPE sees the results
    so far) and submits it; the study ends complete with nobody watching, and `cancel` would
    stop that job with the rest. Warned of its time limit (SLURM's --signal, sent here with
    scancel), the loop job requeues itself, leaving the trials running, and carries on."""
    pytest.importorskip("optuna")
    from test_study import with_study_task

    with_study_task(project)
    command = ("task=study", "+sweep=optuna", "sweep.metric=val/acc", "sweep.n_trials=6",
               "task.lr=tag(log,interval(0.0001,1.0))", "sweep.startup_trials=2",
               "task.sleep=0.8", "task.epochs=3", *SLURM, "launcher.max_parallel=2",
               "launcher.wait=false")
    proc = project.run(*command, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    said = proc.stdout + proc.stderr
    assert "submitted the sweep loop as job" in said, said
    assert len(rows(project)) == 2  # the first two trials; the rest are asked by the job
    again = project.run(*command, timeout=120)  # while it lives, no second loop job
    assert "is still queued or running" in again.stdout + again.stderr or \
        len(rows(project)) == 6, again.stdout + again.stderr

    loop = project.sweep_dir() / "slurm" / "loop"
    record = json.loads((loop / "submission.json").read_text())
    driver = loop / "logs" / "driver.out"
    wait_for(lambda: driver.exists() and "restart 0" in driver.read_text(), 60)
    time.sleep(1.0)  # the loop at work
    subprocess.run(["scancel", "--signal=USR1", "--batch", record["job_id"]], check=True)

    def complete() -> bool:
        found = rows_so_far(project).values()
        return len(found) == 6 and all(r["state"] == "COMPLETED" for r in found)

    wait_for(complete, 240)
    final = sorted(rows(project).values(), key=lambda r: r["values"]["trial"])
    assert [r["values"]["trial"] for r in final] == list(range(6))
    assert [r["attempt"] for r in final] == [1] * 6  # the requeue left the trials running
    log = driver.read_text()
    assert "=== runner: sweep loop job" in log
    assert "the time limit is near: the sweep loop requeues itself" in log, log
    assert "restart 1" in log, log  # the same job, requeued, went on proposing

    def loop_ended() -> bool:
        out = subprocess.run(["squeue", "-h", "-j", record["job_id"]], capture_output=True,
                             text=True).stdout
        return not out.strip()

    wait_for(loop_ended, 60)


def test_a_study_on_the_cluster_prunes_and_survives_a_scancelled_trial(
        cluster: Any, project: Project) -> None:
    """+sweep=optuna with launcher=slurm: each trial is submitted when a slot frees (its
    parameters frozen first), its reports judged on the node; a trial whose job is scancelled
    mid-run is INTERRUPTED and the same command finishes the study, trial numbers contiguous."""
    pytest.importorskip("optuna")
    from test_study import with_study_task

    with_study_task(project)
    command = ("task=study", "+sweep=optuna", "sweep.metric=val/acc", "sweep.n_trials=5",
               "task.lr=tag(log,interval(0.0001,1.0))", "sweep.sampler=random",
               "task.sleep=0.5", "task.epochs=4", *SLURM, "launcher.max_parallel=2")
    runner = project.popen(*command)
    started = wait_for(lambda: running_on_node(project), 60)
    # asked as slots free: never more trials out (queued or running) than slots
    assert sum(r["state"] in ("UNHATCHED", "RUNNING") for r in rows(project).values()) <= 2
    # a trial whose worker runs on the node (a job still queued would just run later)
    job = next(iter(started.values()))["launcher"]["array_job_id"]
    subprocess.run(["scancel", job], check=True)
    out, _ = runner.communicate(timeout=120)
    states = [r["state"] for r in rows(project).values()]
    assert "INTERRUPTED" in states, out
    proc = project.run(*command, timeout=180)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    final = sorted(rows(project).values(), key=lambda r: r["values"]["trial"])
    assert [r["values"]["trial"] for r in final] == list(range(5))
    assert {r["state"] for r in final} == {"COMPLETED"}
    pruned = project.run(*command, "sweep.pruner=asha", "sweep.resource=epoch",
                         "sweep.reduction_factor=2", "sweep.min_resource=1", "sweep.n_trials=6",
                         "runner.name=asha",
                         "task.sleep=0.0", timeout=180)
    assert pruned.returncode == 0, pruned.stdout + pruned.stderr
    assert "pruned" in pruned.stderr


REFUSING_SBATCH = """#!/bin/bash
# SLURM's own words for a QOS submit limit, for the first {times} submissions; then the real one
n=$(cat {count} 2>/dev/null || echo 0)
if [ "$n" -lt {times} ]; then
  echo $((n + 1)) > {count}
  echo "sbatch: error: QOSMaxSubmitJobPerUserLimit" >&2
  echo "sbatch: error: Batch job submission failed: Job violates accounting/QOS policy" \
       "(job submit limit, user's size and/or time limits)" >&2
  exit 1
fi
exec {real} "$@"
"""


def test_a_submission_refused_for_a_limit_waits_and_goes_again(
        cluster: Any, project: Project, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """sbatch refused twice for a submit limit (the test cluster has no accounting, so a script
    in front of the real sbatch answers as a QOS limit does): the runs are given back as they
    were, submitted again after a wait, and each runs once; no run is counted as failed."""
    real = shutil.which("sbatch")
    assert real is not None
    bindir = tmp_path / "bin"
    bindir.mkdir()
    wrapper = bindir / "sbatch"
    wrapper.write_text(REFUSING_SBATCH.format(times=2, count=tmp_path / "refused", real=real))
    wrapper.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    proc = project.run("+sweep=grid", "seed=1", "task.lr=0.1,0.2", *SLURM, timeout=180)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.count("not submitted now") == 2, proc.stderr
    assert "accounting/QOS policy" in proc.stderr and "next try in" in proc.stderr
    assert {r["state"] for r in rows(project).values()} == {"COMPLETED"}
    assert project.markers_of("start") == {rid: 1 for rid in rows(project)}
    # each run's one attempt: the refused claims were undone, not recorded as failures
    attempts = sorted(p.name for r in rows(project).values()
                      for p in (Path(r["dir"]) / "attempts").iterdir())
    assert attempts == ["0.UNHATCHED", "0.UNHATCHED"]
    refused = [json.loads((d / "submission.json").read_text())
               for d in submission_dirs(project.sweep_dir())]
    assert sum(1 for s in refused if s.get("error") and not s.get("job_id")) == 2


def test_which_sbatch_refusals_pass_with_time() -> None:
    from runner.errors import SlurmError
    from runner.slurm.commands import refused_for_now

    for later in ("sbatch: error: Batch job submission failed: Job violates accounting/QOS "
                  "policy (job submit limit, user's size and/or time limits)",
                  "sbatch: error: AssocMaxSubmitJobLimit",
                  "sbatch: error: Slurm temporarily unable to accept job, sleeping and retrying",
                  "sbatch: error: Batch job submission failed: Socket timed out on send/recv "
                  "operation",
                  "sbatch: error: Batch job submission failed: Unable to contact slurm "
                  "controller (connect failure)"):
        assert refused_for_now(SlurmError(f"sbatch failed: {later}")), later
    for never in ("sbatch: error: Batch job submission failed: Invalid partition name specified",
                  "sbatch: error: invalid partition specified: nope",
                  "sbatch: error: Batch job submission failed: Invalid job array specification",
                  "sbatch: error: Batch job submission failed: Requested node configuration is "
                  "not available"):
        assert not refused_for_now(SlurmError(f"sbatch failed: {never}")), never


def test_a_node_where_runs_fail_for_the_machine_is_left_out_and_the_retries_run_elsewhere(
        cluster: Any, project: Project) -> None:
    """node2 is broken (its jobs fail before the worker starts, as on a node with a full /tmp or
    a broken module): each run that lands there ends CRASHED for the machine (class node); with
    launcher.bad_node_after=1 node2 is left out of the later submissions (sbatch --exclude), so
    the retries (runner.retries=1) all run on node1 and the sweep completes; the runner, the
    notifier and `status` name node2. Before, a retry could land on node2 again."""
    (project.root / "node_check.sh").write_text('[ "$SLURMD_NODENAME" != node2 ]\n')
    proc = project.run("task.lr=0.1,0.2,0.3,0.4", *SLURM, "launcher.bad_node_after=1",
                       "runner.retries=1", "launcher.setup=['bash node_check.sh || exit 1']",
                       "notifier.console.events=[run_crashed]", timeout=180)
    said = proc.stdout + proc.stderr
    assert proc.returncode == 0, said
    sweep = project.sweep_dir()
    failed = [read_flag(p, "CRASH.txt").data for p in sweep.glob("runs/*/attempts/*.CRASH.txt")]
    assert failed and all(dict_field(r["launcher"])["node"] == "node2" for r in failed), failed
    assert all(r["launcher"]["node"] == "node1" for r in terminal_records(sweep))
    final = rows(project)
    assert [r["state"] for r in final.values()] == ["COMPLETED"] * 4
    assert sorted(r["attempt"] for r in final.values()).count(2) == len(failed)
    assert "notice: node node2 is left out of this sweep's submissions" in said, said
    status = project.status()
    assert len(status["notices"]) == 1 and "node node2 is left out" in status["notices"][0]
    shown = project.cli("status", str(sweep))
    assert "notice: node node2 is left out" in " ".join(shown.stdout.split())


def test_runs_packed_into_pools_take_the_next_run_and_survive_a_lost_and_a_requeued_pool(
        cluster: Any, project: Project) -> None:
    """launcher.runs_per_job=2: four runs go out as one job array of two pools (one sbatch
    call), each running two runs at once on its share of CPUs, leased to the pool's job. Pool A
    is cancelled mid-run: its runs are INTERRUPTED (SLURM says its job ended) and the waiting
    runner submits a new pool for them. Pool B is warned of its time limit: it requeues itself,
    its runs stop INTERRUPTED and the requeued pool runs them again. All four complete."""
    command = ("task.lr=0.1,0.2,0.3,0.4", "task.mode=wait_file", *SLURM,
               "launcher.runs_per_job=2")
    runner = project.popen(*command)

    def four_running() -> dict[str, dict[str, Any]]:
        found = leased_jobs(project)
        return found if len(found) == 4 and all(
            f.get("node") for f in found.values()) else {}

    assert wait_for(four_running, 120), runner.stdout
    leases = four_running()
    assert {f["backend"] for f in leases.values()} == {"slurm-pool"}
    by_pool: dict[str, list[str]] = {}
    for rid, facts in leases.items():
        by_pool.setdefault(facts["job"], []).append(rid)
    assert sorted(len(v) for v in by_pool.values()) == [2, 2], by_pool
    (lost, lost_runs), (warned, warned_runs) = sorted(by_pool.items())
    assert len(submission_dirs(project.sweep_dir())) == 1  # one sbatch call
    subprocess.run(["scancel", lost], check=True)
    subprocess.run(["scancel", "--signal=USR1", "--batch", warned], check=True)

    def interrupted(run_ids: list[str]) -> bool:
        found = rows_so_far(project)
        return all(found[r]["state"] == "INTERRUPTED" or found[r]["attempt"] == 2
                   for r in run_ids)

    assert wait_for(lambda: interrupted(lost_runs + warned_runs), 120)
    release(project)
    out, _ = runner.communicate(timeout=240)
    assert runner.returncode == 0, out
    final = rows(project)
    assert [r["state"] for r in final.values()] == ["COMPLETED"] * 4, final
    assert sorted(r["attempt"] for r in final.values()) == [2, 2, 2, 2], final
    for record in terminal_records(project.sweep_dir()):
        assert record["launcher"]["backend"] == "slurm-pool"
    pools = [d for d in submission_dirs(project.sweep_dir()) if d.name.startswith("pool-")]
    assert len(pools) == 2, out  # the first array, and one pool for the lost pool's runs
    script = (pools[0] / "job.sbatch").read_text()
    assert "#SBATCH --array=0-1" in script and "#SBATCH --cpus-per-task=2" in script
    assert out.count("pool(s) of 2 slot(s) as job") == 2, out
    from runner.slurm import commands, submissions

    names = [s.job_name for s in submissions.all_submissions(project.sweep_dir())]
    left = [j for j in commands.query(names).values() if j.state == "PENDING"]
    assert left == [], left  # a pool still queued when the sweep ended is cancelled


def test_a_study_in_pools_runs_to_its_end_and_with_wait_false_needs_no_loop_job(
        cluster: Any, project: Project) -> None:
    """A study with launcher.runs_per_job=2: the pools propose the trials themselves as their
    slots free (TPE sees the results so far). Waiting, the command ends when the study has
    n_trials; grown with wait=false, it submits the pools and leaves, and they carry the study
    to its new end with no sweep loop job."""
    pytest.importorskip("optuna")
    from test_study import with_study_task

    with_study_task(project)
    command = ("task=study", "+sweep=optuna", "sweep.metric=val/acc",
               "task.lr=tag(log,interval(0.0001,1.0))", "sweep.startup_trials=2",
               "task.epochs=2", *SLURM, "launcher.runs_per_job=2", "launcher.max_parallel=4")
    proc = project.run(*command, "sweep.n_trials=4", timeout=180)
    said = proc.stdout + proc.stderr
    assert proc.returncode == 0, said
    assert "submitted 2 pool(s) of 2 slot(s)" in said, said
    assert sorted(r["state"] for r in rows(project).values()) == ["COMPLETED"] * 4
    proc = project.run(*command, "sweep.n_trials=6", "launcher.wait=false", timeout=120)
    said = proc.stdout + proc.stderr
    assert proc.returncode == 0, said
    assert "submitted 1 pool(s) of 2 slot(s)" in said and "handed the sweep over" in said, said

    def complete() -> bool:
        found = rows_so_far(project).values()
        return len(found) == 6 and all(r["state"] == "COMPLETED" for r in found)

    assert wait_for(complete, 240)
    final = sorted(rows(project).values(), key=lambda r: r["values"]["trial"])
    assert [r["values"]["trial"] for r in final] == list(range(6))
    subs = [d.name for d in submission_dirs(project.sweep_dir())]
    assert len(subs) == 2 and all(s.startswith("pool-") for s in subs), subs  # no loop job


def test_a_node_where_pools_fail_is_left_out_of_later_pools(cluster: Any,
                                                            project: Project) -> None:
    """launcher.runs_per_job=2 with node2 broken (a pool's set-up fails there before it claims
    a run): the pool that failed on node2 counts against it, node2 is left out of the later
    pools (notice, status), and node1's pools run every run."""
    (project.root / "node_check.sh").write_text('[ "$SLURMD_NODENAME" != node2 ]\n')
    proc = project.run("task.lr=0.1,0.2,0.3,0.4,0.5,0.6", "task.sleep=2", *SLURM,
                       "launcher.runs_per_job=2", "launcher.bad_node_after=1",
                       "launcher.setup=['bash node_check.sh || exit 1']", timeout=180)
    said = proc.stdout + proc.stderr
    assert proc.returncode == 0, said
    assert "notice: node node2 is left out of this sweep's submissions" in said, said
    assert "pool " in said.split("node node2 is left out", 1)[1].split("\n")[0], said
    final = rows(project)
    assert [r["state"] for r in final.values()] == ["COMPLETED"] * 6
    assert all(r["launcher"]["node"] == "node1" for r in terminal_records(project.sweep_dir()))
    assert any("node node2 is left out" in n for n in project.status()["notices"])
