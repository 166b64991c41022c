"""``launcher.nproc_per_run=N``: one run on N ranks started by torch's elastic launcher (gloo on
CPU), an ordinary run of the store: one FLAG, rank 0's metrics and summary, every rank's
output, a failing rank's traceback, and no rank left behind by a kill."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

from conftest import Project, wait_for

pytest.importorskip("torch")

TASK = '''
import json, os, socket, time
from pathlib import Path
import runner

def main(cfg):
    t = cfg.task
    ctx = runner.current_run()
    dist = runner.distributed()
    (ctx.run_dir / f"pid-{ctx.rank}").write_text(str(os.getpid()))
    if t.mode == "stop" and ctx.rank == 1:  # a rank that hangs before the collective
        import signal
        os.kill(os.getpid(), signal.SIGSTOP)
    import torch
    x = torch.tensor([float(ctx.rank + 1)])
    dist.all_reduce(x)
    print(f"rank {ctx.rank} of {ctx.world_size}: sum {x.item()}", flush=True)
    runner.log({"sum": x.item(), "rank": ctx.rank})
    env = {k: os.environ.get(k) for k in ("RANK", "LOCAL_RANK", "WORLD_SIZE",
           "LOCAL_WORLD_SIZE", "GROUP_RANK", "MASTER_ADDR", "MASTER_PORT")}
    (ctx.run_dir / f"rank-{ctx.rank}.json").write_text(json.dumps(
        {**env, "pid": os.getpid(), "host": socket.gethostname(),
         "cpus": sorted(os.sched_getaffinity(0)),
         "threads": os.environ.get("OMP_NUM_THREADS"),
         "cmdline": Path("/proc/self/cmdline").read_text()}))
    if t.mode == "raise" and ctx.rank == 1:
        raise ValueError(f"rank {ctx.rank} fails on purpose")
    if t.mode == "wait":  # a rank that keeps on through Ctrl-C's SIGINT (saving, say)
        import signal
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    while t.mode == "wait" and not Path(t.release).exists():
        time.sleep(0.1)
    return {"sum": x.item(), "world": ctx.world_size, "lr": float(t.lr)}
'''


def with_ddp_task(project: Project) -> Project:
    """``task=ddp`` in ``project``: the task above and its config."""
    (project.root / "ddp_task.py").write_text(TASK)
    (project.root / "conf" / "task" / "ddp.yaml").write_text(
        f"fn: ddp_task:main\nlr: 0.1\nmode: ok\nrelease: {project.root / 'release'}\n")
    return project


@pytest.fixture
def ddp(project: Project) -> Project:
    return with_ddp_task(project)


def command(*more: str) -> list[str]:
    return ["task=ddp", "launcher.nproc_per_run=2", "runner.progress=false", *more]


def runs(project: Project) -> list[Path]:
    return sorted((project.sweep_dir() / "runs").iterdir())


@pytest.mark.parametrize("start", ["default", "spawn"])
def test_a_run_of_two_ranks_is_one_run_of_the_store(ddp: Project, start: str,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Ranks forked from their agent (torch's CPU build: the default here) or spawned (as by a
    build with CUDA) alike."""
    if start != "default":
        monkeypatch.setenv("RUNNER_RANK_START_METHOD", start)
    ddp.run(*command("task.lr=0.1,0.2", "launcher.max_parallel=2"), check=True)
    status = ddp.status()
    assert [r["state"] for r in status["runs"]] == ["COMPLETED", "COMPLETED"]
    ports = set()
    for run in runs(ddp):
        envs = [json.loads((run / f"rank-{r}.json").read_text()) for r in (0, 1)]
        assert [(e["RANK"], e["LOCAL_RANK"], e["WORLD_SIZE"], e["LOCAL_WORLD_SIZE"],
                 e["GROUP_RANK"]) for e in envs] == [("0", "0", "2", "2", "0"),
                                                     ("1", "1", "2", "2", "0")]
        assert envs[0]["MASTER_PORT"] == envs[1]["MASTER_PORT"] and envs[0]["MASTER_ADDR"]
        spawned = ["spawn_main" in e["cmdline"] for e in envs]
        assert spawned == [start == "spawn"] * 2, envs
        ports.add(envs[0]["MASTER_PORT"])
        records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        assert [(r["sum"], r["rank"]) for r in records] == [(3.0, 0)]  # rank 0's only
        out = (run / "stdout.log").read_text()
        assert "[rank0]:rank 0 of 2: sum 3.0" in out and "[rank1]:rank 1 of 2: sum 3.0" in out
        assert (run / "ranks").is_dir()
    assert len(ports) == 2  # two runs at once, each its own rendezvous
    summaries = sorted((r["summary"]["lr"], r["summary"]["world"], r["summary"]["sum"])
                       for r in status["runs"])
    assert summaries == [(0.1, 2, 3.0), (0.2, 2, 3.0)]


