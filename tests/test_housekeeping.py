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

from conftest import REPO, Project, wait_for


def _sweep(project: Project, *overrides: str) -> Path:
    project.run("+sweep=grid", "task.lr=0.1,0.2", "seed=1", *overrides, check=True)
    named = [o.split("=", 1)[1] for o in overrides if o.startswith("runner.name=")]
    return project.root / "outputs" / named[0] if named else project.sweep_dir()


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
    import csv

    runs_csv = (sweep / "report" / "loss" / "runs.csv").read_text().splitlines()
    assert {r["run_id"]: r["tags"] for r in csv.DictReader(runs_csv)}[run_id] == "diverged"

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
        project.release()
        proc.communicate(timeout=60)
    none = project.cli("ls", "--tag", "nope")
    assert none.returncode == 0 and "no sweep under outputs tagged nope" in none.stderr
    missing = project.cli("ls", "elsewhere")
    assert missing.returncode != 0 and "no output folder elsewhere" in missing.stderr
    assert "Traceback" not in missing.stderr


BAD = [(["tag", "{sweep}", "bad tag"], "tag 'bad tag'"),
       (["tag", "{sweep}", "@everyone"], "tag '@everyone'"),
       (["note", "{sweep}", "   "], "the note is empty"),
       (["note", "{sweep}", "x" * 2001], "at most 2000"),
       (["tag", "{sweep}", "--run", "zzzz", "a"], "zzzz"),
       (["tag", "{sweep}/runs", "a"], "runs")]


def test_bad_tags_and_notes_are_refused_before_anything_is_written(project: Project) -> None:
    sweep = _sweep(project)
    for args, says in BAD:
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


def _age_sweep(sweep: Path, days: float) -> None:
    then = time.time() - days * 86400
    for path in (sweep / "runs", sweep / "sweep.json"):
        os.utime(path, (then, then))


def test_clean_is_a_dry_run_until_yes_and_keeps_what_is_tagged_keep(project: Project) -> None:
    old = _sweep(project, "runner.name=old")
    kept = _sweep(project, "runner.name=kept")
    new = _sweep(project, "runner.name=new")
    assert project.cli("tag", str(kept), "keep").returncode == 0
    _age_sweep(old, 40)
    _age_sweep(kept, 40)

    dry = project.cli("clean", "--older-than", "30d")
    assert dry.returncode == 0 and f"would delete sweep {old}" in dry.stdout
    assert str(kept) not in dry.stdout and str(new) not in dry.stdout
    assert "dry run: 1 folder(s)" in dry.stderr and "--yes" in dry.stderr
    assert old.is_dir()
    done = project.cli("clean", "--older-than", "30d", "--yes")
    assert done.returncode == 0 and f"deleted sweep {old}" in done.stdout, done.stderr
    assert not old.exists() and kept.is_dir() and new.is_dir()
    assert not [p for p in (project.root / "outputs").iterdir() if p.name.startswith(".trash")]
    names = [s["name"] for s in json.loads(project.cli("ls", "--json").stdout)["sweeps"]]
    assert sorted(names) == ["kept", "new"]


def test_clean_by_state_and_into_an_archive(project: Project) -> None:
    import tarfile

    project.run("+sweep=grid", "task.mode=raise", "seed=1,2", "runner.name=broken")
    mixed = project.run("+sweep=grid", "task.mode=ok,raise", "seed=1", "runner.name=mixed")
    assert mixed.returncode == 1
    out = project.cli("clean", "--state", "crashed", "--archive", "archive", "--yes")
    assert out.returncode == 0, out.stderr
    assert not (project.root / "outputs" / "broken").exists()
    assert (project.root / "outputs" / "mixed").is_dir()
    with tarfile.open(project.root / "archive" / "broken.tar.gz") as tar:
        names = tar.getnames()
    assert "broken/sweep.json" in names and any(n.endswith("CRASH.txt") for n in names)
    again = project.cli("clean", "outputs/mixed", "--archive", "archive")  # a named sweep
    assert f"would archive sweep {project.root / 'outputs' / 'mixed'} (" in again.stdout


def test_clean_checkpoints_keeps_the_best_runs_and_those_tagged_keep(project: Project) -> None:
    sweep = _sweep(project, "task.lr=0.1,0.2,0.3", "runner.name=ck")
    rows = {r["values"]["task.lr"]: r for r in project.status(sweep)["runs"]}
    for row in rows.values():
        (Path(row["dir"]) / "checkpoints").mkdir()
        (Path(row["dir"]) / "checkpoints" / "model.pt").write_bytes(b"w" * 100_000)
    assert project.cli("tag", rows[0.1]["dir"], "keep").returncode == 0
    out = project.cli("clean", str(sweep), "--checkpoints", "--keep-best", "1",
                      "--metric", "score", "--mode", "max", "--yes")
    assert out.returncode == 0, out.stderr
    left = {lr: (Path(r["dir"]) / "checkpoints").is_dir() for lr, r in rows.items()}
    assert left == {0.1: True, 0.2: False, 0.3: True}  # tagged keep, deleted, the best
    assert project.status(sweep)["counts"]["COMPLETED"] == 3  # every run is still there


