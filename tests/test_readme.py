"""The README's examples are what the code does: its "A task" blocks (the task, its config and
the three commands) run as written in a fresh folder, and the README's test command is the one
CI runs."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

from conftest import REPO

README = (REPO / "README.md").read_text()


def _section(title: str) -> str:
    start = README.index(f"## {title}\n")
    end = README.index("\n## ", start + 1)
    return README[start:end]


def _blocks(text: str, lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", text, flags=re.S)


def test_the_a_task_section_runs_as_written(tmp_path: Path) -> None:
    section = _section("A task")
    (python_block,) = _blocks(section, "python")
    (yaml_block,) = _blocks(section, "yaml")
    (bash_block,) = _blocks(section, "bash")
    task_path = tmp_path / python_block.splitlines()[0].lstrip("# ").strip()
    conf_path = tmp_path / yaml_block.splitlines()[0].lstrip("# ").split()[0]
    task_path.parent.mkdir(parents=True)
    (task_path.parent / "__init__.py").write_text("")
    task_path.write_text(python_block)
    conf_path.parent.mkdir(parents=True)
    conf_path.write_text(yaml_block)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(tmp_path)])}
    expected = [1, 6, 2]  # runs per command, as the comments say
    for line, runs in zip([ln for ln in bash_block.splitlines() if ln.strip()], expected,
                          strict=True):
        words = shlex.split(line.split("#")[0])
        assert words[:3] == ["python", "-m", "runner"], line
        proc = subprocess.run([sys.executable, *words[1:], "runner.progress=false"],
                              cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=300)
        assert proc.returncode == 0, (line, proc.stderr)
        assert f"{runs} completed" in proc.stderr, (line, proc.stderr)


def test_ci_runs_the_readmes_test_command() -> None:
    lines = [ln for ln in README.splitlines() if ln.startswith("python3 -m venv")]
    assert len(lines) >= 2 and "pytest" in lines[1] and "runner" in lines[0]
    assert "grep -m2 '^python3 -m venv' README.md" in (REPO / ".ci" / "run").read_text()


def test_the_mnist_table_is_what_the_first_command_gives(tmp_path: Path) -> None:
    """The README's results table is the report of the first command's sweep, row for row."""
    import pytest

    pytest.importorskip("torch")
    first = [ln for ln in README.splitlines() if ln.startswith("python3 -m venv")][0]
    command = shlex.split(first.split("&&")[-1])
    assert command == ["python", "-m", "runner", "+sweep=grid"], command
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    run = subprocess.run([sys.executable, *command[1:], "runner.progress=false"], cwd=tmp_path,
                         env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    (sweep,) = (tmp_path / "outputs").iterdir()
    report = subprocess.run([sys.executable, "-m", "runner", "report", str(sweep), "--metric",
                             "val/acc"], cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=300)
    assert report.returncode == 0, report.stderr
    made = [ln for ln in (sweep / "report" / "val-acc" / "report.md").read_text().splitlines()
            if ln.startswith("|")]
    start = README.index(made[0])
    shown = README[start:].split("\n\n", 1)[0].splitlines()
    assert len(shown) == len(made), (shown, made)
    for ours, theirs in zip(shown[2:], made[2:], strict=True):
        assert_same_row(ours, theirs)


def assert_same_row(shown: str, made: str) -> None:
    """A report row as the README shows it: the same setting, rank and counts; the numbers
    as measured, up to what another CPU's float kernels change (an accuracy moves by a
    validation image or two: 0.002; the n=2 interval multiplies a change of the std by
    t(0.975, 1) / sqrt(2) = 9)."""
    a = [c.strip() for c in shown.strip("|").split("|")]
    b = [c.strip() for c in made.strip("|").split("|")]
    assert a[:6] == b[:6], (shown, made)
    for x, y in zip(a[6:9], b[6:9], strict=True):
        assert abs(float(x) - float(y)) <= 0.002, (shown, made)
    for x, y in zip(a[9].strip("[]").split(","), b[9].strip("[]").split(","), strict=True):
        assert abs(float(x) - float(y)) <= 0.02, (shown, made)


# what a README command needs from the machine it runs on, and the error that says so
NEEDS = {"discord": "no secret found in $DISCORD_WEBHOOK_URL",
         "tracker=wandb": "needs a WandB API key",
         "gpus_per_run": "no GPU is visible"}
SUBCOMMANDS = ("status", "show", "rerun", "resume", "cancel", "report", "compare",
               "retrain-best", "wandb-sync", "export-study", "ls", "tag", "note", "clean",
               "extend", "serve")


def _block_commands() -> list[str]:
    """Every `python -m runner ...` line of the README's bash blocks, continuation lines joined
    and comments left out."""
    out = []
    for block in _blocks(README, "bash"):
        for line in block.replace("\\\n", " ").splitlines():
            line = re.split(r"\s#", line)[0].strip()
            if line.startswith("python -m runner "):
                out.append(line)
    return out


def readme_commands() -> list[str]:
    """Every `python -m runner <overrides>` of the README (code blocks and tables) with no
    placeholder in it."""
    out = _block_commands() + re.findall(r"\| `(python -m runner [^`]*)` \|", README)
    return [c for c in out if "<" not in c and "..." not in c
            and shlex.split(c)[3] not in SUBCOMMANDS and "task=mine" not in c]


def test_every_readme_command_plans_as_written(tmp_path: Path) -> None:
    """Each one is composed and planned (runner.dry_run=true) in a fresh folder with the MNIST
    default task: it works, or it fails only for what this machine lacks (a webhook secret, a
    WandB key, a GPU), saying so. (task=mine commands: the A task test above.)"""
    env = {k: v for k, v in os.environ.items()
           if k not in ("DISCORD_WEBHOOK_URL", "WANDB_API_KEY", "CUDA_VISIBLE_DEVICES")}
    env["PYTHONPATH"] = str(REPO)
    env["CUDA_VISIBLE_DEVICES"] = ""
    commands = readme_commands()
    assert len(commands) >= 15
    for command in commands:
        words = shlex.split(command)
        proc = subprocess.run([sys.executable, *words[1:], "runner.dry_run=true"], cwd=tmp_path,
                              env=env, capture_output=True, text=True, timeout=120)
        needs = [said for key, said in NEEDS.items() if key in command]
        if proc.returncode != 0:
            assert needs and any(said in proc.stderr for said in needs), (command, proc.stderr)
        assert "Traceback" not in proc.stderr, (command, proc.stderr)
    assert not list(tmp_path.rglob("stdout.log"))  # planned only: no run ran


# a README placeholder and what stands for it in the test below
PLACEHOLDERS = {"outputs/<sweep>/runs/<run>": "run", "outputs/<sweep-a>": "grid",
                "outputs/<sweep-b>": "other", "outputs/<study>": "study",
                "outputs/<mo-study>": "mo-study",
                "outputs/<sweep>": "grid", "multirun/app-<fingerprint>": "grid"}


def readme_subcommands() -> list[str]:
    """Every `python -m runner <subcommand> ...` line of the README's code blocks and text."""
    lines = _block_commands() + re.findall(r"`(python -m runner [a-z-]+ [^`]*)`", README)
    return sorted({ln for ln in lines if shlex.split(ln)[3] in SUBCOMMANDS})


