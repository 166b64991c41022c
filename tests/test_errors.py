"""Bad input: each case stops before anything is written, with a message naming the culprit."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from runner.cli.main import main


@dataclass
class Case:
    overrides: list[str]
    message: str
    files: dict[str, str] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)


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
    "sweep name with a path": Case(["runner.name=../../x"],
                                   r"runner.name='../../x' cannot name a directory: it contains "
                                   r"a path separator"),
    "absolute sweep name": Case(["runner.name=/tmp/abs"], r"runner.name='/tmp/abs' cannot name"),
    "sweep name '..'": Case(["runner.name=.."], r"runner.name='..' cannot name a directory"),
    "hidden sweep name": Case(["runner.name=.x"], r"names starting with '.' are runner's own"),
    "task name with a path": Case(["task.name=../up"], r"task.name='../up' cannot name a dir"),
    "negative max_parallel": Case(["launcher.max_parallel=-3"],
                                  r"launcher.max_parallel=-3 must be >= 1 \(or null"),
    "zero heartbeat": Case(["runner.heartbeat_s=0"], r"runner.heartbeat_s=0.0 must be > 0"),
    "negative timeout": Case(["launcher.timeout_min=-1"], r"launcher.timeout_min=-1.0 must be"),
    "retry_on typo": Case(["runner.retry_on=[oom,sigal]"],
                          r"runner.retry_on: 'sigal' is not a failure class \(did you mean "
                          r"signal\?\); the classes are task, timeout, signal, oom, node"),
    "zero max_parallel": Case(["launcher.max_parallel=0"], r"launcher.max_parallel=0 must be >= 1"),
    "nodes on the local launcher": Case(["launcher.nodes=2"],
                                        r"Could not override 'launcher.nodes': no such key: a "
                                        r"setting of launcher=slurm, not of launcher=local\n"),
    "gpus on the local launcher": Case(["launcher.gpus_per_run=1"],
                                       r"'launcher.gpus_per_run': no such key: a setting of "
                                       r"launcher=pinned and launcher=slurm, not of "
                                       r"launcher=local"),
    "a packaged option's key under its group": Case(
        ["notifier.events=[run_crashed]"],
        r"Could not override 'notifier.events': no such key: notifier=console keeps its keys "
        r"under notifier.console \(write notifier.console.events\)\n"),
    "pools of multi-node runs": Case(["launcher=slurm", "launcher.runs_per_job=2",
                                      "launcher.nodes=2"],
                                     r"launcher.runs_per_job=2 packs runs of one node each "
                                     r"into a job; launcher.nodes=2 gives a run several nodes"),
    "seeds not a count": Case(["+sweep=grid", "sweep.seeds=abc"],
                              r"sweep.seeds='abc' must be a count \(3: seeds 0, 1, 2\) or a list"),
    "subset larger than the sweep": Case(["+sweep=grid", "seed=1,2", "task.lr=0.1",
                                          "sweep.subset=50"],
                                         r"sweep.subset=50 but the sweep has only 2 run\(s\)"),
    "reversed interval": Case(["+sweep=random", "+task.lrate=interval(5,1)"],
                              r"axis 'task.lrate': interval\(5.0, 1.0\) is empty or reversed"),
    "empty range": Case(["+sweep=grid", "+task.width=range(3,1)"],
                        r"axis 'task.width' has no values \(\+task.width=range\(3,1\)\)"),
    "filter keeps nothing": Case(["+sweep=grid", "seed=1,2", "sweep.filter='seed > 5'"],
                                 r"sweep.filter 'seed > 5' keeps none of the sweep's runs"),
    "no such debug run": Case(["runner.debug=nosuch"],
                              r"runner.debug='nosuch' matches 0 of the sweep's runs"),
    "pinned CPU that does not exist": Case(["launcher=pinned", "launcher.cpus=[99999]"],
                                           r"launcher.cpus: CPU\(s\) 99999 are not available"),
    "output_dir under a file": Case(["runner.output_dir=afile/out"],
                                    r"runner.output_dir=afile/out: .*afile is a file, not a dir",
                                    {"afile": "x"}),
    "config file is a list": Case(["task=lst"], r"conf/task/lst.yaml: the top level of a config "
                                  r"file must be a mapping .* not a list",
                                  {"conf/task/lst.yaml": "- a\n- b\n"}),
    "config file is a scalar": Case(["task=scal"], r"conf/task/scal.yaml: the top level .* int",
                                    {"conf/task/scal.yaml": "42\n"}),
    "typo in a user's launcher file": Case(
        ["launcher=mine"], r"unknown key\(s\) launcher.max_paralel .*\(launcher config: "
                           r".*conf/launcher/mine.yaml\)",
        {"conf/launcher/mine.yaml": "_target_: runner.launchers.local.LocalLauncher\n"
                                    "max_paralel: 2\n"}),
    "webhook URL without a scheme": Case(["notifier=discord"],
                                         r"the webhook URL in \$DISCORD_WEBHOOK_URL is not an "
                                         r"http\(s\) URL", env={"DISCORD_WEBHOOK_URL":
                                                              "discord.com/api/webhooks/1/abc"}),
    "negative kill grace": Case(["launcher.kill_grace_s=-1"], r"launcher.kill_grace_s=-1.0 must"),
    "zero poll interval": Case(["launcher=slurm", "launcher.poll_s=0"],
                               r"launcher.poll_s=0.0 must be > 0"),
    "zero samples": Case(["+sweep=random", "sweep.num_samples=0"],
                         r"sweep.num_samples=0 must be >= 1"),
    "zero top_k": Case(["notifier=discord", "notifier.discord.top_k=0"],
                       r"notifier.discord.top_k=0 must be >= 1",
                       env={"DISCORD_WEBHOOK_URL": "https://discord.com/api/webhooks/1/abc"}),
    "empty output_dir": Case(["runner.output_dir=''"], r"runner.output_dir is empty"),
    "costly filter": Case(["+sweep=grid", "seed=1,2", "sweep.filter='9**9**9 > 0'"],
                          r"sweep.filter '9\*\*9\*\*9 > 0' refused: .* \(too costly\)"),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_bad_input_is_reported_and_nothing_is_written(project, capsys, monkeypatch, case):
    for rel, text in case.files.items():
        (project.root / rel).parent.mkdir(parents=True, exist_ok=True)
        (project.root / rel).write_text(text)
    for name, value in case.env.items():
        monkeypatch.setenv(name, value)
    if "launcher=slurm" in case.overrides:  # (whether SLURM is installed here or not)
        fake = project.root / "fake-slurm"
        fake.mkdir()
        for command in ("sbatch", "squeue"):
            (fake / command).write_text("#!/bin/sh\nexit 1\n")
            (fake / command).chmod(0o755)
        monkeypatch.setenv("PATH", f"{fake}{os.pathsep}{os.environ['PATH']}")
    code = main(["task=toy", "runner.output_dir=outputs", *case.overrides])
    err = capsys.readouterr().err
    assert code == 2, err
    assert re.search(case.message, err, re.S), err
    assert not (project.root / "outputs").exists()


def test_missing_config_dir_is_named(project, capsys):
    assert main(["--config-dir", "nowhere", "task=toy"]) == 2
    assert "config directory 'nowhere' (--config-dir) does not exist" in capsys.readouterr().err
    assert main(["--config-dir", "toy.py", "task=toy"]) == 2
    assert "config directory 'toy.py' (--config-dir) is a file" in capsys.readouterr().err


def test_status_of_a_non_sweep_directory(project, capsys, tmp_path: Path):
    assert main(["status", str(tmp_path)]) == 2
    assert "is not a sweep directory: sweep.json is missing" in capsys.readouterr().err


def test_resume_refuses_run_overrides(project, capsys):
    assert main(["task=toy", "runner.output_dir=outputs", "task.steps=1"]) == 0
    sweep = next((project.root / "outputs").iterdir())
    assert main(["resume", str(sweep), "task.lr=0.5"]) == 2
    assert "only runner/launcher/notifier overrides are taken here" in capsys.readouterr().err


@pytest.mark.parametrize("env, overrides", [
    ("WANDB_API_KEY", ["+task.k=${oc.env:WANDB_API_KEY}"]),
    ("DISCORD_BOT_TOKEN", ["+sweep=grid", "seed=1,2",
                           "+task.deep={a: [x, '${oc.env:DISCORD_BOT_TOKEN}']}"]),
    ("HF_TOKEN", ["runner.secret_env=[HF_TOKEN]", "+task.hf=${oc.env:HF_TOKEN}"]),
    ("HF_TOKEN", ["runner.secret_env=[HF_TOKEN]", "runner.name=${oc.env:HF_TOKEN}"]),
])
def test_a_secret_is_never_frozen_into_a_config(project, capsys, monkeypatch, env, overrides):
    secret = "sentinel-secret-0123456789abcdef"
    monkeypatch.setenv(env, secret)
    monkeypatch.setenv("RUNNER_SECRET_ENV", "")  # restored after the test
    code = main(["task=toy", "runner.output_dir=outputs", *overrides])
    err = capsys.readouterr().err
    assert code == 2, err
    assert f"holds the value of the secret ${env}" in err and secret not in err
    assert not (project.root / "outputs").exists()


def test_a_filter_cannot_probe_a_secret(project, capsys, monkeypatch):
    """The secret check comes before the filter, so whether the filter keeps a run can never
    tell anything about a secret's value."""
    monkeypatch.setenv("WANDB_API_KEY", "sentinel-secret-0123456789abcdef")
    for expr in ("task.k[0] == 's'", "task.k[0] == 'x'"):
        code = main(["task=toy", "runner.output_dir=outputs", "+sweep=grid", "seed=1,2",
                     "+task.k=${oc.env:WANDB_API_KEY}", f"sweep.filter=\"{expr}\""])
        err = capsys.readouterr().err
        assert code == 2 and "holds the value of the secret $WANDB_API_KEY" in err, err


