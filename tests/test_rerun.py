"""rerun RUN_DIR on real MNIST runs: the same metrics, the original untouched, overrides and the
parent recorded, resumable, and --from-checkpoint continuing from a copy of the checkpoints."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import Project

pytest.importorskip("torch")

TINY = ("task=mnist", "task.train_size=256", "task.epochs=2", "task.log_every=2",
        "task.eval_every=0", "task.channels=4", "seed=3")


def _rows(path: Path) -> list[dict]:
    """Logged values, without wall-clock time and throughput (they differ run to run)."""
    return [{k: v for k, v in json.loads(line).items() if k not in ("time", "samples_per_s")}
            for line in path.read_text().splitlines()]


def test_rerun_repeats_a_run_exactly_in_a_new_linked_sweep(project: Project) -> None:
    project.run(*TINY, check=True, timeout=300)
    (row,) = project.status()["runs"]
    original = Path(row["dir"])
    before = {p.name: p.read_bytes() for p in original.iterdir() if p.is_file()}

    proc = project.cli("rerun", str(original), timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert f"re-running {row['id']} from" in proc.stderr
    reruns = [d for d in (project.root / "outputs").iterdir() if "-rerun-" in d.name]
    (sweep,) = reruns
    (copy,) = (sweep / "runs").iterdir()
    assert _rows(copy / "metrics.jsonl") == _rows(original / "metrics.jsonl")  # deterministic
    assert {p.name: p.read_bytes() for p in original.iterdir() if p.is_file()} == before
    shown = json.loads(project.cli("show", str(copy), "--json").stdout)  # show, on MNIST too
    assert shown["state"] == "COMPLETED" and shown["config"]["task"]["name"] == "mnist"
    assert shown["summary"]["val/acc"] == json.loads(project.cli(
        "show", str(original), "--json").stdout)["summary"]["val/acc"]
    parent = json.loads((sweep / "sweep.json").read_text())["parent"]
    assert parent["run"] == row["id"] and parent["from_checkpoint"] is False
    assert Path(parent["sweep_dir"]) == original.parent.parent

    again = project.cli("rerun", str(original), timeout=300)  # the same command resumes it
    assert again.returncode == 0 and "resuming the re-run" in again.stderr
    assert "0 of 1 runs to launch" in again.stderr

    changed = project.cli("rerun", str(original), "task.lr=0.01", timeout=300)
    assert changed.returncode == 0, changed.stderr
    (other,) = [d for d in (project.root / "outputs").iterdir()
                if "-rerun-" in d.name and d != sweep]
    manifest = json.loads((other / "sweep.json").read_text())
    assert manifest["parent"]["overrides"] == ["task.lr=0.01"]
    assert manifest["runs"][0]["values"]["task.lr"] == 0.01
    (run,) = (other / "runs").iterdir()
    assert "lr: 0.01" in (run / "config.yaml").read_text()
    bad = project.cli("rerun", str(original), "task.lrr=0.1")
    assert bad.returncode == 2 and "has no key 'task.lrr'" in bad.stderr


def test_rerun_from_the_checkpoint_continues_where_the_run_stopped(project: Project) -> None:
    project.run(*TINY, check=True, timeout=300)
    (row,) = project.status()["runs"]
    original = Path(row["dir"])
    proc = project.cli("rerun", str(original), "--from-checkpoint", "task.epochs=3",
                       timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "copied 1 checkpoint file(s)" in proc.stderr
    (sweep,) = [d for d in (project.root / "outputs").iterdir() if "-rerun-" in d.name]
    (copy,) = (sweep / "runs").iterdir()
    assert "resumed from" in (copy / "stdout.log").read_text()  # at epoch 2 of 3
    epochs = {r.get("epoch") for r in _rows(copy / "metrics.jsonl")} - {None}
    assert epochs == {2}
