"""What every end-to-end test of the Discord bot shares: a real discord.py client logged in to
the local fake of Discord (tests/fakes/discord_api.py), a fake clock, and the answers to find."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import subprocess
from collections.abc import AsyncIterator
from typing import Any

import discord
import discord.gateway
import discord.http
import pytest
import yarl

from conftest import Project
from fakes.discord_api import APP_ID, FakeDiscordAPI, Request
from runner.integrations.discord_bot.app import RunnerBot
from runner.integrations.discord_bot.config import BotConf
from runner.integrations.discord_bot.logic import BotLogic

TOKEN = "MTAwMDAwMDAwMDAwMDAwMDAx.fake-bot-token.abcdefghijklmnopqrstuvwxyz0123"
ALLOWED_USER, OTHER_USER = 1300000000000000001, 1300000000000000999
CHANNEL, OTHER_CHANNEL = 1200000000000000001, 1200000000000000777
ROLE = 1500000000000000001


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def conf_for(project: Project, **changes: Any) -> BotConf:
    base = {"allowed_users": [ALLOWED_USER], "allowed_roles": [ROLE], "channels": [CHANNEL],
            "workdir": str(project.root), "tick_s": 0.05, "tasks": ["toy"]}
    return BotConf(**{**base, **changes})


@contextlib.asynccontextmanager
async def running(logic: BotLogic, monkeypatch: pytest.MonkeyPatch
                  ) -> AsyncIterator[tuple[FakeDiscordAPI, RunnerBot]]:
    fake = await FakeDiscordAPI().start()
    monkeypatch.setattr(discord.http.Route, "BASE", f"{fake.base}/api/v10")
    monkeypatch.setattr(discord.gateway.DiscordWebSocket, "DEFAULT_GATEWAY",
                        yarl.URL(f"ws://127.0.0.1:{fake.port}/gateway"))
    assert discord.http.Route.BASE.startswith("http://127.0.0.1:")  # never discord.com
    bot = RunnerBot(logic, guild_ready_timeout=0.05)
    try:
        await bot.login(TOKEN)  # also syncs the command tree
        task = asyncio.create_task(bot.connect(reconnect=False))
        await asyncio.wait_for(bot.wait_until_ready(), 10)
        yield fake, bot
    finally:
        await bot.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 10)
        await fake.stop()
    assert bot.errors == []
    assert_no_pings(fake.requests)
    assert not any(TOKEN in json.dumps(r.payload) or TOKEN.split(".")[-1] in json.dumps(r.payload)
                   for r in fake.requests), "the token was sent in a message"


_MENTION = re.compile(r"@(everyone|here)|<@[!&]?\d+>")


def posted(requests: list[Request]) -> list[dict[str, Any]]:
    """Every message the bot sent or edited (its payload), interaction replies included."""
    out = []
    for r in requests:
        p = r.payload if isinstance(r.payload, dict) else {}
        if r.path.endswith("/callback"):
            p = p.get("data") or {}
        if r.method in ("POST", "PATCH") and ("content" in p or "embeds" in p):
            out.append(p)
    return out


def assert_no_pings(requests: list[Request]) -> None:
    """Nothing the bot sent can ping: each message mentions nobody, and no text holds a raw
    @everyone, @here or <@id>."""
    for p in posted(requests):
        assert p.get("allowed_mentions", {}).get("parse") == [], p
        assert not _MENTION.search(json.dumps(p)), p


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def reap(logic: BotLogic) -> list[int]:
    """Wait for the sweeps the bot started (killed if they hang); their exit statuses."""
    codes = []
    for item in logic.launches.items:
        try:
            codes.append(item.proc.wait(60))
        except subprocess.TimeoutExpired:
            os.killpg(item.proc.pid, signal.SIGKILL)
            codes.append(item.proc.wait())
    return codes


async def answer(fake: FakeDiscordAPI, token: str) -> Request:
    """The follow-up that carries a deferred command's answer (after its 'thinking' ack)."""
    (ack,) = await fake.wait_for(lambda r: r.path.endswith(f"/{token}/callback"))
    assert ack.payload["type"] == 5, ack.payload  # deferred within Discord's 3 s
    hits = await fake.wait_for(lambda r: r.path == f"/webhooks/{APP_ID}/{token}")
    return hits[-1]


async def immediate(fake: FakeDiscordAPI, token: str) -> dict[str, Any]:
    (reply,) = await fake.wait_for(lambda r: r.path.endswith(f"/{token}/callback"))
    assert reply.payload["type"] == 4
    return reply.payload["data"]
