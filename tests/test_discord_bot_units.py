"""The bot's pieces without Discord: message limits, chat overrides, its command line, and the
queries it shares with ``status``."""

from __future__ import annotations

import subprocess
import sys

import pytest

from conftest import Project
from runner.errors import ConfigError
from runner.integrations.discord_bot.chat_policy import parse_chat_overrides
from runner.integrations.discord_bot.messages import MAX_CHARS, plan_messages, split_text


def test_split_text_keeps_every_character_and_the_limit() -> None:
    text = "\n".join(f"line {i} " + "x" * (i % 90) for i in range(400))
    chunks = split_text(text)
    assert all(len(c) <= MAX_CHARS for c in chunks)
    assert "".join(chunks).replace("\n", "") == text.replace("\n", "")


def test_split_text_closes_and_reopens_code_blocks() -> None:
    text = "title\n```\n" + "\n".join(f"row {i:03d}" for i in range(600)) + "\n```\n"
    chunks = split_text(text)
    assert len(chunks) > 1
    assert all(c.count("```") % 2 == 0 for c in chunks)


def test_a_very_long_line_is_split_too() -> None:
    assert [len(c) for c in split_text("y" * 5000)] == [1992, 1992, 1016]


def test_plan_messages_attaches_what_would_take_too_many_messages() -> None:
    short, files = plan_messages("hello", [("a.png", b"png")])
    assert short == ["hello"] and files == [("a.png", b"png")]
    texts, files = plan_messages("head\n" + "z" * 9000, [("a.png", b"png")])
    assert len(texts) == 1 and "full reply attached as reply.txt" in texts[0]
    assert files[0][0] == "reply.txt" and len(files[0][1]) == 9005 and files[1][0] == "a.png"


@pytest.mark.parametrize("text, expected", [
    ("+sweep=grid task.lr=0.1,0.01 seed=1,2", ["+sweep=grid", "task.lr=0.1,0.01", "seed=1,2"]),
    ("task.name='a b'; rm -rf /", ["task.name=a b;", "rm", "-rf", "/"]),
])
def test_chat_overrides_are_split_without_a_shell(text: str, expected: list[str]) -> None:
    if "rm" in text:  # split, never executed: and '-rf' is refused as an option
        with pytest.raises(ConfigError, match="options are not taken from chat: -rf"):
            parse_chat_overrides(text)
    else:
        assert parse_chat_overrides(text) == expected


@pytest.mark.parametrize("text, message", [
    ("", "no overrides given"),
    ("task.lr=[", "cannot parse override 'task.lr=['"),
    ("hydra.run.dir=/tmp", "'hydra.run.dir' cannot be set from chat"),
    ("runner.output_dir=/etc", "'runner.output_dir' cannot be set from chat"),
    ("~task.fn", "'task.fn' cannot be set from chat"),
    ("+bot.token=abc", "'bot.token' looks like a token or key"),
    ("+notifier.discord.webhook_url=x", "'notifier.discord.webhook_url' cannot be set"),
])
def test_chat_overrides_refused(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("[", r"\[")):
        parse_chat_overrides(text)


def _bot_cli(project: Project, *args: str, env: dict[str, str] | None = None
             ) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in project.env().items() if k != "DISCORD_BOT_TOKEN"}
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "runner.integrations.discord_bot", *args],
                          cwd=project.root, env=full_env, capture_output=True, text=True,
                          timeout=60)


def test_bot_command_line_errors_name_the_problem(project: Project) -> None:
    proc = _bot_cli(project, "bot.allowed_users=[1234]")
    assert proc.returncode == 2
    assert "no secret found in $DISCORD_BOT_TOKEN" in proc.stderr
    proc = _bot_cli(project, "bot.alowed_users=[1]", env={"DISCORD_BOT_TOKEN": "tok" * 20})
    assert proc.returncode == 2 and "bot.alowed_users" in proc.stderr
    token_file = project.root / "missing-token"
    proc = _bot_cli(project, f"bot.token_file={token_file}", "bot.token_env=NO_SUCH_VAR")
    assert proc.returncode == 2 and "cannot read the secret file" in proc.stderr


def test_status_filters_and_sorts_with_the_bots_queries(project: Project) -> None:
    project.run("+sweep=grid", "task.lr=0.1,0.2", "seed=1,2", "task.mode=ok", check=True)
    proc = project.cli("status", str(project.sweep_dir()), "--sort", "score", "--max", "--top",
                       "2")
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in proc.stdout.splitlines() if "COMPLETED" in line]
    assert len(lines) == 2 and "score=4" in lines[0] and "score=3" in lines[1]
    proc = project.cli("status", str(project.sweep_dir()), "--state", "crashed")
    assert proc.returncode == 0 and "COMPLETED" not in proc.stdout
    proc = project.cli("status", str(project.sweep_dir()), "--state", "done")
    assert proc.returncode == 2 and "unknown state 'done'" in proc.stderr