def test_a_failing_rank_crashes_the_run_with_that_ranks_traceback(ddp: Project) -> None:
    ddp.run(*command("task.mode=raise"))
    (run,) = runs(ddp)
    (row,) = ddp.status()["runs"]
    assert row["state"] == "CRASHED"
    assert row["reason"] == "RankFailed: rank 1 of 2 failed: ValueError: rank 1 fails on purpose"
    crash = (run / "CRASH.txt").read_text()
    assert "the rank's traceback:" in crash and "ddp_task.py" in crash
    assert "raise ValueError" in crash


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is gone too
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def test_sigkill_of_the_runner_leaves_no_rank_and_the_same_command_finishes(
        ddp: Project) -> None:
    proc = ddp.popen(*command("task.mode=wait"))
    wait_for(lambda: len(list(ddp.root.glob("outputs/*/runs/*/rank-*.json"))) == 2, 120)
    pids = [json.loads(p.read_text())["pid"] for p in ddp.root.glob("outputs/*/runs/*/rank-*.json")]
    assert all(_alive(pid) for pid in pids)
    os.kill(proc.pid, signal.SIGKILL)  # the runner only: its fork server, run, ranks follow
    proc.communicate(timeout=30)
    wait_for(lambda: not any(_alive(pid) for pid in pids), 20)
    (ddp.root / "release").touch()
    time.sleep(0.1)
    ddp.run(*command("task.mode=wait"), check=True)
    (row,) = ddp.status()["runs"]
    assert row["state"] == "COMPLETED" and row["attempt"] == 2


def test_a_pinned_runs_ranks_share_its_slot(ddp: Project) -> None:
    """launcher=pinned: the run's ranks run on its slot's cores, its thread pools split."""
    cpus = sorted(os.sched_getaffinity(0))[:2]
    ddp.run(*command("launcher=pinned", "launcher.cpus_per_run=2",
                     f"launcher.cpus=[{','.join(map(str, cpus))}]"), check=True)
    (run,) = runs(ddp)
    envs = [json.loads((run / f"rank-{r}.json").read_text()) for r in (0, 1)]
    assert [e["cpus"] for e in envs] == [cpus, cpus]
    expected = "1" if "OMP_NUM_THREADS" not in os.environ else os.environ["OMP_NUM_THREADS"]
    assert [e["threads"] for e in envs] == [expected, expected]
    assert ddp.status()["runs"][0]["summary"]["sum"] == 3.0


@pytest.mark.parametrize("extra, said", [
    (["launcher._target_=one_process.OneProcess"],
     "launcher.nproc_per_run=2: OneProcess starts one process per run"),
])
def test_what_a_distributed_run_cannot_do_yet_is_refused_before_anything_is_written(
        ddp: Project, extra: list[str], said: str) -> None:
    (ddp.root / "one_process.py").write_text(  # a backend of one's own that cannot
        "from runner.launchers.local import LocalLauncher\n\n"
        "class OneProcess(LocalLauncher):\n    ranks = False\n")
    proc = ddp.run(*command(*extra))
    assert proc.returncode != 0 and said in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (ddp.root / "outputs").exists() or not any((ddp.root / "outputs").iterdir())


