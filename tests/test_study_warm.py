"""``sweep.warm_start``: the ended trials of another sweep as a study's history, frozen with
the study, with the other sweep's differing settings stated."""

from __future__ import annotations

import json
import math
import os
import shutil
import signal

import pytest
from test_study import args, trials, with_study_task

from conftest import Project, wait_for

pytest.importorskip("optuna")


def _distance(rows: list[dict]) -> float:
    """How far a study's proposals are from the best lr (1e-2), in decades, on average."""
    return sum(abs(math.log10(r["values"]["task.lr"]) + 2) for r in rows) / len(rows)


def test_a_warm_started_study_learns_from_the_other_sweep_from_its_first_trial(
        project: Project) -> None:
    study = with_study_task(project)
    study.run(*args("sweep.n_trials=12", "task.epochs=2", "runner.name=first"), check=True)
    warm = study.run(*args("sweep.n_trials=4", "task.epochs=3", "runner.name=warm",
                           "sweep.warm_start=outputs/first"), check=True)
    said = warm.stdout + warm.stderr
    assert "warm start: 12 ended trial(s) of first taken as history" in said, said
    assert "task.epochs=2 there, 3 here" in said, said
    frozen = json.loads((study.root / "outputs" / "warm" / "warm_start.json").read_text())
    assert len(frozen["trials"]) == 12 and frozen["differing"] == ["task.epochs"]
    cold = study.run(*args("sweep.n_trials=4", "task.epochs=3", "runner.name=cold"),
                     check=True)
    assert "warm start" not in cold.stdout + cold.stderr
    warm_rows, cold_rows = (trials_of(study, name) for name in ("warm", "cold"))
    assert len(warm_rows) == len(cold_rows) == 4
    # the same seed and space: without the history both would propose the same (random) trials
    assert _distance(warm_rows) < _distance(cold_rows), (warm_rows, cold_rows)

    # frozen with the study: it grows with the same history when the other sweep is gone
    shutil.rmtree(study.root / "outputs" / "first")
    grown = study.cli("resume", str(study.root / "outputs" / "warm"), "sweep.n_trials=6",
                      "runner.progress=false")
    assert grown.returncode == 0, grown.stderr
    assert len(trials_of(study, "warm")) == 6


def trials_of(project: Project, name: str) -> list[dict]:
    return trials(project, project.root / "outputs" / name)


def test_a_warm_start_that_is_not_a_sweep_is_refused_before_anything_is_written(
        project: Project) -> None:
    study = with_study_task(project)
    bad = study.run(*args("sweep.n_trials=4", "sweep.warm_start=outputs/nope"))
    assert bad.returncode != 0
    assert "sweep.warm_start: outputs/nope is not a sweep folder" in bad.stderr, bad.stderr
    assert "Traceback" not in bad.stderr
    assert not (study.root / "outputs").exists() or not any((study.root / "outputs").iterdir())


def test_sigkill_mid_warm_started_study_then_resume_keeps_its_history(project: Project) -> None:
    """Killed mid-study, a warm-started study resumes with the same frozen history (the file
    is written with the study, never again) and loses or repeats no trial."""
    study = with_study_task(project)
    study.run(*args("sweep.n_trials=6", "task.epochs=2", "runner.name=first"), check=True)
    more = ("sweep.n_trials=8", "launcher.max_parallel=2", "task.sleep=0.15", "task.epochs=2",
            "runner.name=warm", "sweep.warm_start=outputs/first")
    proc = study.popen(*args(*more))
    history = study.root / "outputs" / "warm" / "warm_start.json"
    wait_for(lambda: history.exists() and len(list(
        (study.root / "outputs" / "warm" / "runs").glob("*/COMPLETED"))) >= 2, timeout=120)
    frozen = history.read_bytes()
    os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=10)
    study.run(*args("sweep.n_trials=9", "task.epochs=2", "runner.name=first"), check=True)
    again = study.run(*args(*more), timeout=300)  # (the first sweep changed meanwhile)
    assert again.returncode == 0, again.stdout + again.stderr
    assert history.read_bytes() == frozen
    said = again.stderr + again.stdout
    assert "the study's history of 6 trial(s), frozen when it was created" in said, said
    rows = trials_of(study, "warm")
    assert [r["values"]["trial"] for r in rows] == list(range(8))
    assert all(r["state"] == "COMPLETED" for r in rows) and len({r["id"] for r in rows}) == 8
