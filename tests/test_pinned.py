"""Pinned launcher: slots from topology and GPUs, pinning seen from inside the runs."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from types import SimpleNamespace

import pytest

from conftest import wait_for
from runner.errors import ConfigError
from runner.launchers.pinned import build_slots, physical_cores


def conf(**kw):
    base = {"cpus_per_run": 1, "gpus_per_run": 0, "runs_per_gpu": 1}
    return SimpleNamespace(**{**base, **kw})


def fake_topology(tmp_path: Path, siblings: dict[int, str]) -> Path:
    for cpu, text in siblings.items():
        d = tmp_path / f"cpu{cpu}" / "topology"
        d.mkdir(parents=True)
        (d / "thread_siblings_list").write_text(text + "\n")
    return tmp_path


def test_hyperthread_siblings_stay_together(tmp_path):
    sys_cpu = fake_topology(tmp_path, {0: "0,4", 1: "1,5", 2: "2,6", 3: "3,7",
                                       4: "0,4", 5: "1,5", 6: "2,6", 7: "3,7"})
    cores = physical_cores(range(8), sys_cpu)
    assert cores == [(0, 4), (1, 5), (2, 6), (3, 7)]
    slots = build_slots(conf(cpus_per_run=2), cores, [])
    assert [s.cpus for s in slots] == [(0, 4), (1, 5), (2, 6), (3, 7)]
    # a restricted affinity keeps only the allowed siblings
    assert physical_cores([0, 1, 4], sys_cpu) == [(0, 4), (1,)]


def test_gpu_shares_round_robin_and_cpu_limits():
    slots = build_slots(conf(cpus_per_run=0, gpus_per_run=1, runs_per_gpu=2), [(0,), (1,)],
                        ["0", "1"])
    assert [s.gpus for s in slots] == [("0",), ("1",), ("0",), ("1",)]
    slots = build_slots(conf(cpus_per_run=1, gpus_per_run=1, runs_per_gpu=4), [(0,), (1,)],
                        ["0"])
    assert len(slots) == 2 and all(s.gpus == ("0",) for s in slots)  # CPUs are the limit
    two = build_slots(conf(cpus_per_run=1, gpus_per_run=2), [(c,) for c in range(8)],
                      ["0", "1", "2", "3"])
    assert [s.gpus for s in two] == [("0", "1"), ("2", "3")]


@pytest.mark.parametrize("kw, gpus, message", [
    ({"cpus_per_run": 3}, [], "cpus_per_run=3 but only 2 CPU"),
    ({"gpus_per_run": 1}, [], "no GPU is visible"),
    ({"gpus_per_run": 3}, ["0", "1"], "only 2 GPU"),
    ({"gpus_per_run": 2, "runs_per_gpu": 2}, ["0", "1"], "runs_per_gpu > 1 needs"),
])
def test_impossible_requests_are_refused(kw, gpus, message):
    with pytest.raises(ConfigError, match=message):
        build_slots(conf(**kw), [(0,), (1,)], gpus)


def _envs(project) -> list[dict]:
    out = []
    for row in project.status()["runs"]:
        data = json.loads((Path(row["dir"]) / "env.json").read_text())
        start = min(f.stat().st_mtime for f in project.markers.glob(f"start-{row['id']}-*"))
        done = min(f.stat().st_mtime for f in project.markers.glob(f"done-{row['id']}-*"))
        out.append({**data, "start": start, "done": done})
    return out


def _overlap(a: dict, b: dict) -> bool:
    return a["start"] < b["done"] and b["start"] < a["done"]


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs 2 CPUs")
def test_each_run_is_pinned_to_its_own_core(project):
    proc = project.popen("launcher=pinned", "launcher.cpus_per_run=1", "seed=range(4)",
                         "task.sleep=1.0", "task.steps=10", "task.record_env=true")
    sweep = wait_for(lambda: [p for p in (project.root / "outputs").glob("*/sweep.json")
                              if not p.parent.name.startswith(".")])[0].parent  # (frozen)

    def running_slots():
        rows = project.status(sweep)["runs"]
        got = [r["lease"]["launcher"] for r in rows if r["state"] == "RUNNING"]
        return got if len(got) == 2 else None

    slots = wait_for(running_slots)
    assert sorted(s["cpus"][0] for s in slots) == sorted(os.sched_getaffinity(0))[:2]
    table = project.cli("status", str(sweep)).stdout
    assert re.search(r"on cpu \d+ · step=", table), table
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, out
    envs = _envs(project)
    assert all(len(e["affinity"]) == 1 for e in envs)
    assert all(e["env"]["OMP_NUM_THREADS"] == "1" and e["env"]["MKL_NUM_THREADS"] == "1"
               for e in envs)
    assert {e["env"]["RUNNER_SLOT"] for e in envs} == {"0", "1"}  # both slots, each reused
    for i, a in enumerate(envs):
        for b in envs[i + 1:]:
            if _overlap(a, b):
                assert a["affinity"] != b["affinity"]


def test_fake_gpus_are_shared_by_runs_per_gpu(project):
    proc = project.run("launcher=pinned", "launcher.cpus_per_run=0", "launcher.gpus=[0,1]",
                       "launcher.gpus_per_run=1", "launcher.runs_per_gpu=2", "seed=range(8)",
                       "task.sleep=0.6", "task.record_env=true")
    assert proc.returncode == 0, proc.stderr
    envs = _envs(project)
    assert {e["env"]["CUDA_VISIBLE_DEVICES"] for e in envs} == {"0", "1"}
    for e in envs:  # never more than 2 runs on one GPU at any moment (when one starts)
        gpu = e["env"]["CUDA_VISIBLE_DEVICES"]
        at_once = [o for o in envs if o["env"]["CUDA_VISIBLE_DEVICES"] == gpu
                   and o["start"] <= e["start"] < o["done"]]
        assert len(at_once) <= 2, at_once
    peak = max(sum(1 for o in envs if o["start"] <= e["start"] < o["done"]) for e in envs)
    assert peak == 4


def test_gpu_request_without_gpu_fails_before_anything_runs(project, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    proc = project.run("launcher=pinned", "launcher.gpus_per_run=1")
    assert proc.returncode == 2
    assert "launcher.gpus_per_run=1 but no GPU is visible" in proc.stderr
    assert not (project.root / "outputs").exists()


TORCH_TASK = '''
import json, os, torch, runner

def main(cfg):
    ctx = runner.current_run()
    (ctx.run_dir / "threads.json").write_text(json.dumps(
        {"torch": torch.get_num_threads(), "affinity": sorted(os.sched_getaffinity(0))}))
'''


def test_torch_threads_are_capped_even_when_preloaded(project):
    pytest.importorskip("torch")
    (project.root / "torch_task.py").write_text(TORCH_TASK)
    proc = project.run("launcher=pinned", "launcher.cpus_per_run=1", "task.fn=torch_task:main",
                       "runner.preload=[torch]", "seed=0,1")
    assert proc.returncode == 0, proc.stderr
    for row in project.status()["runs"]:
        got = json.loads((Path(row["dir"]) / "threads.json").read_text())
        assert got["torch"] == 1 and len(got["affinity"]) == 1