def test_command_line_mistakes_are_named(project, capsys):
    assert main(["task=toy", "runner.output_dir=outputs", "+sweep=grid", "seed=1,2"]) == 0
    sweep = next((project.root / "outputs").iterdir())
    for argv, message in [
        (["stauts", str(sweep)], "unknown command 'stauts'; did you mean 'status'?"),
        (["status", str(sweep), "--top", "-1"], "--top -1: give a number of runs >= 1"),
        (["status", str(sweep), "--sort", "nosuch", "--mode", "min"],
         "no run has a metric 'nosuch'; metrics: "),
        (["report", str(sweep), "--metric", "score"], "is a higher or a lower 'score' better? "
                                                      "give --mode max or --mode min"),
        (["report", str(sweep), "--metric", "score", "--mode", "max", "--reduce", "last:abc"],
         "--reduce 'last:abc': K in last:K must be a whole number >= 1"),
        (["resume", str(sweep), "launcher.max_parallel=0"],
         "launcher.max_parallel=0 must be >= 1 (or null for the default)"),
    ]:
        assert main(argv) == 2, argv
        assert message in capsys.readouterr().err, argv


def test_config_name_is_used_for_every_run(project):
    from runner.config.compose import composer
    from runner.planning.sweep import expand

    (project.root / "conf" / "alt.yaml").write_text(
        "defaults:\n  - task: toy\n  - launcher: local\n  - _self_\nseed: 7\n")
    with composer() as comp:
        plan = expand(comp, ["task.lr=0.1,0.2"], "alt")
    assert [r.config["seed"] for r in plan.runs] == [7, 7]
    assert all(r.config["task"]["name"] == "toy" for r in plan.runs)
