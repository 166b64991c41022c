"""``python -m runner wandb-sync``: a sweep logged to WandB offline (as on compute nodes without
internet) uploaded by WandB's own sync to the local fake of WandB's server; then the bot's
watcher sees those runs like any other."""

from __future__ import annotations

import os
import signal
import time

import pytest

from conftest import Project, wait_for
from fakes.wandb_graphql import ENTITY, FakeWandb

pytest.importorskip("wandb")


def test_offline_runs_are_synced_once_and_then_watched(project: Project, wandb_offline: None,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    proc = project.run("tracker=wandb", "tracker.wandb.project=nodes", "task.lr=0.1,0.2",
                       "seed=1,2", "task.steps=4")
    assert proc.returncode == 0, proc.stderr
    sweep = project.sweep_dir()

    # no key on this machine: refused before anything is uploaded
    with FakeWandb() as fake:
        monkeypatch.setenv("WANDB_BASE_URL", fake.url)
        said = project.cli("wandb-sync", str(sweep))
        assert said.returncode == 2, said.stdout + said.stderr
        assert "wandb-sync needs a WandB API key on this machine" in said.stderr
        assert not fake.queries

        dry = project.cli("wandb-sync", str(sweep), "--dry-run")
        assert dry.returncode == 0 and "would sync 4 offline WandB run(s) of 4 run(s)" in \
            dry.stdout, dry.stdout + dry.stderr

        key = "s" * 40
        monkeypatch.setenv("WANDB_API_KEY", key)
        from runner.integrations.discord_bot.wandb_source import WandbSource
        from runner.integrations.discord_bot.watcher import Watcher, WatchStore

        now = [time.time()]
        watcher = Watcher(WatchStore(project.root / "watches.json"), WandbSource(),
                          every_s=60.0, clock=lambda: now[0])
        try:
            watch, total, _ = watcher.add(1, f"{ENTITY}/nodes", "loss", 7, 10)
            assert total == 0

            said = project.cli("wandb-sync", str(sweep), timeout=300)
            assert said.returncode == 0, said.stdout + said.stderr
            assert "synced 4 offline WandB run(s), 0 already synced (skipped), 0 failed" in \
                said.stdout
            assert key not in said.stdout + said.stderr
            runs = fake.of_project(ENTITY, "nodes")
            assert len(runs) == 4
            for run in runs:
                assert run.state == "finished" and run.group == sweep.name
                assert [row["loss"] for row in run.history] == pytest.approx(
                    [1.0, 0.5, 1 / 3, 0.25])
                assert {run.config["seed"] for run in runs} == {1, 2}

            again = project.cli("wandb-sync", str(sweep), timeout=300)
            assert again.returncode == 0
            assert "synced 0 offline WandB run(s), 4 already synced (skipped)" in again.stdout
            assert len(fake.of_project(ENTITY, "nodes")) == 4

            now[0] += 60
            watcher.poll(watch)  # the watcher sees the synced runs like any other
            assert sorted(p["name"] for p in watch.outbox) == sorted(r.display_name
                                                                      for r in runs)
            assert {p["state"] for p in watch.outbox} == {"finished"}
        finally:
            watcher.source.close()
            import wandb

            wandb.teardown()


def test_a_resumed_run_is_synced_as_one_wandb_run_and_a_running_one_waits(
        project: Project, wandb_offline: None, monkeypatch: pytest.MonkeyPatch) -> None:
    # the first attempt logs its steps and then waits for a file that comes only after the kill
    proc = project.popen("tracker=wandb", "tracker.wandb.project=nodes", "task.sleep=0.12",
                         "task.steps=12", "task.mode=wait_file")
    wait_for(lambda: list((project.root / "outputs").glob("*/runs/*/wandb/offline-run-*")))
    time.sleep(1.0)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=30)
    project.markers.mkdir(parents=True, exist_ok=True)
    (project.markers / "release").touch()
    sweep = project.sweep_dir()
    with FakeWandb() as fake:
        monkeypatch.setenv("WANDB_BASE_URL", fake.url)
        monkeypatch.setenv("WANDB_API_KEY", "s" * 40)
        said = project.cli("wandb-sync", str(sweep), timeout=300)
        assert said.returncode == 0, said.stdout + said.stderr
        assert "synced 0 offline WandB run(s)" in said.stdout
        assert "1 still RUNNING (skipped: sync them when they end)" in said.stdout
        assert not fake.runs
        resumed = project.cli("resume", str(sweep), timeout=300)
        assert resumed.returncode == 0, resumed.stderr
        said = project.cli("wandb-sync", str(sweep), timeout=300)
        assert said.returncode == 0, said.stdout + said.stderr
        # the killed attempt: empty (killed before WandB wrote a record), torn (uploaded up to
        # the tear) or whole (the sweep's WandB service outlived the kill and closed its log);
        # the finished attempt: synced
        assert ("synced 1 offline WandB run(s), 0 already synced (skipped), 1 empty" in
                said.stdout or "synced 2 offline WandB run(s)" in said.stdout), said.stdout
        assert said.stdout.rstrip().endswith("0 failed"), said.stdout
        (run,) = fake.of_project(ENTITY, "nodes")  # one WandB run, continued
        assert run.state == "finished"
        assert max(row["_step"] for row in run.history) == 11
        again = project.cli("wandb-sync", str(sweep), timeout=300)
        assert "synced 0 offline WandB run(s)" in again.stdout, again.stdout