def test_rank_zero_runs_the_trackers_one_tracked_run_per_run(
        ddp: Project, wandb_offline: None) -> None:
    """tracker=wandb (the real package, offline) on a run of two ranks: one WandB run, with
    rank 0's metrics and summary; the run's own process tracks nothing."""
    pytest.importorskip("wandb")
    from wandb_offline_reader import load_run

    ddp.run(*command("tracker=wandb", "tracker.wandb.project=ddp"), check=True)
    (run,) = runs(ddp)
    (tracked,) = sorted(run.glob("wandb/offline-run-*/run-*.wandb"))  # one, not one per rank
    meta, config, summary, history = load_run(tracked)
    assert meta["project"] == "ddp" and meta["name"] == run.name and meta["exit_code"] == 0
    assert [(h["sum"], h["rank"]) for h in history if "sum" in h] == [(3.0, 0)]
    assert summary["world"] == 2 and summary["sum"] == 3.0
    assert config["task"]["lr"] == 0.1


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_a_rank_killed_mid_run_interrupts_the_run_and_the_next_launch_resumes_it(
        ddp: Project, sig: signal.Signals) -> None:
    """SIGKILL or SIGTERM of one rank (a user, a node's OOM killer): the run is INTERRUPTED,
    saying which rank, no rank is left, and the same command runs it again to the end. (A
    forked rank does not keep its agent's handlers, which would make a SIGTERM a crash.)"""
    proc = ddp.popen(*command("task.mode=wait"))
    wait_for(lambda: len(list(ddp.root.glob("outputs/*/runs/*/rank-*.json"))) == 2, 120)
    (run,) = runs(ddp)
    pids = {r: json.loads((run / f"rank-{r}.json").read_text())["pid"] for r in (0, 1)}
    (row,) = ddp.status()["runs"]  # the lease names every rank's process and host
    facts = row["lease"]["launcher"]
    assert {r: facts[f"rank{r}"]["pid"] for r in (0, 1)} == pids, facts
    assert all(facts[f"rank{r}"]["host"] for r in (0, 1))
    os.kill(pids[1], sig)
    proc.communicate(timeout=60)
    (row,) = ddp.status()["runs"]
    assert row["state"] == "INTERRUPTED", row
    assert row["reason"] == f"rank 1 of 2 was killed by {sig.name}"
    wait_for(lambda: not any(_alive(pid) for pid in pids.values()), 20)
    (ddp.root / "release").touch()
    ddp.run(*command("task.mode=wait"), check=True)
    (row,) = ddp.status()["runs"]
    assert row["state"] == "COMPLETED" and row["attempt"] == 2


def test_a_hung_rank_ends_its_run_at_the_timeout_with_every_rank(ddp: Project) -> None:
    """A rank that hangs (SIGSTOP) cannot hang the sweep: launcher.timeout_min ends the run,
    CRASHED with the timeout as its reason, and no rank is left, the stopped one included."""
    proc = ddp.popen(*command("task.mode=wait", "launcher.timeout_min=0.15",
                              "launcher.kill_grace_s=2"))
    wait_for(lambda: len(list(ddp.root.glob("outputs/*/runs/*/rank-*.json"))) == 2, 120)
    (run,) = runs(ddp)
    pids = {r: json.loads((run / f"rank-{r}.json").read_text())["pid"] for r in (0, 1)}
    os.kill(pids[1], signal.SIGSTOP)
    try:
        proc.communicate(timeout=90)
        (row,) = ddp.status()["runs"]
        assert row["state"] == "CRASHED" and "timed out after launcher.timeout_min=0.15" in \
            row["reason"], row
        wait_for(lambda: not any(_alive(pid) for pid in pids.values()), 20)
    finally:
        for pid in pids.values():  # (nothing of the test left behind, whatever happened)
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)


HYDRA_APP = '''
import hydra
import runner

@hydra.main(version_base=None, config_path=None, config_name=None)
def main(cfg):
    ctx = runner.current_run()
    dist = runner.distributed()
    import torch
    x = torch.tensor([float(ctx.rank + 1)])
    dist.all_reduce(x)
    print(f"rank {ctx.rank} of {ctx.world_size}: sum {x.item()}", flush=True)
    return x.item() * 10 + ctx.rank + cfg.lr

if __name__ == "__main__":
    main()
'''


def test_a_hydra_apps_jobs_run_on_two_ranks_each(tmp_path: Path) -> None:
    """hydra.launcher.nproc_per_run=2: each job of a Hydra app runs on two ranks that meet (gloo);
    the job's return (Hydra's JobReturn, the run's summary) is rank 0's, with Hydra's task name,
    and rank 0 alone writes the job's .hydra/."""
    import subprocess
    import sys

    (tmp_path / "app.py").write_text(HYDRA_APP)
    proc = subprocess.run([sys.executable, "app.py", "-m", "hydra/launcher=runner",
                           "hydra.launcher.nproc_per_run=2", "+lr=0.1,0.2"], cwd=tmp_path,
                          text=True, capture_output=True, timeout=240)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for rank in (0, 1):
        assert proc.stdout.count(f"[rank{rank}]:rank {rank} of 2: sum 3.0") == 2, proc.stdout
    (sweep,) = (tmp_path / "multirun").iterdir()
    returns = [json.loads(p.read_text()) for p in sweep.glob("runs/*/hydra_return.json")]
    assert sorted((r["value"], r["task_name"]) for r in returns) == [(30.1, "app"), (30.2, "app")]
    for job in ("0", "1"):
        assert sorted(p.name for p in (sweep / job / ".hydra").iterdir()) == [
            "config.yaml", "hydra.yaml", "overrides.yaml"]