def test_clean_never_touches_a_sweep_in_use(project: Project) -> None:
    proc = project.popen("+sweep=grid", "seed=1", "task.mode=wait_file", "runner.name=busy")
    try:
        wait_for(lambda: project.running("busy") > 0)
        out = project.cli("clean", "outputs/busy", "--yes")
        assert "outputs/busy: a runner of it is alive on this host" in out.stderr, out.stderr
        assert out.stderr.startswith("skipped ")
        assert (project.root / "outputs" / "busy" / "sweep.json").is_file()
    finally:
        project.release()
        proc.communicate(timeout=60)


def test_clean_refuses_vague_or_bad_requests_and_clears_what_a_killed_clean_left(
        project: Project) -> None:
    sweep = _sweep(project, "runner.name=one")
    for args, says in ((["clean"], "say what to clean"),
                       (["clean", "--older-than", "soon"], "--older-than soon"),
                       (["clean", "--state", "done"], "--state DONE"),
                       (["clean", "--checkpoints", "--keep-best", "2"], "go together")):
        out = project.cli(*args)
        assert out.returncode != 0 and says in out.stderr and "Traceback" not in out.stderr
    left = project.root / "outputs" / ".trash-old-1234abcd"
    (left / "runs").mkdir(parents=True)  # a clean killed between its rename and its delete
    assert [s["name"] for s in json.loads(project.cli("ls", "--json").stdout)["sweeps"]] == [
        "one"]
    assert project.cli("clean", str(sweep), "--yes").returncode == 0
    assert not left.exists() and not sweep.exists()


def test_clean_runs_removes_their_outputs_and_keeps_their_record(project: Project) -> None:
    import tarfile

    project.run("+sweep=grid", "task.mode=ok,raise", "seed=1,2", "runner.name=mixed")
    sweep = project.root / "outputs" / "mixed"
    rows = {(r["values"]["task.mode"], r["values"]["seed"]): r
            for r in project.status(sweep)["runs"]}
    for row in rows.values():
        (Path(row["dir"]) / "checkpoints").mkdir()
        (Path(row["dir"]) / "checkpoints" / "model.pt").write_bytes(b"w" * 50_000)
    assert project.cli("tag", rows[("raise", 2)]["dir"], "keep").returncode == 0
    dry = project.cli("clean", str(sweep), "--runs", "--state", "crashed")
    assert dry.returncode == 0 and dry.stdout.count("would delete run outputs") == 1, dry.stdout
    out = project.cli("clean", str(sweep), "--runs", "--state", "crashed", "--archive", "old",
                      "--yes")
    assert out.returncode == 0, out.stderr
    gone = Path(rows[("raise", 1)]["dir"])
    left = {p.name for p in gone.iterdir()}
    assert {"CRASH.txt", "config.yaml", "values.json", "cleaned.json"} <= left <= {
        "CRASH.txt", "config.yaml", "values.json", "cleaned.json", ".lock", "attempts"}, left
    cleaned = json.loads((gone / "cleaned.json").read_text())
    assert {"stdout.log", "stderr.log", "metrics.jsonl", "checkpoints/"} <= set(cleaned["removed"])
    with tarfile.open(project.root / "old" / "mixed" / f"{gone.name}.tar.gz") as tar:
        assert f"{gone.name}/checkpoints/model.pt" in tar.getnames()
    for kept in (rows[("raise", 2)], rows[("ok", 1)], rows[("ok", 2)]):  # tagged keep, COMPLETED
        assert (Path(kept["dir"]) / "checkpoints" / "model.pt").is_file()
    status = {r["id"]: r for r in project.status(sweep)["runs"]}
    assert status[rows[("raise", 1)]["id"]]["state"] == "CRASHED"  # still said, and why
    assert "ValueError" in status[rows[("raise", 1)]["id"]]["reason"]
    shown = project.cli("show", str(gone)).stdout
    assert "outputs removed by clean on" in shown and "stdout.log" in shown
    groups = (sweep / "report" / "loss" / "groups.csv")
    assert project.cli("report", str(sweep), "--metric", "loss").returncode == 0
    import csv

    crashed = {g["group"]: g["crashed"] for g in csv.DictReader(groups.read_text().splitlines())}
    assert crashed == {"task.mode=ok": "0", "task.mode=raise": "2"}  # still counted as crashed
    again = project.cli("clean", str(sweep), "--runs", "--state", "crashed")
    assert "nothing to clean" in again.stderr  # nothing left to remove there
