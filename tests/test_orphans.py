"""No run outlives its runner: the fork server and the runner are SIGKILLed at many moments
around a fork (right before, during and right after it), and no run's body may start after the
kill or go on to its end.

The fork server here is the real one (``runner.launchers.forkserver``, as the local and pinned
launchers and the Hydra plugin's ``start_method=fork`` use it) and its children run the real
``worker.child_main`` up to the body, which only marks its start and end
(``fork_race_launcher.py``)."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

HERE = Path(__file__).parent
REPO = HERE.parent
# a kill is delivered, and the process exits, a moment after os.kill returns: a body may mark
# its start within that moment (the orphans this guards against started 0.2-0.8 s later)
GRACE_S = 0.05


def _launcher(*args: str) -> list[str]:
    return [sys.executable, str(HERE / "fork_race_launcher.py"), *args]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(HERE)])}


def _marks(folder: Path) -> dict[str, dict[str, list[tuple[int, float]]]]:
    """key -> {"start": [(pid, time)], "end": [...]}"""
    out: dict[str, dict[str, list[tuple[int, float]]]] = {}
    for f in folder.iterdir():
        parts = f.name.rsplit("-", 2)
        if not f.name.startswith(".") and len(parts) == 3 and parts[1] in ("start", "end"):
            out.setdefault(parts[0], {}).setdefault(parts[1], []).append(
                (int(parts[2]), float(f.read_text())))
    return out


def _orphans(marks: dict[str, dict[str, list[tuple[int, float]]]], kills: dict[str, float]
             ) -> tuple[dict[str, object], dict[str, object]]:
    """(bodies that started after their supervisor's kill, bodies that reached their end)."""
    late = {k: m["start"] for k, m in marks.items()
            if any(t > kills[k.replace("w", "s", 1)] + GRACE_S for _, t in m["start"])}
    ended = {k: m["end"] for k, m in marks.items() if m.get("end")}
    return late, ended


def _no_survivor(marks: dict[str, dict[str, list[tuple[int, float]]]]) -> None:
    for kinds in marks.values():
        for pid, _ in kinds.get("start", []):
            assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == "zombie", pid


@pytest.mark.parametrize("how, tries, spread", [("fork", 300, 0.003), ("exec", 40, 0.05)])
def test_killing_the_fork_server_around_a_fork_leaves_no_body_running(
        tmp_path: Path, how: str, tries: int, spread: float) -> None:
    """``fork``: the server is a fork of the runner (the Hydra plugin's start_method=fork);
    ``exec``: a fresh interpreter (the local and pinned launchers), whose children take longer
    to reach their body under load: its kills are spread over 50 ms so that some land after a
    body started (a run in CI had all 40 land before any did with 3 ms)."""
    proc = subprocess.run(_launcher("server", str(tmp_path), str(tries), "1", how,
                                    str(spread)),
                          env=_env(), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    time.sleep(1.5)  # a body that survived would end by now
    kills = json.loads((tmp_path / "kills.json").read_text())
    marks = _marks(tmp_path)
    assert _orphans(marks, kills) == ({}, {})
    _no_survivor(marks)
    # the kills did land around the forks: some bodies had started, some children not forked
    started = sum(1 for k, m in marks.items() if k.startswith("s") and m.get("start"))
    assert len(kills) == tries and 0 < started < tries, started


@pytest.mark.parametrize("how", ["fork", "exec"])
def test_killing_the_runner_around_a_fork_leaves_no_body_running(tmp_path: Path,
                                                                  how: str) -> None:
    rng = random.Random(2)
    kills = {}
    for i in range(25):
        key = f"l{i}"
        proc = subprocess.Popen(_launcher("launcher", str(tmp_path), key, how), env=_env(),
                                stdout=subprocess.PIPE, text=True, start_new_session=True)
        assert proc.stdout is not None and proc.stdout.readline().strip() == "sent"
        end = time.monotonic() + rng.uniform(0, 0.004)
        while time.monotonic() < end:
            pass
        os.kill(proc.pid, signal.SIGKILL)
        kills[key] = time.monotonic()
        proc.wait()
        proc.stdout.close()
    time.sleep(1.5)
    marks = _marks(tmp_path)
    assert _orphans(marks, kills) == ({}, {})
    _no_survivor(marks)


def test_a_child_whose_parent_died_before_it_asked_to_die_with_it_exits(tmp_path: Path) -> None:
    """The root of the race, deterministically: the parent is gone before the child arms the
    parent-death signal; the child must notice (its parent is no longer the pid from before the
    fork) and exit before its body. The same check guards ``python -m runner.execution.worker
    --parent-pid`` (launcher.start_method=spawn)."""
    body = tmp_path / "body"
    code = (
        "import os, sys, time\n"
        "from runner.execution import worker\n"
        "parent = os.getpid()\n"
        "if os.fork() == 0:\n"
        "    while os.getppid() == parent:\n"
        "        time.sleep(0.001)\n"
        "    worker.die_with_parent(parent)\n"
        "    open(sys.argv[1], 'w').write('ran')\n"
        "    os._exit(0)\n"
        "os._exit(0)\n")
    subprocess.run([sys.executable, "-c", code, str(body)], env=_env(), check=True, timeout=30)
    time.sleep(1.0)
    assert not body.exists()
