"""A plain (not editable) install works from any folder: the MNIST example, a user's own project
through the `runner` script, a Hydra app with hydra/launcher=runner, and nothing but `runner`
(and its plugins in Hydra's `hydra_plugins` namespace) at the top level of the install."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("site")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps",
                    "--no-build-isolation", "--target", str(target), str(REPO)], check=True,
                   capture_output=True, text=True, timeout=300)
    return target


def _env(target: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "COLUMNS")}
    env["PYTHONPATH"] = str(target)  # the install only: not the repository
    return env


def test_only_runner_is_installed_at_the_top_level(installed: Path) -> None:
    assert sorted(p.name for p in installed.iterdir() if not p.name.endswith(".dist-info")
                  ) == ["bin", "hydra_plugins", "runner"]
    assert not (installed / "hydra_plugins" / "__init__.py").exists()  # a namespace: shared
    assert sorted(p.name for p in (installed / "hydra_plugins").iterdir()) == [
        "runner_launcher", "runner_sweeper"]
    assert (installed / "runner" / "examples" / "mnist" / "data" / "mnist_5k.npz").is_file()
    assert sorted(p.name for p in (installed / "runner" / "web" / "static").iterdir()) == [
        "app.css", "app.js", "index.html"]  # the web view's page ships with the package


def test_the_mnist_example_runs_from_another_folder(installed: Path, tmp_path: Path) -> None:
    pytest.importorskip("torch")
    proc = subprocess.run([sys.executable, "-m", "runner", "task.epochs=1", "task.train_size=256",
                           "runner.progress=false"], cwd=tmp_path, env=_env(installed),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "1 completed" in proc.stderr
    assert list((tmp_path / "outputs").glob("mnist-single-*/runs/*/COMPLETED"))


def test_a_hydra_app_finds_the_launcher_of_a_plain_install(installed: Path,
                                                           tmp_path: Path) -> None:
    shutil.copytree(REPO / "examples" / "hydra_app", tmp_path / "app")
    env = {**_env(installed), "PYTHONPATH": f"{installed}{os.pathsep}{_hydra_site()}"}
    proc = subprocess.run([sys.executable, "app.py", "-m", "hydra/launcher=runner",
                           "lr=0.1,0.01", "hydra.launcher.progress=false"], cwd=tmp_path / "app",
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "2 of 2 job(s) completed" in proc.stdout + proc.stderr
    (sweep,) = (tmp_path / "app" / "multirun").iterdir()
    assert len(list(sweep.glob("runs/*/COMPLETED"))) == 2
    assert (sweep / "0" / ".hydra" / "config.yaml").is_file()


def _hydra_site() -> str:
    import hydra

    return str(Path(hydra.__file__).parents[1])


def test_a_users_project_runs_with_the_runner_script(installed: Path, tmp_path: Path) -> None:
    (tmp_path / "conf" / "task").mkdir(parents=True)
    (tmp_path / "conf" / "task" / "mine.yaml").write_text("name: mine\nfn: my_train:main\n")
    (tmp_path / "my_train.py").write_text("def main(cfg):\n    return {'w': cfg.task.width}\n")
    proc = subprocess.run([str(installed / "bin" / "runner"), "task=mine", "+sweep=grid",
                           "+task.width=64,128"], cwd=tmp_path, env=_env(installed),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "2 completed" in proc.stderr  # the task's own axes only, not MNIST's
    (sweep,) = (tmp_path / "outputs").iterdir()
    assert sweep.name.startswith("mine-grid-")
    check = subprocess.run([sys.executable, "-c", "import runner.integrations.discord_bot.logic;"
                            " import importlib.util as u; print(u.find_spec('integrations'))"],
                           cwd=tmp_path, env=_env(installed), capture_output=True, text=True)
    assert check.returncode == 0 and check.stdout.strip() == "None", check.stderr


def test_the_distribution_is_not_the_other_runner_and_says_its_version(installed: Path,
                                                                       tmp_path: Path) -> None:
    """"runner" on the package index is an unrelated project: this one is hydra-runner (its
    import name and ``python -m runner`` stay), and ``--version`` says which."""
    (info,) = installed.glob("*.dist-info")
    assert info.name.startswith("hydra_runner-")
    proc = subprocess.run([sys.executable, "-m", "runner", "--version"], cwd=tmp_path,
                          env=_env(installed), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.startswith("runner 0."), proc.stdout
    assert "hydra-runner" in proc.stdout
