"""Provenance at every launch: the code (commit, diff, untracked sources) and the whole
environment are kept per version, each attempt says which code it ran, and a change since the
first launch is said, or refused with runner.on_code_change=error."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from conftest import Project


def _git(project: Project, *args: str) -> None:
    subprocess.run(["git", *args], cwd=project.root, check=True, capture_output=True,
                   env={"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@x",
                        "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@x",
                        "HOME": str(project.root), "PATH": "/usr/bin:/bin"})


def test_every_launch_records_its_code_and_attempts_say_which_they_ran(project: Project) -> None:
    (project.root / ".gitignore").write_text("outputs/\nmarkers/\n__pycache__/\n")
    _git(project, "init", "-q")
    _git(project, "add", ".")
    _git(project, "commit", "-qm", "first")
    (project.root / "helper.py").write_text("HELP = 1\n")  # untracked source: kept too
    assert project.run("task.mode=raise").returncode == 1
    sweep = project.sweep_dir()
    manifest = json.loads((sweep / "sweep.json").read_text())
    prov = manifest["provenance"]
    assert prov["git"]["commit"] and prov["code"]
    assert prov["environment"]["hydra-core"] and "hydra-runner" in prov["environment"]
    assert "+++ b/helper.py" in (sweep / "git.diff").read_text()
    first = manifest["launches"][-1]["code"]
    assert first["id"] == prov["code"]
    assert (sweep / "code" / f"environment-{first['environment']}.json").is_file()

    toy = project.root / "toy.py"
    toy.write_text(toy.read_text().replace("toy failure", "toy failure, second try"))
    refused = project.run("task.mode=raise", "runner.retry_crashed=true",
                          "runner.on_code_change=error")
    assert refused.returncode == 2
    assert "the code changed since" in refused.stderr and "toy.py changed" \
        in refused.stderr and "runner.on_code_change=error" in refused.stderr
    assert project.status()["runs"][0]["attempt"] == 1  # nothing was launched

    proc = project.run("task.mode=raise", "runner.retry_crashed=true")
    assert "warning: the code changed since" in proc.stderr
    (row,) = project.status()["runs"]
    assert row["attempt"] == 2 and "second try" in row["reason"]
    info = json.loads(project.cli("show", row["dir"], "--json").stdout)
    codes = [a["launcher"]["code"] for a in info["attempts"]]
    assert codes[0] == first["id"] and codes[1] != codes[0]
    assert "second try" in (sweep / "code" / f"{codes[1]}.diff").read_text()
    text = project.cli("show", row["dir"]).stdout
    assert f"code {codes[1]}: commit" in text and "uncommitted changes" in text


def test_an_unchanged_resume_warns_of_nothing(project: Project) -> None:
    assert project.run("seed=1,2", "task.mode=raise").returncode == 1
    proc = project.run("seed=1,2", "task.mode=raise", "runner.retry_crashed=true")
    assert "code changed" not in proc.stderr
    launches = json.loads((project.sweep_dir() / "sweep.json").read_text())["launches"]
    assert len(launches) == 2 and launches[0]["code"]["id"] == launches[1]["code"]["id"]
    assert Path(project.sweep_dir() / "code").is_dir()


def test_provenance_never_copies_a_secret(project: Project, monkeypatch) -> None:
    """Untracked credential files, files holding a secret of a well-known format (one this
    process was never told) or a known one, and secrets in the tracked diff: none lands in a
    sweep; what was skipped is listed."""
    # a value of the Discord token format, built here (no token-shaped literal in the repository)
    bot_token = ".".join(["MTAwMDAwMDAwMDAwMDAwMDAx", "GaBcDe", "abcdefghij" * 3])
    hf = "hf_" + "a1B2c3D4e5" * 4
    known_value = "known-secret-value-0123456789"
    monkeypatch.setenv("MY_SECRET", known_value)
    monkeypatch.setenv("RUNNER_SECRET_ENV", "MY_SECRET")
    (project.root / ".gitignore").write_text("outputs/\nmarkers/\n__pycache__/\n")
    (project.root / "settings.py").write_text("A = 1\n")
    _git(project, "init", "-q")
    _git(project, "add", ".")
    _git(project, "commit", "-qm", "first")
    files = {
        "start-bot.sh": f"export DISCORD_BOT_TOKEN={bot_token}\n",
        "credentials.json": '{"k": "v"}\n',
        "secrets.yaml": "key: value\n",
        "env.sh": "export X=1\n",
        ".env": "A=1\n",
        "deploy.pem": "-----BEGIN RSA PRIVATE KEY-----\n",
        "hub.py": f"TOKEN = '{hf}'\n",
        "notes.py": f"# {known_value}\n",
        "conf/task/mine.yaml": f"webhook: https://discord.com/api/webhooks/1/{'x' * 30}\n",
        "helper.py": "HELP = 1\n",
    }
    for name, text in files.items():
        (project.root / name).parent.mkdir(parents=True, exist_ok=True)
        (project.root / name).write_text(text)
    (project.root / "settings.py").write_text(f"A = 1\nKEY = '{hf}'\n")  # tracked, edited
    assert project.run(check=True).returncode == 0
    sweep = project.sweep_dir()
    everything = b"".join(p.read_bytes() for p in sweep.rglob("*") if p.is_file())
    for secret in (bot_token, hf, known_value, "x" * 30, "BEGIN RSA", "key: value", "A=1"):
        assert secret.encode() not in everything, secret
    diff = (sweep / "git.diff").read_text()
    assert "+++ b/helper.py" in diff and "+KEY = '***'" in diff
    skipped = {s["file"]: s["why"] for s in json.loads(
        (sweep / "sweep.json").read_text())["provenance"]["git"]["untracked_skipped"]}
    assert "credential" in skipped["credentials.json"] and "credential" in skipped["secrets.yaml"]
    assert skipped["start-bot.sh"] == skipped["env.sh"] == "not source code can import"
    assert skipped["hub.py"] == "it holds a Hugging Face token"
    assert skipped["notes.py"] == "it holds the secret $MY_SECRET"
    assert skipped["conf/task/mine.yaml"] == "it holds a Discord webhook URL"
    assert "credential" in skipped[".env"] and "credential" in skipped["deploy.pem"]


def test_an_edit_to_a_task_outside_git_is_noticed(project: Project) -> None:
    """No git repository: the task's own source files name the code version."""
    assert project.run("task.mode=raise").returncode == 1
    toy = project.root / "toy.py"
    toy.write_text(toy.read_text().replace("toy failure", "toy failure, fixed?"))
    proc = project.run("task.mode=raise", "runner.retry_crashed=true")
    assert "warning: the code changed since" in proc.stderr and "toy.py changed" in \
        proc.stderr, proc.stderr
    (row,) = project.status()["runs"]
    assert "fixed?" in row["reason"]


def test_the_environment_lists_every_distribution_as_importlib_metadata_parses_it() -> None:
    """The fast read of each METADATA head gives what the full e-mail parse gives, for every
    distribution installed here (more than a hundred: torch, wandb, hydra-core, ...)."""
    import importlib.metadata

    from runner.storage.provenance import environment

    full = {str(d.metadata["Name"]): d.version for d in importlib.metadata.distributions()
            if d.metadata["Name"]}
    got = environment()
    assert got == full and len(got) > 50 and got["hydra-core"] == full["hydra-core"]
    assert list(got) == sorted(got, key=str.lower)
