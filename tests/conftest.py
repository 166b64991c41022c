"""Shared fixtures: a throw-away project directory with a toy task, and ways to run runner."""

from __future__ import annotations

import json
import os
import signal
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]

TOY_TASK = '''
import ctypes, json, os, signal, sys, time
from pathlib import Path
import runner

def main(cfg):
    t = cfg.task
    ctx = runner.current_run()
    marks = Path(t.marker_dir)
    marks.mkdir(parents=True, exist_ok=True)
    (marks / f"start-{ctx.run_id}-{os.getpid()}").touch()
    if t.get("record_env"):
        (ctx.run_dir / "env.json").write_text(json.dumps(
            {"affinity": sorted(os.sched_getaffinity(0)), "env": dict(os.environ)}))
    for step in range(int(t.steps)):
        runner.log({"loss": 1.0 / (step + 1), "lr": float(t.lr)}, step=step)
        if t.get("val_every") and step % int(t.val_every) == 0:  # a sparser metric
            runner.log({"val/acc": float(t.lr) * step}, step=step)
        time.sleep(float(t.sleep) / max(1, int(t.steps)))
    mode = t.mode
    if mode == "raise":
        raise ValueError(f"toy failure lr={t.lr}")
    if mode == "exit3":
        sys.exit(3)
    if mode == "segv":
        ctypes.string_at(0)
    if mode == "sigkill":
        print("toy: about to be killed", file=sys.stderr, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
    if mode == "hang":
        time.sleep(3600)
    if mode == "wait_file":  # until the test creates <marker_dir>/release
        while not (marks / "release").exists():
            time.sleep(0.1)
    if mode == "checkpoint":  # counts to t.steps, one step per 0.2 s; saved when interrupted
        ckpt = ctx.run_dir / "ckpt.json"
        start = json.loads(ckpt.read_text())["step"] if ckpt.exists() else 0
        step = start
        try:
            while step < int(t.steps):
                time.sleep(0.2)
                step += 1
        except BaseException:
            ckpt.write_text(json.dumps({"step": step}))
            raise
        (marks / f"done-{ctx.run_id}-{os.getpid()}").touch()
        return {"resumed_from": start, "step": step,
                "restarts": int(os.environ.get("SLURM_RESTART_COUNT", "0"))}
    (marks / f"done-{ctx.run_id}-{os.getpid()}").touch()
    return {"score": float(t.lr) * 10 + float(cfg.seed), "steps": int(t.steps)}
'''

TOY_CONF = '''
name: toy
fn: toy:main
lr: 0.1
channels: 8
steps: 3
sleep: 0.0
mode: ok
marker_dir: {marker_dir}
record_env: false
'''