def test_chat_cannot_ask_for_unbounded_work(project: Project) -> None:
    from runner.errors import StateError
    from runner.integrations.discord_bot.config import BotConf
    from runner.integrations.discord_bot.logic import MAX_SUBSCRIPTIONS, BotLogic, Caller

    project.run("runner.name=one", check=True)
    logic = BotLogic(BotConf(allowed_users=[1], channels=[2], workdir=str(project.root)))
    with pytest.raises(StateError, match="one plot has at most 8 panels"):
        logic.plot("one", keys=",".join(f"k{i}" for i in range(50)))
    caller = Caller(1, 2)
    for _ in range(MAX_SUBSCRIPTIONS):
        logic.subscribe(caller, 5, "sweeps")
    with pytest.raises(StateError, match="this channel has 10 subscriptions already"):
        logic.subscribe(caller, 5, "sweeps")
    with pytest.raises(StateError, match="at most 500"):
        logic.subscribe(Caller(1, 2), 5, "sweeps; " * 100)
    assert len(logic.subscriptions.items) == MAX_SUBSCRIPTIONS


def test_a_long_reply_attached_as_a_file_is_redacted_too(monkeypatch: pytest.MonkeyPatch
                                                        ) -> None:
    import asyncio

    from runner.integrations.discord_bot.app import deliver
    from runner.integrations.discord_bot.logic import Reply

    secret = "wandbkey-for-the-attachment-0123456789"
    monkeypatch.setenv("WANDB_API_KEY", secret)
    sent: list[dict] = []

    async def send(**kwargs: object) -> None:
        sent.append(kwargs)

    asyncio.run(deliver(send, Reply(f"key {secret}\n" + "row\n" * 3000)))
    (message,) = sent
    (attached,) = message["files"]  # type: ignore[misc]
    data = attached.fp.read()
    assert len(data) > 6000 and b"key ***" in data and secret.encode() not in data
    assert secret not in str(message["content"])


def test_an_admins_launch_function_gets_the_checked_overrides(project: Project) -> None:
    """bot.launch_fn: teams that start work elsewhere (a cluster queue) get the overrides once
    they passed every check; nothing starts locally, and a refused text never reaches it."""
    import json

    from runner.integrations.discord_bot.config import BotConf
    from runner.integrations.discord_bot.logic import BotLogic, Caller

    calls = project.root / "calls.jsonl"
    (project.root / "team_queue.py").write_text(
        "import json\n\ndef submit(overrides, **info):\n"
        f"    with open({str(calls)!r}, 'a') as f:\n"
        "        f.write(json.dumps({'overrides': overrides, **info}) + '\\n')\n"
        "    return 'queued as job 42'\n")
    logic = BotLogic(BotConf(allowed_users=[1], channels=[2], workdir=str(project.root),
                             tasks=["toy"], launch_fn="team_queue:submit"))
    reply = logic.launch(Caller(1, 2), "task=toy +sweep=grid task.lr=0.1,0.2 seed=1")
    assert reply.text.startswith("handed **toy-grid-") and "(2 run(s), grid)" in reply.text
    assert reply.text.endswith("to `team_queue:submit`: queued as job 42")
    (call,) = [json.loads(line) for line in calls.read_text().splitlines()]
    assert call["overrides"] == ["task=toy", "+sweep=grid", "task.lr=0.1,0.2", "seed=1"]
    assert call["runs"] == 2 and call["user_id"] == 1 and call["name"].startswith("toy-grid-")
    assert logic.launches.items == [] and not (project.root / "outputs" / call["name"]).exists()
    with pytest.raises(ConfigError, match="'task.fn' cannot be set from chat"):
        logic.launch(Caller(1, 2), "task=toy task.fn=os:system")
    assert len(calls.read_text().splitlines()) == 1  # the refused text never reached it


def test_a_bot_that_cannot_reach_discord_says_so_in_one_line(
        project: Project, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
        ) -> None:
    """No network (here: a closed port on 127.0.0.1 where Discord's API would be): one line
    and exit 1, and bot.log holds plain text (no colour codes, even in a container)."""
    import discord.http

    from runner.integrations.discord_bot.__main__ import main

    monkeypatch.setattr(discord.http.Route, "BASE", "http://127.0.0.1:9/api/v10")
    monkeypatch.setenv("DISCORD_BOT_TOKEN", "MTAwMDAwMDAwMDAwMDAwMDAx.GaBcDe." + "x" * 30)
    code = main([f"bot.workdir={project.root}", "bot.allowed_users=[1]"])
    err = capsys.readouterr().err
    assert code == 1 and err.startswith("error: cannot reach Discord"), err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    log = (project.root / "outputs" / ".discord-bot" / "bot.log").read_text()
    assert "\x1b[" not in log and "x" * 30 not in log
