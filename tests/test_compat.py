"""Sweeps written by earlier versions stay readable and resumable."""

from __future__ import annotations

import shutil
from pathlib import Path

ASSET = Path(__file__).parent / "assets" / "sweep_v1"


def test_v1_sweep_reads_and_resumes_from_another_folder(project):
    sweep = project.root / "outputs" / "v1-layout"
    shutil.copytree(ASSET, sweep)  # recorded in another folder, on another machine
    status = project.status(sweep)
    states = {(r["values"]["task.mode"], r["values"]["seed"]): r for r in status["runs"]}
    assert {k: r["state"] for k, r in states.items()} == {
        ("ok", 0): "COMPLETED", ("raise", 0): "CRASHED",
        ("ok", 1): "UNHATCHED", ("raise", 1): "UNHATCHED"}
    assert states[("ok", 0)]["summary"] == {"score": 1.0, "steps": 3}
    assert states[("raise", 0)]["reason"] == "ValueError: toy failure lr=0.1"
    proc = project.cli("resume", str(sweep), "runner.retry_crashed=true")
    assert proc.returncode == 1, proc.stderr  # the 'raise' runs crash again, as they should
    after = {(r["values"]["task.mode"], r["values"]["seed"]): r
             for r in project.status(sweep)["runs"]}
    assert after[("ok", 1)]["state"] == "COMPLETED" and after[("ok", 1)]["attempt"] == 1
    assert after[("raise", 0)]["attempt"] == 2 and after[("ok", 0)]["attempt"] == 1
