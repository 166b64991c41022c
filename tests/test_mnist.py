"""The MNIST example: real digits offline, metrics through runner.log, checkpoint and resume."""

from __future__ import annotations

import json
import os
import signal

import pytest

from conftest import wait_for

pytest.importorskip("torch")

SMALL = ("task=mnist", "task.train_size=2000", "task.epochs=4", "task.log_every=5",
         "task.channels=8")


def test_mnist_learns_from_real_digits(project):
    project.run("task=mnist", "task.train_size=1500", "task.epochs=2", "task.channels=8",
                check=True)
    (row,) = project.status()["runs"]
    assert row["state"] == "COMPLETED"
    assert row["summary"]["val/acc"] > 0.6  # 10 classes: chance is 0.1
    assert row["summary"]["steps"] == 2 * 24  # ceil(1500 / 64) steps per epoch
    run_dir = project.sweep_dir() / "runs" / os.path.basename(row["dir"])
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    # every task.eval_every=20 steps, and at the end of each 24-step epoch
    assert [r["step"] for r in records if "val/acc" in r] == [20, 24, 40, 48]
    assert all("train/loss" in r for r in records if "val/acc" not in r)
    assert [r["step"] for r in records if "samples_per_s" in r] == [24, 48]
    assert (run_dir / "checkpoints" / "last.pt").is_file()


def test_mnist_resumes_from_its_checkpoint_after_a_kill(project):
    proc = project.popen(*SMALL)
    ckpt = project.root / "outputs"
    wait_for(lambda: list(ckpt.glob("*/runs/*/checkpoints/last.pt")), timeout=90, interval=0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=30)
    sweep = project.sweep_dir()
    resumed = project.cli("resume", str(sweep))
    assert resumed.returncode == 0, resumed.stderr
    (row,) = project.status()["runs"]
    assert row["state"] == "COMPLETED" and row["attempt"] == 2
    run_dir = sweep / "runs" / os.path.basename(row["dir"])
    assert "resumed from" in (run_dir / "stdout.log").read_text()
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    second = [r for r in records if r["attempt"] == 2]
    # the second attempt starts after the checkpointed epoch, not from step 0
    assert second and min(r["step"] for r in second) > 32
    assert row["summary"]["steps"] == 4 * 32


def test_mnist_trains_with_ddp_on_two_ranks_as_one_process_does(project):
    """launcher.nproc_per_run=2: DistributedDataParallel on two gloo ranks, each its share of
    the same global batches: the same steps and, up to floating point, the same accuracy as
    one process; one checkpoint, rank 0's metrics."""
    base = ("task=mnist", "task.train_size=1500", "task.epochs=2", "task.channels=8")
    project.run(*base, "runner.name=one", check=True)
    project.run(*base, "launcher.nproc_per_run=2", "runner.name=two", check=True)
    (one,) = project.status(project.root / "outputs" / "one")["runs"]
    (two,) = project.status(project.root / "outputs" / "two")["runs"]
    assert one["state"] == two["state"] == "COMPLETED"
    assert one["summary"]["steps"] == two["summary"]["steps"] == 2 * 24
    assert two["summary"]["val/acc"] > 0.6
    assert abs(two["summary"]["val/acc"] - one["summary"]["val/acc"]) < 0.03, (one, two)
    run_dir = project.root / "outputs" / "two" / "runs" / os.path.basename(two["dir"])
    out = (run_dir / "stdout.log").read_text() + (run_dir / "stderr.log").read_text()
    assert (run_dir / "checkpoints" / "last.pt").is_file() and (run_dir / "ranks").is_dir()
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "samples_per_s" in r] == [24, 48]  # rank 0's only
    assert "Traceback" not in out