def _default_sigint() -> None:
    """A shell runs background jobs with SIGINT ignored, and children inherit that: tests that
    send Ctrl-C's SIGINT need the default disposition whatever started pytest."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class Project:
    """A directory with conf/task/toy.yaml and toy.py; runner is run from here."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.markers = root / "markers"
        (root / "conf" / "task").mkdir(parents=True)
        (root / "toy.py").write_text(TOY_TASK)
        (root / "conf" / "task" / "toy.yaml").write_text(TOY_CONF.format(marker_dir=self.markers))

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(REPO), str(self.root)])
        env.pop("COLUMNS", None)
        return env

    def args(self, *overrides: str) -> list[str]:
        return [sys.executable, "-m", "runner", "task=toy", "runner.output_dir=outputs",
                *overrides]

    def run(self, *overrides: str, check: bool = False, timeout: float = 120
            ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(self.args(*overrides), cwd=self.root, env=self.env(), text=True,
                              capture_output=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(
                f"runner failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
        return proc

    def popen(self, *overrides: str) -> subprocess.Popen[str]:
        return subprocess.Popen(self.args(*overrides), cwd=self.root, env=self.env(), text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                start_new_session=True, preexec_fn=_default_sigint)

    def cli(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "runner", *args], cwd=self.root,
                              env=self.env(), text=True, capture_output=True, timeout=timeout)

    def sweep_dir(self) -> Path:
        dirs = [d for d in (self.root / "outputs").iterdir() if not d.name.startswith(".")]
        assert len(dirs) == 1, dirs
        return dirs[0]

    def status(self, sweep: Path | None = None) -> dict[str, Any]:
        """What ``status <sweep> --json`` prints, read in this process: tests poll it in loops,
        and a ``python -m runner`` process per look kept a CPU busy beside the runs under test
        (the CLI itself is run by test_readme and test_status)."""
        from runner.errors import RunnerError
        from runner.results.status import json_text
        from runner.storage.store import SweepStore

        try:
            return json.loads(json_text(SweepStore(sweep or self.sweep_dir()), workers=1))
        except RunnerError as exc:
            raise AssertionError(str(exc)) from exc

    def status_cli(self, sweep: Path | None = None) -> dict[str, Any]:
        proc = self.cli("status", str(sweep or self.sweep_dir()), "--json")
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout)

    def running(self, sweep: str) -> int:
        """How many runs of ``outputs/<sweep>`` hold a RUNNING FLAG (0 while it is created)."""
        return len(list((self.root / "outputs" / sweep / "runs").glob("*/RUNNING")))

    def release(self) -> None:
        """Let the runs of ``task.mode=wait_file`` end."""
        self.markers.mkdir(parents=True, exist_ok=True)
        (self.markers / "release").touch()

    def markers_of(self, kind: str) -> dict[str, int]:
        """run id -> number of marker files of that kind (start or done)."""
        counts: dict[str, int] = {}
        if self.markers.exists():
            for f in self.markers.iterdir():
                if f.name.count("-") != 2:  # e.g. the "release" file of mode wait_file
                    continue
                k, rid, _pid = f.name.split("-")
                if k == kind:
                    counts[rid] = counts.get(rid, 0) + 1
        return counts


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Project]:
    proj = Project(tmp_path / "proj")
    monkeypatch.chdir(proj.root)
    monkeypatch.syspath_prepend(str(proj.root))
    yield proj


def wait_for(predicate: Callable[[], Any], timeout: float = 60, interval: float = 0.05) -> Any:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s")


def png_size(image: Path | bytes) -> tuple[int, int]:
    """(width, height) of a PNG file or PNG bytes; fails if it is not a PNG."""
    data = image if isinstance(image, bytes) else image.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def colours_in(path: Path, palette: list) -> list[int]:
    """Indices of palette colours drawn (exactly) in the image."""
    import matplotlib.image as mpimg

    pixels = (mpimg.imread(path)[:, :, :3] * 255).round().astype(int).reshape(-1, 3)
    present = {tuple(p) for p in np.unique(pixels, axis=0)}
    return [i for i, c in enumerate(palette)
            if tuple(int(round(x * 255)) for x in c[:3]) in present]


@pytest.fixture
def wandb_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """wandb offline, every file it writes inside tmp_path, no key, no service, no network."""
    for name in ("WANDB_DIR", "WANDB_CACHE_DIR", "WANDB_CONFIG_DIR", "WANDB_DATA_DIR"):
        path = tmp_path / name.lower()
        path.mkdir()
        monkeypatch.setenv(name, str(path))
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc key either
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_SERVICE", raising=False)
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")


@pytest.hookimpl(optionalhook=True)  # (xdist's hook: absent with -p no:xdist)
def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """``-n auto``: one worker more than CPUs, since many tests wait on processes, the cluster or
    a browser (with 2 CPUs, 3 workers end the suite 20% sooner than 2)."""
    return (os.cpu_count() or 1) + 1


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The SLURM tests first: one worker holds their cluster (--dist loadfile) for several
    minutes, so they start at once instead of last while the other files share the rest."""
    items.sort(key=lambda item: item.path.name != "test_slurm.py")


def pytest_sessionstart(session: pytest.Session) -> None:
    """Byte-compile runner's own modules once, before the tests start processes: with
    PYTHONDONTWRITEBYTECODE set (as on CI's machine) no process ever writes their cache, and
    each of the suite's hundreds of ``python -m runner`` processes compiled them from source.
    Python reads a cache it is not allowed to write; a stale one is recompiled as ever."""
    if hasattr(session.config, "workerinput"):  # an xdist worker: the controller did it
        return
    import compileall

    for tree in [REPO / "runner", REPO / "integrations", REPO / "hydra_plugins",
                 *REPO.glob("build/__editable__.*")]:
        if tree.is_dir():
            compileall.compile_dir(tree, quiet=2, workers=1)
