"""Paths and values with spaces, quotes and shell characters survive every step."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from conftest import Project


@pytest.fixture(params=["a 0", "a'; echo foo", 'a"=0"'])
def weird_project(tmp_path: Path, request: pytest.FixtureRequest,
                  monkeypatch: pytest.MonkeyPatch) -> Project:
    root = tmp_path / request.param
    root.mkdir()
    proj = Project(root / "proj")
    monkeypatch.chdir(proj.root)
    return proj


def test_sweep_in_a_weird_directory_with_weird_values(weird_project):
    proj = weird_project
    proc = proj.run("+task.tag='x y;z',\"q'uote\"", "seed=1,2")
    assert proc.returncode == 0, proc.stderr
    status = proj.status()
    assert status["counts"]["COMPLETED"] == 4
    tags = {r["values"]["task.tag"] for r in status["runs"]}
    assert tags == {"x y;z", "q'uote"}
    for row in status["runs"]:
        name = os.path.basename(row["dir"])
        assert all(c not in name for c in " ;'\"") and name.endswith(row["id"])
        cfg = (Path(row["dir"]) / "config.yaml").read_text()
        assert json.loads((Path(row["dir"]) / "values.json").read_text()) == row["values"]
        assert "tag:" in cfg
