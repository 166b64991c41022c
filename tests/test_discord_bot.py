"""The Discord bot end to end: a real discord.py client against a local fake of Discord's REST
API and gateway (tests/fakes/discord_api.py), on real sweep directories."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest

from conftest import Project, colours_in, png_size, wait_for
from discord_harness import (
    ALLOWED_USER,
    CHANNEL,
    OTHER_CHANNEL,
    OTHER_USER,
    ROLE,
    TOKEN,
    FakeClock,
    answer,
    conf_for,
    immediate,
    reap,
    run,
    running,
)
from fakes.discord_api import APP_ID, FakeDiscordAPI, Request
from runner.integrations.discord_bot.logic import BotLogic


@pytest.fixture(scope="module")
def sweeps(tmp_path_factory: pytest.TempPathFactory) -> Project:
    """alpha: 2 lr x 2 seeds, loss every step and val/acc every 3 steps; beta: one crash."""
    project = Project(tmp_path_factory.mktemp("bot") / "proj")
    project.run("+sweep=grid", "task.lr=0.1,0.2", "seed=1,2", "task.steps=9",
                "+task.val_every=3", "runner.name=alpha", check=True)
    proc = project.run("+sweep=grid", "task.lr=0.1", "seed=1", "task.mode=ok,raise",
                       "runner.name=beta")
    assert proc.returncode == 1, proc.stderr
    return project


def run_ids(project: Project, sweep: str) -> list[str]:
    manifest = json.loads((project.root / "outputs" / sweep / "sweep.json").read_text())
    return [r["id"] for r in manifest["runs"]]


# ---------------------------------------------------------------------- read-only commands

def test_slash_commands_are_synced_with_autocompleted_options(
        sweeps: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    async def scenario() -> None:
        async with running(BotLogic(conf_for(sweeps)), monkeypatch) as (fake, _):
            names = {c["name"] for c in fake.commands}
            assert names == {"sweeps", "runs", "summary", "plot", "subscribe", "unsubscribe",
                             "watch", "unwatch", "launch", "resume", "cancel"}
            runs = next(c for c in fake.commands if c["name"] == "runs")
            sweep_option = next(o for o in runs["options"] if o["name"] == "sweep")
            assert sweep_option["autocomplete"] is True and sweep_option["required"] is True

    run(scenario())


def test_sweeps_lists_recent_sweeps_with_counts(sweeps: Project,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    async def scenario() -> None:
        async with running(BotLogic(conf_for(sweeps)), monkeypatch) as (fake, _):
            _, token = await fake.slash("sweeps")
            text = (await answer(fake, token)).payload["content"]
            lines = {line.split()[0]: line.split() for line in text.splitlines()[2:-1]}
            assert lines["alpha"][1:4] == ["grid", "4", "4"]  # kind, runs, done
            assert lines["alpha"][-1] == "baseline,v2"  # its tags
            assert lines["beta"][1:3] == ["grid", "2"] and "1" in lines["beta"][3:]

    assert sweeps.cli("tag", "outputs/alpha", "baseline", "v2").returncode == 0

    run(scenario())


def test_runs_by_state_and_best_first(sweeps: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    async def scenario() -> None:
        async with running(BotLogic(conf_for(sweeps)), monkeypatch) as (fake, _):
            _, token = await fake.slash("runs", sweep="beta", state="CRASHED")
            text = (await answer(fake, token)).payload["content"]
            assert "1 run(s) CRASHED" in text and "ValueError: toy failure" in text
            assert "COMPLETED" not in text.split("```")[1]
            _, token = await fake.slash("runs", sweep="alp", sort="score", mode="max", top=2)
            text = (await answer(fake, token)).payload["content"]
            rows = [line for line in text.split("```")[1].splitlines()[2:] if line]
            assert len(rows) == 2
            assert [r.split()[-1] for r in rows] == ["score=4", "score=3"]  # lr*10 + seed

    run(scenario())


def test_summary_filters_config_and_metrics_by_key_prefix(
        sweeps: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    rid = run_ids(sweeps, "alpha")[0]

    async def scenario() -> None:
        async with running(BotLogic(conf_for(sweeps)), monkeypatch) as (fake, _):
            _, token = await fake.slash("summary", run=rid[:6], sweep="alpha", keys="task.lr,score")
            text = (await answer(fake, token)).payload["content"]
            assert text.startswith(f"**alpha / {rid}**: COMPLETED")
            assert "task.lr" in text and "score" in text
            assert "task.channels" not in text and "steps" not in text.split("metrics:")[1]
            _, token = await fake.slash("summary", run="nope")
            assert "no run 'nope' in any sweep" in (await answer(fake, token)).payload["content"]

    run(scenario())


def test_plot_attaches_a_png_of_metrics_logged_at_any_interval(
        sweeps: Project, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from runner.results.plots import colours

    ids = run_ids(sweeps, "alpha")

    async def scenario() -> None:
        async with running(BotLogic(conf_for(sweeps)), monkeypatch) as (fake, _):
            _, token = await fake.slash("plot", sweep="alpha", keys="loss,val/acc", spread=True)
            reply = await answer(fake, token)
            assert "mean and 95% band over seeds" in reply.payload["content"]
            (png,) = reply.files
            assert png["filename"].endswith(".png")
            width, height = png_size(png["data"])
            assert width == 800 and height > 600  # two panels
            (tmp_path / "spread.png").write_bytes(png["data"])
            _, token = await fake.slash("plot", sweep="alpha", runs=",".join(ids[:3]),
                                        keys="val/acc")
            (png,) = (await answer(fake, token)).files
            (tmp_path / "runs.png").write_bytes(png["data"])

    run(scenario())
    palette = colours(4)
    assert colours_in(tmp_path / "spread.png", palette) == [0, 1]  # 2 settings of lr
    assert colours_in(tmp_path / "runs.png", palette) == [0, 1, 2]  # 3 runs asked for


def test_autocomplete_offers_sweeps_and_the_chosen_sweeps_runs(
        sweeps: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    async def scenario() -> None:
        async with running(BotLogic(conf_for(sweeps)), monkeypatch) as (fake, _):
            iid, token = await fake.autocomplete("runs", focused="sweep", sweep="alp")
            (cb,) = await fake.wait_for(lambda r: r.path.endswith(f"/{token}/callback"))
            assert cb.payload["type"] == 8
            assert [c["value"] for c in cb.payload["data"]["choices"]] == ["alpha"]
            iid, token = await fake.autocomplete("summary", focused="run", run="",
                                                 sweep="alpha")
            (cb,) = await fake.wait_for(lambda r: r.path.endswith(f"/{token}/callback"))
            assert sorted(c["value"] for c in cb.payload["data"]["choices"]) == sorted(
                run_ids(sweeps, "alpha"))
            iid, token = await fake.autocomplete("plot", focused="keys", sweep="alpha",
                                                 keys="loss,va")
            (cb,) = await fake.wait_for(lambda r: r.path.endswith(f"/{token}/callback"))
            assert [c["value"] for c in cb.payload["data"]["choices"]] == ["loss,val/acc"]
            iid, token = await fake.autocomplete("runs", focused="sort", sweep="alpha", sort="")
            (cb,) = await fake.wait_for(lambda r: r.path.endswith(f"/{token}/callback"))
            assert [c["value"] for c in cb.payload["data"]["choices"]] == [
                "loss", "lr", "score", "steps", "val/acc"]

    run(scenario())


# ---------------------------------------------------------------------- steering and safety

def test_launch_refused_to_users_and_channels_not_allowed(
        sweeps: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    logic = BotLogic(conf_for(sweeps))

    async def scenario() -> None:
        async with running(logic, monkeypatch) as (fake, _):
            _, token = await fake.slash("launch", user_id=OTHER_USER,
                                        overrides="+sweep=grid runner.name=evil")
            data = await immediate(fake, token)
            assert data["content"].startswith("refused: you are not allowed to use /launch")
            assert data["flags"] & 64  # only the caller sees it
            _, token = await fake.slash("cancel", channel_id=OTHER_CHANNEL, sweep="alpha")
            data = await immediate(fake, token)
            assert data["content"] == "refused: /cancel is not allowed in this channel " \
                                      "(bot.channels)"

    run(scenario())
    log = (logic.log_dir / "bot.log").read_text()
    assert f"REFUSED /launch from user {OTHER_USER}" in log
    assert f"REFUSED /cancel from user {ALLOWED_USER}" in log and str(OTHER_CHANNEL) in log
    assert not (sweeps.root / "outputs" / "evil").exists()


def test_permitted_launch_runs_a_sweep_and_bad_overrides_start_nothing(
        project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    logic = BotLogic(conf_for(project))

    async def scenario() -> None:
        async with running(logic, monkeypatch) as (fake, _):
            _, token = await fake.slash("launch", overrides="task=toy +sweep=grid "
                                        "task.lr=0.3,0.4 seed=1 runner.name=gamma")
            text = (await answer(fake, token)).payload["content"]
            assert text.startswith("started **gamma**: 2 run(s) (grid)")
            _, token = await fake.slash("sweeps")  # responsive while the sweep runs
            await answer(fake, token)
            refusals = {
                "task=toy task.lrr=0.1": "task.lrr",
                "task=toy task.fn=os:system": "'task.fn' cannot be set from chat",
                "task=toy \"launcher.setup=['rm -rf ~']\"": "'launcher.setup' cannot be set",
                "task=toy +wandb.api_key=abc": "looks like a token or key",
                f"task=toy task.lr={TOKEN}": "contains a secret",
                "task=toy 'task.lr=0.1": "cannot split the overrides",
                "task=toy --config-dir=/etc": "options are not taken from chat",
            }
            for overrides, expected in refusals.items():
                _, token = await fake.slash("launch", overrides=overrides)
                text = (await answer(fake, token)).payload["content"]
                assert text.startswith("error:") and expected in text, (overrides, text)

    from runner.config.secrets import register

    register(TOKEN)  # the bot read it as a secret: it is known and redacted
    try:
        run(scenario())
    finally:
        codes = reap(logic)
    assert codes == [0], logic.launches.items[0].log.read_text()
    sweep = project.root / "outputs" / "gamma"
    assert project.status(sweep)["counts"]["COMPLETED"] == 2
    assert [p.name for p in (project.root / "outputs").iterdir()
            if not p.name.startswith(".")] == ["gamma"]
    log = (logic.log_dir / "bot.log").read_text()
    assert f"LAUNCH by user {ALLOWED_USER}" in log and "runner.name=gamma" in log
    assert TOKEN not in log


def test_cancel_then_resume_from_chat(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    logic = BotLogic(conf_for(project))
    sweep = project.root / "outputs" / "delta"

    def states() -> dict[str, int]:
        return {k: v for k, v in project.status(sweep)["counts"].items() if v}

    async def scenario() -> None:
        async with running(logic, monkeypatch) as (fake, _):
            _, token = await fake.slash("launch", overrides="task=toy +sweep=grid "
                                        "task.lr=0.3,0.4 seed=1 task.mode=wait_file "
                                        "runner.name=delta")
            assert "started **delta**" in (await answer(fake, token)).payload["content"]
            await asyncio.to_thread(wait_for, lambda: (sweep / "sweep.json").exists()
                                    and states() == {"RUNNING": 2}, 60)
            await asyncio.to_thread(wait_for, lambda: len(project.markers_of("start")) == 2, 60)
            _, token = await fake.slash("cancel", sweep="delta")
            text = (await answer(fake, token)).payload["content"]
            assert text.startswith("cancel **delta**: stopped 1 runner process(es)"), text
            assert states() == {"INTERRUPTED": 2}
            (project.markers / "release").touch()
            _, token = await fake.slash("resume", sweep="del")
            assert "resuming **delta**" in (await answer(fake, token)).payload["content"]

    try:
        run(scenario())
    finally:
        codes = reap(logic)
    assert codes == [130, 0]  # the cancelled launch, then the resume
    assert states() == {"COMPLETED": 2}
    log = (logic.log_dir / "bot.log").read_text()
    assert "CANCEL by user" in log and "RESUME by user" in log


def test_roles_allow_steering(sweeps: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    async def scenario() -> None:
        async with running(BotLogic(conf_for(sweeps, state_file="roles.json")),
                           monkeypatch) as (fake, _):
            _, token = await fake.slash("subscribe", user_id=OTHER_USER, roles=[ROLE], every=60.0,
                                        what="sweeps")
            assert (await answer(fake, token)).payload["content"].startswith("subscribed")

    run(scenario())


def test_subscriptions_fire_on_the_clock_and_survive_a_restart(
        sweeps: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    clock = FakeClock()
    conf = conf_for(sweeps, state_file="subs.json")
    channel_posts = f"/channels/{CHANNEL}/messages"

    async def reports(fake: FakeDiscordAPI, count: int) -> list[Request]:
        await fake.wait_for(lambda r: len([x for x in fake.requests
                                           if x.path == channel_posts]) >= count)
        return [r for r in fake.requests if r.path == channel_posts]

    async def first() -> str:
        async with running(BotLogic(conf, clock), monkeypatch) as (fake, _):
            _, token = await fake.slash("subscribe", every=5.0,
                                        what="sweeps; runs sweep:alpha top:2")
            text = (await answer(fake, token)).payload["content"]
            sub_id = text.split("(id ")[1].split(")")[0]
            await asyncio.sleep(0.3)
            assert not [r for r in fake.requests if r.path == channel_posts]  # not due yet
            clock.now += 5 * 60
            (post,) = await reports(fake, 1)
            assert f"report ({sub_id}, every 5 min)" in post.payload["content"]
            assert "alpha" in post.payload["content"] and "2 run(s)" in post.payload["content"]
            return sub_id

    sub_id = run(first())

    async def after_restart() -> None:
        async with running(BotLogic(conf, clock), monkeypatch) as (fake, _):
            clock.now += 5 * 60
            (post,) = await reports(fake, 1)
            assert f"report ({sub_id}" in post.payload["content"]
            _, token = await fake.slash("unsubscribe", id=sub_id)
            assert "unsubscribed" in (await answer(fake, token)).payload["content"]
            clock.now += 60 * 60
            await asyncio.sleep(0.3)
            assert len([r for r in fake.requests if r.path == channel_posts]) == 1

    run(after_restart())


def test_subscribe_refuses_commands_that_are_not_read_only(
        sweeps: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    async def scenario() -> None:
        async with running(BotLogic(conf_for(sweeps, state_file="x.json")),
                           monkeypatch) as (fake, _):
            _, token = await fake.slash("subscribe", every=5.0, what="launch +sweep=grid")
            text = (await answer(fake, token)).payload["content"]
            assert "'launch' cannot be subscribed to" in text

    run(scenario())


# ---------------------------------------------------------------------- Discord's rules

@pytest.mark.parametrize("via", [True, False])
def test_a_429_during_a_reply_is_waited_out(sweeps: Project, monkeypatch: pytest.MonkeyPatch,
                                            via: bool) -> None:
    """With Via discord.py retries by itself; without, the bot waits retry_after and resends."""
    async def scenario() -> None:
        async with running(BotLogic(conf_for(sweeps)), monkeypatch) as (fake, _):
            fake.rate_limit_via = via
            fake.rate_limit_next[f"/webhooks/{APP_ID}/"] = 1
            _, token = await fake.slash("sweeps")
            started = time.monotonic()
            posts = await fake.wait_for(lambda r: r.path == f"/webhooks/{APP_ID}/{token}"
                                        and len([x for x in fake.requests
                                                 if x.path == r.path]) == 2)
            assert time.monotonic() - started >= fake.retry_after * 0.9
            assert "alpha" in posts[-1].payload["content"]

    run(scenario())


def test_a_long_reply_is_attached_as_a_file(project: Project,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    project.run("+sweep=grid", "task.lr=range(0.01,1.2,0.01)", "seed=1", "task.steps=1",
                "runner.name=many", check=True, timeout=300)

    async def scenario() -> None:
        async with running(BotLogic(conf_for(project)), monkeypatch) as (fake, _):
            _, token = await fake.slash("runs", sweep="many")
            reply = await answer(fake, token)
            assert len(reply.payload["content"]) <= 2000
            assert "full reply attached as reply.txt" in reply.payload["content"]
            (attached,) = reply.files
            text = attached["data"].decode()
            assert text.count("COMPLETED") == 119 and len(text) > 6000

    run(scenario())


def test_wandb_source_needs_a_key_on_the_host(sweeps: Project,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WANDB_API_KEY", raising=False)

    async def scenario() -> None:
        async with running(BotLogic(conf_for(sweeps)), monkeypatch) as (fake, _):
            _, token = await fake.slash("runs", sweep="lab/mnist", source="wandb")
            text = (await answer(fake, token)).payload["content"]
            assert "no WandB key on this host ($WANDB_API_KEY is not set)" in text

    run(scenario())


# ---------------------------------------------------------------------- security end to end

CHAT_ATTACKS = {  # a subset of tests/test_chat_attacks.py, through discord.py and the fake
    "task=toy +sweep=grid seed=1,2 sweep.filter=logging.config:dictConfig":
        "importable predicates are not accepted",
    "+task.k='${oc.env:DISCORD_BOT_TOKEN}'": "interpolations (${...}) are not accepted",
    "'+sweep=grid' '+sweep.params={task.fn: \"os:system\"}'": "'task.fn' cannot be changed",
    "'runner={output_dir: /tmp}'": "'runner.output_dir' cannot be changed from chat",
    "task=toy runner.name=../../escape": "cannot name a directory",
    "task=toy 'seed=range(0,1000000000)'": "at most 500 are allowed here (bot.max_runs)",
    "+task@runner=toy": "package overrides",
    "launcher=slurm": "'launcher._target_' cannot be changed from chat",
}


def test_chat_attacks_through_discord_start_nothing(project: Project,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DISCORD_BOT_TOKEN", TOKEN)
    logic = BotLogic(conf_for(project))

    async def scenario() -> None:
        async with running(logic, monkeypatch) as (fake, _):
            for overrides, expected in CHAT_ATTACKS.items():
                _, token = await fake.slash("launch", overrides=overrides)
                text = (await answer(fake, token)).payload["content"]
                assert text.startswith("error:") and expected in text, (overrides, text)

    run(scenario())
    assert logic.launches.items == []
    assert not (project.root / "outputs").exists() or [
        p.name for p in (project.root / "outputs").iterdir()] == [".discord-bot"]
    assert not list(project.root.parent.glob("escape*"))


def test_read_only_commands_see_only_their_channels_and_outputs(
        sweeps: Project, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    elsewhere = Project(tmp_path / "elsewhere")  # a sweep outside bot.outputs
    elsewhere.run("runner.name=secret-sweep", check=True)
    outside = elsewhere.root / "outputs" / "secret-sweep"
    link = sweeps.root / "outputs" / "linked"
    link.symlink_to(outside)
    logic = BotLogic(conf_for(sweeps))

    async def scenario() -> None:
        async with running(logic, monkeypatch) as (fake, _):
            for options in ({"sweep": str(outside)}, {"sweep": "linked"},
                            {"sweep": "outputs/linked"}):
                _, token = await fake.slash("runs", **options)
                text = (await answer(fake, token)).payload["content"]
                assert text.startswith("error: no sweep"), text
            _, token = await fake.slash("summary", run=f"{outside}/x")
            assert "error: no sweep" in (await answer(fake, token)).payload["content"]
            _, token = await fake.slash("sweeps")
            assert "secret-sweep" not in (await answer(fake, token)).payload["content"]
            _, token = await fake.slash("sweeps", channel_id=OTHER_CHANNEL)
            data = await immediate(fake, token)
            assert data["content"] == ("refused: /sweeps is not answered in this channel "
                                       "(bot.read_channels)") and data["flags"] & 64
            _, token = await fake.slash("runs", dm=True, sweep="alpha")
            data = await immediate(fake, token)
            assert data["content"] == "refused: this bot does not answer direct messages"
            _, token = await fake.slash("launch", dm=True, overrides="seed=1")
            data = await immediate(fake, token)
            assert data["content"] == "refused: this bot does not answer direct messages"
            _, token = await fake.autocomplete("runs", focused="sweep", sweep="alp",
                                               channel_id=OTHER_CHANNEL)
            (cb,) = await fake.wait_for(lambda r: r.path.endswith(f"/{token}/callback"))
            assert cb.payload["data"]["choices"] == []
            _, token = await fake.slash("runs", user_id=OTHER_USER, sweep="lab/mnist",
                                        source="wandb")
            data = await immediate(fake, token)
            assert data["content"].startswith("refused: you are not allowed to use /runs "
                                              "source:wandb")

    try:
        run(scenario())
    finally:
        link.unlink()
    log = (logic.log_dir / "bot.log").read_text()
    assert "REFUSED /sweeps" in log and "direct messages" in log
    assert logic.launches.items == []


def test_no_exception_stops_the_bot(sweeps: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    logic = BotLogic(conf_for(sweeps))

    def exits(*args: Any, **kwargs: Any) -> Any:
        raise SystemExit(3)

    def interrupts(*args: Any, **kwargs: Any) -> Any:
        raise KeyboardInterrupt

    async def scenario() -> None:
        async with running(logic, monkeypatch) as (fake, _):
            monkeypatch.setattr(logic, "sweeps", exits)
            _, token = await fake.slash("sweeps")
            assert "internal error: SystemExit" in (await answer(fake, token)).payload["content"]
            monkeypatch.setattr(logic, "runs", interrupts)
            _, token = await fake.slash("runs", sweep="alpha")
            assert "internal error: KeyboardInterrupt" in (
                await answer(fake, token)).payload["content"]
            _, token = await fake.slash("summary", run=run_ids(sweeps, "alpha")[0])
            assert "COMPLETED" in (await answer(fake, token)).payload["content"]

    run(scenario())


def test_nothing_the_bot_sends_can_ping(project: Project, monkeypatch: pytest.MonkeyPatch
                                        ) -> None:
    """Chat-set names and values, and errors that echo a stranger's input, are shown without
    a mention, and every message says it mentions nobody (checked by ``running`` for every
    end-to-end test)."""
    logic = BotLogic(conf_for(project))
    role = f"<@&{ROLE}>"

    async def scenario() -> list[str]:
        texts = []
        async with running(logic, monkeypatch) as (fake, _):
            _, token = await fake.slash(
                "launch", overrides=f"task=toy runner.name=@everyone '+task.note=\"{role}\"'")
            texts.append((await answer(fake, token)).payload["content"])
            await asyncio.to_thread(reap, logic)
            for name, options in [("runs", {"sweep": "@everyone"}),
                                  ("summary", {"run": "@everyone/", "keys": "task"}),
                                  ("runs", {"sweep": f"@everyone {role} @here"})]:
                _, token = await fake.slash(name, user_id=OTHER_USER, **options)
                texts.append((await answer(fake, token)).payload["content"])
        return texts

    texts = run(scenario())
    assert "started **@\u200beveryone**" in texts[0], texts[0]
    assert texts[1].startswith("**@\u200beveryone**"), texts[1]
    assert f"<@\u200b&{ROLE}>" in texts[2], texts[2]
    assert "@\u200beveryone" in texts[3] and "@\u200bhere" in texts[3], texts[3]
