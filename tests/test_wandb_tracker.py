"""The WandB tracker with the real wandb package, offline; runs are read back from their files."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from conftest import wait_for

pytest.importorskip("wandb")

from wandb_offline_reader import load_run  # noqa: E402


def wandb_files(run_dir: str) -> list[Path]:
    return sorted(Path(run_dir).glob("wandb/offline-run-*/run-*.wandb"))


def test_every_run_is_a_wandb_run_in_the_sweeps_group(project, wandb_offline):
    proc = project.run("tracker=wandb", "tracker.wandb.project=mnist", "task.lr=0.1,0.2",
                       "seed=3")
    assert proc.returncode == 0, proc.stderr
    sweep = project.sweep_dir()
    for row in project.status()["runs"]:
        (path,) = wandb_files(row["dir"])
        meta, config, summary, history = load_run(path)
        assert meta["group"] == sweep.name and meta["name"] == Path(row["dir"]).name
        assert meta["project"] == "mnist" and meta["exit_code"] == 0
        assert meta["id"] == (Path(row["dir"]) / "wandb_id").read_text().strip()
        assert config["task"]["lr"] == row["values"]["task.lr"] and config["seed"] == 3
        losses = [h["loss"] for h in history if "loss" in h]
        assert losses == [1.0, 0.5, pytest.approx(1 / 3)]
        assert [h["_step"] for h in history if "loss" in h] == [0, 1, 2]
        assert summary["score"] == row["summary"]["score"]


def test_a_resumed_run_continues_the_same_wandb_run(project, wandb_offline):
    # the first attempt logs its steps and then waits for a file that comes only after the kill
    proc = project.popen("tracker=wandb", "task.sleep=0.4", "task.steps=40",
                         "task.mode=wait_file")
    wait_for(lambda: list((project.root / "outputs").glob("*/runs/*/wandb/offline-run-*")))
    time.sleep(1.0)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=30)
    project.markers.mkdir(parents=True, exist_ok=True)
    (project.markers / "release").touch()
    sweep = project.sweep_dir()
    (row,) = project.status()["runs"]
    first_id = (Path(row["dir"]) / "wandb_id").read_text()
    done = project.cli("resume", str(sweep), timeout=120)
    assert done.returncode == 0, done.stderr
    files = wandb_files(row["dir"])
    assert len(files) == 2  # two attempts...
    # ...of one WandB run, never a duplicate (the killed attempt's log may end before its
    # run record, so its id is read from wandb's own folder name)
    assert {f.parent.name.rsplit("-", 1)[1] for f in files} == {first_id.strip()}
    meta = load_run(files[-1])[0]
    assert meta["id"] == first_id.strip() and meta["exit_code"] == 0


def test_online_without_a_key_is_refused_before_anything_runs(project, wandb_offline, monkeypatch):
    monkeypatch.delenv("WANDB_MODE")
    proc = project.run("tracker=wandb")
    assert proc.returncode == 2
    assert "online mode needs a WandB API key" in proc.stderr
    assert not (project.root / "outputs").exists()


def test_online_with_an_unreachable_server_fails_fast_with_a_clear_reason(project, wandb_offline,
                                                                          monkeypatch):
    monkeypatch.delenv("WANDB_MODE")
    monkeypatch.setenv("WANDB_API_KEY", "a" * 40)
    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")  # nothing listens: refused
    t0 = time.monotonic()
    proc = project.run("tracker=wandb", "tracker.wandb.init_timeout_s=5")
    assert time.monotonic() - t0 < 60
    assert proc.returncode == 1
    (row,) = project.status()["runs"]
    assert row["state"] == "CRASHED" and row["reason"]


def test_disabled_mode_tracks_nothing_and_runs(project, wandb_offline, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    proc = project.run("tracker=wandb")
    assert proc.returncode == 0, proc.stderr
    (row,) = project.status()["runs"]
    assert wandb_files(row["dir"]) == []


def test_the_fork_server_imports_the_trackers_once_per_sweep(tmp_path, wandb_offline):
    import json as _json

    from rich.console import Console

    from runner.execution.trackers import preload_modules
    from runner.integrations.wandb_tracker import WandbTracker
    from runner.scheduling.scheduler import _SweepLoop
    from runner.storage.store import MANIFEST_VERSION, SweepStore

    tracker = {"wandb": {"_target_": "runner.integrations.wandb_tracker.WandbTracker"}}
    wanted = ["runner.integrations.wandb_tracker", *WandbTracker.imports]
    assert wanted[:2] == ["runner.integrations.wandb_tracker", "wandb"]
    assert preload_modules(tracker) == wanted
    (tmp_path / "sweep.json").write_text(_json.dumps(
        {"version": MANIFEST_VERSION, "name": "s", "runs": [], "execution": {}}))
    execution = {"runner": {"preload": ["json"]}, "tracker": tracker,
                 "launcher": {"_target_": "runner.launchers.local.LocalLauncher"}}
    loop = _SweepLoop(SweepStore(tmp_path), execution, Console(file=open(os.devnull, "w")))
    try:
        preload = _json.loads(loop.launcher.server.proc.args[-2])  # (then the launcher pid)
        (service,) = loop.services  # one WandB service for the sweep's runs
        assert loop.launcher.extra_env["WANDB_SERVICE"] == service.env["WANDB_SERVICE"]
    finally:
        loop.launcher.close()
        for service in loop.services:
            service.close()
        loop.console.file.close()
    assert preload == ["json", *wanted]
    assert service.proc.poll() is not None  # closed with the sweep
    execution["runner"]["preload_trackers"] = False
    loop = _SweepLoop(SweepStore(tmp_path), execution, Console(file=open(os.devnull, "w")))
    loop.console.file.close()
    assert loop.launcher.preload == [] and loop.services == []
    assert "WANDB_SERVICE" not in loop.launcher.extra_env


def test_a_sweeps_runs_share_one_wandb_service_that_ends_with_the_sweep(project, wandb_offline):
    import psutil

    def wandb_helpers() -> list[psutil.Process]:
        found = []
        for proc in psutil.process_iter(["name", "cmdline"]):
            line = " ".join(proc.info["cmdline"] or [])
            if "wandb-core" in (proc.info["name"] or "") or "wandb.setup(" in line:
                found.append(proc)
        return found

    before = {p.pid for p in wandb_helpers()}
    proc = project.run("tracker=wandb", "task.lr=0.1,0.2,0.3", "launcher.max_parallel=3")
    assert proc.returncode == 0, proc.stderr
    for row in project.status()["runs"]:
        (log,) = Path(row["dir"]).glob("wandb/offline-run-*/logs/debug.log")
        assert "Connected to an existing wandb-core service via WANDB_SERVICE" in \
            log.read_text()
        (path,) = wandb_files(row["dir"])
        assert load_run(path)[0]["exit_code"] == 0  # and every run's data is complete
    wait_for(lambda: not [p for p in wandb_helpers() if p.pid not in before], timeout=30)
    # without preloading (runner.preload_trackers=false) each run starts its own, as before
    proc = project.run("tracker=wandb", "task.lr=0.5", "runner.preload_trackers=false",
                       "runner.name=own")
    assert proc.returncode == 0, proc.stderr
    (log,) = (project.root / "outputs" / "own").glob("runs/*/wandb/offline-run-*/logs/debug.log")
    assert "existing wandb-core service" not in log.read_text()
