"""``python -m runner extend SWEEP_DIR 'seed=range(5)'``: more runs in the same sweep, from its
recorded command with wider axes; never a run of another config under the sweep's name."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import Project


def _grid(project: Project) -> Path:
    project.run("+sweep=grid", "task.lr=0.1,0.2", "seed=1,2", "runner.progress=false",
                check=True)
    return project.sweep_dir()


def _values(project: Project, sweep: Path) -> list[tuple[float, int, str]]:
    return sorted((r["values"]["task.lr"], r["values"]["seed"], r["state"])
                  for r in project.status(sweep)["runs"])


def test_extend_adds_seeds_then_values_and_launches_them(project: Project) -> None:
    sweep = _grid(project)
    ids = {r["id"] for r in project.status(sweep)["runs"]}
    out = project.cli("extend", str(sweep), "seed=range(1,5)", "launcher.max_parallel=2",
                      "runner.progress=false")
    assert out.returncode == 0, out.stderr
    assert f"added 4 run(s) to {sweep}" in out.stderr and "8 in all" in out.stderr
    assert _values(project, sweep) == [(lr, s, "COMPLETED") for lr in (0.1, 0.2)
                                       for s in (1, 2, 3, 4)]
    assert ids <= {r["id"] for r in project.status(sweep)["runs"]}  # the frozen runs kept
    # a second extension builds on the first; the original command resumes the whole sweep
    out = project.cli("extend", str(sweep), "task.lr=0.1,0.2,0.3", "--no-launch")
    assert out.returncode == 0 and "added 4 run(s)" in out.stderr and "resume" in out.stderr
    assert [v for v in _values(project, sweep) if v[2] == "UNHATCHED"] == [
        (0.3, s, "UNHATCHED") for s in (1, 2, 3, 4)]
    again = project.run("+sweep=grid", "task.lr=0.1,0.2", "seed=1,2", "runner.progress=false")
    assert again.returncode == 0 and "resuming sweep" in again.stderr, again.stderr
    assert {v[2] for v in _values(project, sweep)} == {"COMPLETED"} and len(
        _values(project, sweep)) == 12
    manifest = json.loads((sweep / "sweep.json").read_text())
    assert [(e["overrides"], e["added"]) for e in manifest["extensions"]] == [
        (["seed=range(1,5)"], 4), (["task.lr=0.1,0.2,0.3"], 4)]
    assert manifest["varying"] == ["task.lr", "seed"]
    nothing = project.cli("extend", str(sweep), "seed=range(1,3)")
    assert nothing.returncode != 0 and "leaves out 6 of the sweep's 12 runs" in nothing.stderr
    same = project.cli("extend", str(sweep), "seed=range(1,5)", "runner.progress=false")
    assert same.returncode == 0 and "nothing to add" in same.stderr


def test_extend_refuses_what_would_mix_configs_before_writing(project: Project) -> None:
    sweep = _grid(project)
    before = (sweep / "sweep.json").read_text()
    toy = project.root / "conf" / "task" / "toy.yaml"
    toy.write_text(toy.read_text().replace("channels: 8", "channels: 16"))
    changed = project.cli("extend", str(sweep), "seed=range(1,5)")
    assert changed.returncode != 0 and "task.channels: 8 -> 16" in changed.stderr
    toy.write_text(toy.read_text().replace("channels: 16", "channels: 8"))
    for args, says in ((["+task.wd=0.1,0.2"], "leaves out 4 of the sweep's 4 runs"),
                       ([], "give the wider axes"),
                       (["task.nope=1,2"], "task.nope")):
        out = project.cli("extend", str(sweep), *args)
        assert out.returncode != 0 and says in out.stderr, (args, out.stderr)
        assert "Traceback" not in out.stderr
    assert (sweep / "sweep.json").read_text() == before
    assert len(list((sweep / "runs").iterdir())) == 4


KILL_AFTER_FREEZE = '''
import os, signal
from runner.storage.store import SweepStore
_freeze = SweepStore._freeze_runs
def _freeze_runs(self, runs):
    _freeze(self, runs)
    os.kill(os.getpid(), signal.SIGKILL)  # the run folders in place, the manifest not yet
SweepStore._freeze_runs = _freeze_runs
'''


def test_an_extend_killed_before_listing_its_runs_is_finished_by_the_next(
        project: Project) -> None:
    sweep = _grid(project)
    hooks = project.root / "killhooks"
    hooks.mkdir()
    (hooks / "sitecustomize.py").write_text(KILL_AFTER_FREEZE)
    import subprocess
    import sys

    env = project.env()
    env["PYTHONPATH"] = f"{hooks}:{env['PYTHONPATH']}"
    killed = subprocess.run([sys.executable, "-m", "runner", "extend", str(sweep),
                             "seed=range(1,4)"], cwd=project.root, env=env, text=True,
                            capture_output=True, timeout=120)
    assert killed.returncode == -9, killed.stderr
    assert len(project.status(sweep)["runs"]) == 4  # unlisted: never launched
    out = project.cli("extend", str(sweep), "seed=range(1,4)", "runner.progress=false")
    assert out.returncode == 0, out.stderr
    rows = _values(project, sweep)
    assert len(rows) == 6 and {r[2] for r in rows} == {"COMPLETED"}
    assert len(list((sweep / "runs").iterdir())) == 6
