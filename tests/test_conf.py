"""conf/ mirrors the schemas, and the package works without heavy imports."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest
import yaml

from conftest import REPO
from runner.config.schema import LocalLauncherConf, PinnedLauncherConf, RunnerConf, SweepConf
from runner.integrations.discord_notify import DiscordNotifierConf
from runner.study.config import StudyConf


def _defaults(schema: type) -> dict:
    out = {}
    for f in dataclasses.fields(schema):
        if f.default is not dataclasses.MISSING:
            out[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            out[f.name] = f.default_factory()
    return out


@pytest.mark.parametrize("path, schema, section", [
    ("conf/config.yaml", RunnerConf, "runner"),
    ("conf/launcher/local.yaml", LocalLauncherConf, None),
    ("conf/launcher/pinned.yaml", PinnedLauncherConf, None),
    ("conf/notifier/discord.yaml", DiscordNotifierConf, None),
    ("conf/sweep/optuna.yaml", StudyConf, None),
])
def test_yaml_defaults_mirror_the_schema(path, schema, section):
    data = yaml.safe_load((REPO / path).read_text())
    if section:
        data = data[section]
    assert data == _defaults(schema)


@pytest.mark.parametrize("name", ["grid", "random", "list"])
def test_sweep_files_only_use_schema_keys(name):
    data = yaml.safe_load((REPO / "conf" / "sweep" / f"{name}.yaml").read_text())
    assert set(data) <= {f.name for f in dataclasses.fields(SweepConf)}
    assert data["kind"] == name


def test_importing_runner_stays_light():
    code = ("import sys, runner; heavy = {'hydra', 'omegaconf', 'torch', 'wandb', 'discord', "
            "'matplotlib', 'pandas', 'scipy'} & set(sys.modules); print(sorted(heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=REPO, check=True)
    assert out.stdout.strip() == "[]"


def test_help_lists_subcommands():
    out = subprocess.run([sys.executable, "-m", "runner", "--help"], capture_output=True,
                         text=True, cwd=REPO, check=True)
    assert "status SWEEP_DIR" in out.stdout and "resume SWEEP_DIR" in out.stdout


def test_names_frozen_before_the_packages_moved_still_load(project, monkeypatch):
    """Sweeps frozen when integrations/ and examples/ were top-level packages still resume."""
    from pathlib import Path

    from runner.config.schema import load_target

    # as from any folder but the repository's root: no top-level integrations/examples
    monkeypatch.setattr(sys, "path", [p for p in sys.path if Path(p or ".").resolve() != REPO])
    for name in [m for m in sys.modules if m.split(".")[0] in ("integrations", "examples")]:
        monkeypatch.delitem(sys.modules, name)
    from runner.execution.tasks import check_task, load_task
    from runner.execution.trackers import Tracker
    from runner.integrations.wandb_tracker import WandbTracker

    cls, _ = load_target({"_target_": "integrations.wandb_tracker.WandbTracker"}, "tracker.w",
                         Tracker)
    assert cls is WandbTracker
    check_task("examples.mnist.train:main")
    assert load_task("examples.mnist.train:main").__module__ == "runner.examples.mnist.train"


def test_seed_everything_seeds_random_numpy_and_torch():
    import random

    import numpy as np

    import runner

    def draws() -> list:
        torch = sys.modules.get("torch")
        out = [random.random(), float(np.random.rand())]
        return out + ([float(torch.rand(1))] if torch is not None else [])

    pytest.importorskip("torch")
    runner.seed_everything(7)
    first = draws()
    runner.seed_everything(7)
    assert draws() == first and len(first) == 3
    runner.seed_everything(8)
    assert draws() != first
