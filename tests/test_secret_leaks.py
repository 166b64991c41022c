"""No secret in anything runner writes or sends.

Sentinel secrets sit in the environment (the well-known variables, and HF_TOKEN named by
``runner.secret_env``); every notifier (console, Discord webhook against a local fake) and every
tracker (wandb offline, TensorBoard) is on; runs log a secret as a metric, crash with every
secret in their exception, exit with one, and print them before being SIGKILLed. Then every file
under the project and wandb's folders, every command's output and every payload the webhook
received is searched: no secret, and no long piece of one, may appear, except in the task's own
stdout/stderr of the run that printed them itself (which the test checks do hold them, so the
search would find a leak)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from conftest import Project
from fakes.discord_server import FakeDiscord

pytest.importorskip("wandb")
pytest.importorskip("tensorboardX")

BOT_TOKEN = "MTAwMDAwMDAwMDAwMDAwMDAy.leak-bot-token.ZYXWVUTSRQPONMLKJIHGFEDCBA98"
WANDB_KEY = "leakwandbkey0123456789abcdef0123456789ab"
HF_TOKEN = "hf_leakSentinelToken0123456789ABCDEFGH"
HOOK_TOKEN = "hooktoken-leak-" + "Q" * 40

LEAK_TASK = '''
import os, signal, sys
import runner

NAMES = ("DISCORD_WEBHOOK_URL", "DISCORD_BOT_TOKEN", "WANDB_API_KEY", "HF_TOKEN")

def main(cfg):
    secrets = [os.environ[n] for n in NAMES]
    runner.log({"loss": 0.5, "note": "the key is " + secrets[2]}, step=0)
    mode = cfg.task.mode
    if mode == "raise":
        raise RuntimeError("could not log in with " + " and ".join(secrets))
    if mode == "exit":
        sys.exit("giving up, token " + secrets[1])
    if mode == "kill":
        print("task prints its own secrets:", *secrets, file=sys.stderr, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
    return {"score": 1.0, "comment": "done with " + secrets[3]}
'''


def _pieces(secret: str) -> list[str]:
    import re

    return [secret, *(p for p in re.split(r"[/:@?&=.]", secret) if len(p) >= 12)]


def _hits(data: bytes, needles: list[str]) -> list[str]:
    return [n for n in needles if n.encode() in data]


def test_no_secret_in_any_file_output_or_payload(project: Project, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    (project.root / "leak.py").write_text(LEAK_TASK)
    (project.root / "conf" / "task" / "leak.yaml").write_text("name: leak\nfn: leak:main\nlr: 0.1\n"
                                                               "mode: ok\n")
    wandb_dirs = []
    for name in ("WANDB_DIR", "WANDB_CACHE_DIR", "WANDB_CONFIG_DIR", "WANDB_DATA_DIR"):
        path = tmp_path / name.lower()
        path.mkdir()
        wandb_dirs.append(path)
        monkeypatch.setenv(name, str(path))
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("DISCORD_BOT_TOKEN", BOT_TOKEN)
    monkeypatch.setenv("WANDB_API_KEY", WANDB_KEY)
    monkeypatch.setenv("HF_TOKEN", HF_TOKEN)

    outputs: list[str] = []
    with FakeDiscord(token=HOOK_TOKEN) as fake:
        monkeypatch.setenv("DISCORD_WEBHOOK_URL", fake.webhook_url)
        needles = [p for s in (BOT_TOKEN, WANDB_KEY, HF_TOKEN, fake.webhook_url)
                   for p in _pieces(s)]
        args = ["task=leak", "+sweep=grid", "task.mode=ok,raise,exit,kill", "task.lr=0.1", "seed=0",
                "notifier=[console,discord]", "notifier.discord.events=[all]",
                "notifier.discord.metric=score", "tracker=[wandb,tensorboard]",
                "runner.secret_env=[HF_TOKEN]"]
        proc = project.cli(*args, "runner.output_dir=outputs")
        outputs.append(proc.stdout + proc.stderr)
        assert proc.returncode == 1, proc.stderr  # three runs crashed
        sweep = project.sweep_dir()
        for command in (["status", str(sweep)], ["status", str(sweep), "--json"],
                        ["status", str(sweep), "--state", "crashed"],
                        ["report", str(sweep), "--metric", "score", "--mode", "max"],
                        ["resume", str(sweep), "runner.retry_crashed=true"]):
            proc = project.cli(*command)
            outputs.append(proc.stdout + proc.stderr)
        payloads = [json.dumps(r.payload).encode() + b"".join(r.files.values())
                    for r in fake.requests]

    assert len(payloads) >= 8, outputs[-1]  # started, 4 runs, finished; then 3 crashes again
    assert any("could not log in with ***" in json.dumps(r.payload) for r in fake.requests)
    for text in outputs:
        assert _hits(text.encode(), needles) == [], text[-2000:]
    for data in payloads:
        assert _hits(data, needles) == []

    rows = {Path(r["dir"]).name: r for r in project.status(sweep)["runs"]}
    kill_dir = next(sweep / "runs" / d for d, r in rows.items()
                    if r["values"]["task.mode"] == "kill")
    raise_dir = next(sweep / "runs" / d for d, r in rows.items()
                     if r["values"]["task.mode"] == "raise")
    own = {kill_dir / "stderr.log", kill_dir / "stdout.log"}
    assert _hits((kill_dir / "stderr.log").read_bytes(), needles)  # the search finds a leak
    assert "could not log in with ***" in (raise_dir / "CRASH.txt").read_text()
    searched = 0
    for root in [project.root, *wandb_dirs]:
        for dirpath, _dirs, files in os.walk(root):
            for name in files:
                path = Path(dirpath) / name
                if path in own or (name == "output.log" and kill_dir in path.parents):
                    continue  # the task's own output (and wandb's copy of it)
                searched += 1
                assert _hits(path.read_bytes(), needles) == [], path
    assert searched > 50


BAD_NOTIFIER = '''
import os, threading
from runner.notifiers.base import Notifier

def fail(secret):
    raise ValueError(secret)

class Leaky(Notifier):
    def __init__(self, conf):
        super().__init__(conf)
        secret = os.environ["HF_TOKEN"]
        thread = threading.Thread(target=fail, args=(secret,), name="leaky")
        thread.start()
        thread.join()
        raise RuntimeError("constructor failed for " + secret)

    def handle(self, event):
        pass
'''


def test_an_unexpected_traceback_is_redacted_too(project: Project,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """A bug (here a notifier that raises with a secret in its message, in the main thread and
    in one of its own threads) still prints its traceback, but redacted."""
    (project.root / "leaky.py").write_text(BAD_NOTIFIER)
    monkeypatch.setenv("HF_TOKEN", HF_TOKEN)
    proc = project.run("runner.secret_env=[HF_TOKEN]", "+notifier.leaky={_target_: leaky.Leaky}")
    assert proc.returncode == 1
    assert "RuntimeError: constructor failed for ***" in proc.stderr, proc.stderr
    assert "Exception in thread leaky" in proc.stderr and "ValueError: ***" in proc.stderr
    assert HF_TOKEN not in proc.stderr + proc.stdout
