"""Bad input: each case stops before anything is written, with a message naming the culprit."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from runner.cli import main


@dataclass
class Case:
    overrides: list[str]
    message: str
    files: dict[str, str] = field(default_factory=dict)


CASES = {
    "typo in a key": Case(["task.lrr=0.1"], r"Could not override 'task.lrr'.*\+task.lrr=0.1"),
    "typo in a swept key": Case(["task.lrr=0.1,0.2"], r"Could not override 'task.lrr'"),
    "unknown group option": Case(["task=nosuch"], r"Could not find 'task/nosuch'.*toy"),
    "unknown sweep": Case(["+sweep=grdi"], r"Could not find 'sweep/grdi'.*grid"),
    "bad override syntax": Case(["task.lr=0.1,,0.2"], r"cannot parse override 'task.lr=0.1,,0.2'"),
    "launcher typo": Case(["launcher.max_paralel=2"], r"Could not override 'launcher.max_paralel'"),
    "runner type error": Case(["runner.heartbeat_s=soon"], r"runner.heartbeat_s.*soon"),
    "launcher type error": Case(["launcher.max_parallel=many"], r"launcher.max_parallel.*many"),
    "bad start method": Case(["launcher.start_method=thread"],
                             r"launcher.start_method='thread' is not one of"),
    "missing task module": Case(["task.fn=nosuchmod:main"], r"task.fn='nosuchmod:main'.*no module"),
    "missing task function": Case(["task.fn=toy:mian"], r"task.fn='toy:mian'.*defines no 'mian'"),
    "bad task reference": Case(["task.fn=toy"], r"task.fn='toy' is not of the form"),
    "bad sweep kind": Case(["+sweep=grid", "sweep.kind=bayes"], r"sweep.kind='bayes' is not one"),
    "unknown sweep key": Case(["+sweep=grid", "+sweep.sampler=tpe"],
                              r"unknown key\(s\) sweep.sampler.*valid keys are: kind, params"),
    "broken yaml": Case(["task=broken"], r"broken\.yaml|mapping values are not allowed",
                        {"conf/task/broken.yaml": "name: x\n  fn: [unclosed\n"}),
    "launcher target missing": Case(["launcher._target_=nosuch.Launcher"],
                                    r"launcher._target_='nosuch.Launcher' is not importable"),
    "notifier target not a notifier": Case(["+notifier.bad={_target_: os.path}"],
                                           r"notifier.bad._target_='os.path' is not a runner "
                                           r"Notifier"),
    "unknown notifier event": Case(["notifier.console.events=[sweep_stared]"],
                                   r"notifier events \['sweep_stared'\] unknown"),
    "missing mandatory value": Case(["task=needs"],
                                    r"Missing mandatory value: data.*full_key: task.data",
                                    {"conf/task/needs.yaml": "name: n\nfn: toy:main\ndata: ???\n"}),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_bad_input_is_reported_and_nothing_is_written(project, capsys, case):
    for rel, text in case.files.items():
        (project.root / rel).write_text(text)
    code = main(["task=toy", "runner.output_dir=outputs", *case.overrides])
    err = capsys.readouterr().err
    assert code == 2, err
    assert re.search(case.message, err, re.S), err
    assert not (project.root / "outputs").exists()


def test_missing_config_dir_is_named(project, capsys):
    assert main(["--config-dir", "nowhere", "task=toy"]) == 2
    assert "config directory 'nowhere' (--config-dir) does not exist" in capsys.readouterr().err


def test_status_of_a_non_sweep_directory(project, capsys, tmp_path: Path):
    assert main(["status", str(tmp_path)]) == 2
    assert "is not a sweep directory: sweep.json is missing" in capsys.readouterr().err


def test_resume_refuses_run_overrides(project, capsys):
    assert main(["task=toy", "runner.output_dir=outputs", "task.steps=1"]) == 0
    sweep = next((project.root / "outputs").iterdir())
    assert main(["resume", str(sweep), "task.lr=0.5"]) == 2
    assert "only runner/launcher/notifier overrides are taken here" in capsys.readouterr().err
