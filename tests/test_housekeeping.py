"""Keeping many sweeps in order: ``ls``, ``tag`` and ``note`` (kept atomically, shown by ``ls``,
``status``, ``show``, ``report`` and the bot's queries)."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import REPO, Project, wait_for


def _sweep(project: Project, *overrides: str) -> Path:
    project.run("+sweep=grid", "task.lr=0.1,0.2", "seed=1", *overrides, check=True)
    return project.sweep_dir()


def test_tags_and_notes_on_a_sweep_and_a_run_show_everywhere(project: Project) -> None:
    sweep = _sweep(project)
    run_dir = sorted((sweep / "runs").iterdir())[0]
    run_id = json.loads(project.cli("show", str(run_dir), "--json").stdout)["id"]

    out = project.cli("tag", str(sweep), "baseline", "paper-fig-2")
    assert out.returncode == 0, out.stderr
    assert "baseline, paper-fig-2" in out.stdout
    assert project.cli("tag", str(sweep), "-r", "paper-fig-2").stdout.strip().endswith(
        ": baseline")
    assert project.cli("tag", str(run_dir), "diverged").returncode == 0
    assert project.cli("note", str(sweep), "lr 0.2 looks unstable\nsee run 2").returncode == 0
    assert project.cli("note", str(sweep), "--run", run_id[:6], "a loss spike at step 2"
                       ).returncode == 0

    listing = json.loads(project.cli("ls", "outputs", "--json").stdout)["sweeps"]
    assert [(s["name"], s["tags"], s["notes"], s["runs"], s["done"]) for s in listing] == [
        (sweep.name, ["baseline"], 1, 2, 2)]
    assert listing[0]["bytes"] > 0 and listing[0]["live_runners"] == 0
    table = project.cli("ls").stdout
    assert sweep.name[:20] in table and "baseline (1 note)" in table and "2/2" in table

    status = project.status(sweep)
    assert status["tags"] == ["baseline"] and status["notes"][0]["text"].startswith("lr 0.2")
    assert status["run_tags"] == {run_id: ["diverged"]}
    text = project.cli("status", str(sweep)).stdout
    assert "tags: baseline" in text and "note: lr 0.2 looks unstable" in text
    assert "tags: diverged" in text

    shown = json.loads(project.cli("show", str(run_dir), "--json").stdout)
    assert shown["tags"] == ["diverged"] and shown["notes"][0]["text"] == "a loss spike at step 2"
    assert shown["sweep"]["tags"] == ["baseline"]
    assert "run note" in project.cli("show", str(run_dir)).stdout

    assert project.cli("report", str(sweep), "--metric", "loss").returncode == 0
    md = (sweep / "report" / "loss" / "report.md").read_text()
    assert "Tags: `baseline`." in md and "> lr 0.2 looks unstable" in md and "> see run 2" in md

    from runner.results import queries

    info = queries.run_summary(queries.find_sweep([project.root / "outputs"], sweep.name),
                               run_id)
    assert info["tags"] == ["diverged"] and info["notes"] == ["a loss spike at step 2"]
    assert project.cli("note", str(sweep), "--clear").stdout.strip().endswith("no notes")


def test_ls_filters_by_tag_and_marks_a_live_sweep(project: Project) -> None:
    done = _sweep(project, "runner.name=done")
    assert project.cli("tag", str(done), "keep").returncode == 0
    proc = project.popen("+sweep=grid", "seed=1", "task.mode=wait_file", "runner.name=busy")
    try:
        busy = project.root / "outputs" / "busy"
        wait_for(lambda: project.cli("ls", "--json", "--no-size").returncode == 0 and any(
            s["name"] == "busy" and s["counts"].get("RUNNING")
            for s in json.loads(project.cli("ls", "--json", "--no-size").stdout)["sweeps"]))
        rows = {s["name"]: s for s in json.loads(project.cli("ls", "--json").stdout)["sweeps"]}
        assert rows["busy"]["live_runners"] == 1 and rows["done"]["live_runners"] == 0
        assert [s["name"] for s in rows.values()] == ["busy", "done"]  # most recent first
        assert "(live)" in project.cli("ls").stdout
        tagged = json.loads(project.cli("ls", "--tag", "keep", "--json").stdout)["sweeps"]
        assert [s["name"] for s in tagged] == ["done"]
        assert busy.is_dir()
    finally:
        (project.markers / "release").touch()
        proc.communicate(timeout=60)
    none = project.cli("ls", "--tag", "nope")
    assert none.returncode == 0 and "no sweep under outputs tagged nope" in none.stderr
    missing = project.cli("ls", "elsewhere")
    assert missing.returncode != 0 and "no output folder elsewhere" in missing.stderr
    assert "Traceback" not in missing.stderr


@pytest.mark.parametrize("args, says", [
    (["tag", "{sweep}", "bad tag"], "tag 'bad tag'"),
    (["tag", "{sweep}", "@everyone"], "tag '@everyone'"),
    (["note", "{sweep}", "   "], "the note is empty"),
    (["note", "{sweep}", "x" * 2001], "at most 2000"),
    (["tag", "{sweep}", "--run", "zzzz", "a"], "zzzz"),
    (["tag", "{sweep}/runs", "a"], "runs"),
])
def test_bad_tags_and_notes_are_refused_before_anything_is_written(
        project: Project, args: list[str], says: str) -> None:
    sweep = _sweep(project)
    out = project.cli(*(a.format(sweep=sweep) for a in args))
    assert out.returncode != 0 and says in out.stderr and "Traceback" not in out.stderr
    assert not (sweep / "annotations.json").exists()


def _add_tags(root: str, prefix: str, n: int) -> None:
    from runner.storage.marks import change_marks

    for i in range(n):
        change_marks(root, None, (f"{prefix}{i}",))


def test_concurrent_taggers_lose_nothing(project: Project) -> None:
    sweep = _sweep(project)
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_add_tags, args=(str(sweep), f"p{k}-", 6)) for k in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    from runner.storage.marks import read_marks

    assert sorted(read_marks(sweep).sweep.tags) == sorted(
        f"p{k}-{i}" for k in range(4) for i in range(6))


def test_a_tagger_killed_at_any_moment_leaves_a_whole_file(project: Project) -> None:
    sweep = _sweep(project)
    code = ("import sys; from runner.storage.marks import change_marks\n"
            "for i in range(100000):\n"
            "    change_marks(sys.argv[1], None, note=f'n{i}', clear_notes=True)\n")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    from runner.storage.marks import read_marks

    for delay in (0.3, 0.45, 0.6, 0.75):
        proc = subprocess.Popen([sys.executable, "-c", code, str(sweep)], env=env)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        raw = (sweep / "annotations.json").read_text()
        notes = json.loads(raw)["sweep"]["notes"]  # whole JSON, never a torn file
        assert len(notes) == 1 and [n.text for n in read_marks(sweep).sweep.notes] == [
            notes[0]["text"]]
    from runner.storage.marks import change_marks

    change_marks(sweep, None, ("after",))  # the next writer clears what a killed one left
    assert not [p for p in sweep.iterdir() if ".tmp-" in p.name]
    assert read_marks(sweep).sweep.tags == ("after",)


def test_a_file_others_wrote_is_read_as_data_only(project: Project) -> None:
    sweep = _sweep(project)
    (sweep / "annotations.json").write_text(json.dumps({
        "sweep": {"tags": ["ok", "@everyone", 3, "a" * 100, "ok"],
                  "notes": [{"text": "fine", "time": 1.0, "by": "x"}, {"text": "\x1b[31m"},
                            {"text": 5}, "junk"]},
        "runs": {"r": {"tags": "notalist"}, "s": [1]}}))
    from runner.storage.marks import read_marks

    marks = read_marks(sweep)
    assert marks.sweep.tags == ("ok",) and [n.text for n in marks.sweep.notes] == ["fine"]
    assert not marks.of_run("r") and not marks.of_run("s")
    (sweep / "annotations.json").write_text("[" * 10 + "x" * (5 << 20))  # too big: not read
    assert not read_marks(sweep).sweep
    out = project.cli("ls", "--json")
    assert out.returncode == 0 and json.loads(out.stdout)["sweeps"][0]["tags"] == []