MO_TASK = """
def main(cfg):  # (channels**2 * 1250 parameters: 4 -> 20,000)
    return {"val/acc": 1 - abs(cfg.task.lr - 0.1) - 1 / cfg.task.channels,
            "params": cfg.task.channels ** 2 * 1250}
"""


def test_every_readme_subcommand_runs_on_a_real_sweep(project) -> None:  # noqa: ANN001
    """The README's status/show/rerun/resume/cancel/report/compare/retrain-best/wandb-sync/
    export-study lines, placeholders replaced by a real grid sweep, a second sweep, a study and a
    run, each run as written ([optional] parts included): exit 0, no traceback, and output."""
    import pytest

    pytest.importorskip("optuna")
    common = ("+task.val_every=1", "runner.progress=false")
    project.run("task.lr=0.1,0.01", "seed=1,2", *common, check=True)
    (grid,) = (project.root / "outputs").iterdir()
    project.run("task.lr=0.3,0.03", *common, check=True)
    (other,) = [d for d in (project.root / "outputs").iterdir() if d != grid]
    project.run("+sweep=optuna", "sweep.n_trials=4", "sweep.metric=val/acc",
                "task.lr=interval(0.01,0.3)", *common, check=True)
    (study,) = [d for d in (project.root / "outputs").iterdir() if d not in (grid, other)]
    (project.root / "mo.py").write_text(MO_TASK)  # val/acc against the model's size
    (project.root / "conf" / "task" / "mo.yaml").write_text("name: mo\nfn: mo:main\nlr: 0.1\n"
                                                            "channels: 8\n")
    project.run("task=mo", "+sweep=optuna", "sweep.n_trials=6", "sweep.metric=[val/acc,params]",
                "sweep.mode=[max,min]", "task.lr=interval(0.01,0.3)", "task.channels=4,8,16,32",
                "runner.name=mo-study", *common, check=True)
    paths = {"grid": grid, "other": other, "study": study,
             "mo-study": project.root / "outputs" / "mo-study",
             "run": sorted((grid / "runs").iterdir())[0]}
    commands = readme_subcommands()
    assert {shlex.split(c)[3] for c in commands} == set(SUBCOMMANDS), commands
    for command in commands:
        for placeholder, name in PLACEHOLDERS.items():
            command = command.replace(placeholder, str(paths[name]))
        assert not re.search(r"<[a-z]", command), command  # (a placeholder: <=20000 is not)
        words = [w.strip("[]") for w in shlex.split(command)]
        if words[3] == "resume" and "sweep.n_trials=80" in words:  # the study grows by 2
            words[words.index("sweep.n_trials=80")] = "sweep.n_trials=6"
        if words[3] == "retrain-best":
            words[words.index("--seeds") + 1] = "2"
        if words[3] == "serve":  # a server: it starts and says where (tests/test_web.py)
            server = subprocess.Popen([sys.executable, *words[1:], "--port", "0"],
                                      cwd=project.root, env=project.env(), text=True,
                                      stderr=subprocess.PIPE)
            assert server.stderr is not None
            first = server.stderr.readline()
            server.terminate()
            server.communicate(timeout=30)
            assert first.startswith("serving ") and "http://127.0.0.1:" in first, first
            continue
        quiet = ["runner.progress=false"] if words[3] in ("resume", "rerun") else []
        proc = project.cli(*words[3:], *quiet)
        said = proc.stdout + proc.stderr
        if words[3] == "wandb-sync":  # no offline WandB data here (tests/test_wandb_sync.py)
            assert proc.returncode == 2 and "WANDB_MODE=offline" in said, (command, said)
            continue
        assert proc.returncode == 0, (command, said)
        assert "Traceback" not in said and said.strip(), (command, said)
