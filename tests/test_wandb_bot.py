"""The bot over WandB projects, end to end: a real discord.py client against the fake Discord,
the real ``wandb`` package (``wandb.Api`` and its wandb-core service) against the local fake of
WandB's server (tests/fakes/wandb_graphql.py)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import Project, png_size
from discord_harness import (
    CHANNEL,
    OTHER_USER,
    ROLE,
    FakeClock,
    answer,
    conf_for,
    immediate,
    run,
    running,
)
from fakes.discord_api import FakeDiscordAPI, Request
from fakes.wandb_graphql import ENTITY, FakeRun, FakeWandb
from runner.errors import StateError
from runner.integrations.discord_bot.logic import BotLogic, Caller
from runner.integrations.discord_bot.wandb_source import teardown_wandb

KEY = "k" * 40
POSTS = f"/channels/{CHANNEL}/messages"


def stamp(minute: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(1_790_000_000 + 60 * minute))


def curve_run(name: str, lr: float, seed: int, state: str = "finished", steps: int = 1400,
              project: str = "mnist") -> FakeRun:
    """loss logged every step, val/acc every 7 steps (validation)."""
    history: list[dict[str, Any]] = []
    for step in range(steps):
        row: dict[str, Any] = {"_step": step, "loss": 1.0 / (1 + lr * step + seed)}
        if step % 7 == 0:
            row["val/acc"] = 1 - row["loss"]
        history.append(row)
    last = history[-1]
    val = [r["val/acc"] for r in history if "val/acc" in r][-1]
    return FakeRun(ENTITY, project, f"id{name}", name, state, {"lr": lr, "seed": seed,
                                                                "opt": {"name": "adam"}},
                   {"loss": last["loss"], "val/acc": val, "_runtime": 754.0,
                    "_step": steps - 1}, history, created_at=stamp(0), heartbeat_at=stamp(1))


@pytest.fixture()
def wandb_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[FakeWandb]:
    runs = [curve_run("a", 0.1, 1), curve_run("b", 0.1, 2), curve_run("c", 0.2, 1),
            curve_run("d", 0.3, 1, state="crashed", steps=30)]
    runs += [FakeRun(ENTITY, "big", f"r{i:03d}", f"big-{i}", "finished" if i % 10 else "failed",
                     {"lr": i / 1000, "seed": i % 3}, {"val/acc": (i * 37 % 100) / 100},
                     created_at=stamp(i), heartbeat_at=stamp(i + 1)) for i in range(100)]
    for var, sub in (("WANDB_DIR", "w"), ("WANDB_CONFIG_DIR", "c"), ("WANDB_CACHE_DIR", "cc"),
                     ("WANDB_DATA_DIR", "d")):
        monkeypatch.setenv(var, str(tmp_path / sub))
    monkeypatch.setenv("WANDB_API_KEY", KEY)
    monkeypatch.setenv("WANDB_SERVICE", "")  # wandb.Api() sets it: restored (unset) afterwards
    monkeypatch.delenv("WANDB_SERVICE")

    with FakeWandb(runs) as fake:
        monkeypatch.setenv("WANDB_BASE_URL", fake.url)
        try:
            yield fake
        finally:
            teardown_wandb()  # the service wandb.Api() started in this process (bounded)


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> Project:
    project = Project(tmp_path_factory.mktemp("wbot") / "proj")
    project.run("+sweep=grid", "task.lr=0.1,0.2", "task.steps=5", "runner.name=alpha",
                check=True)
    return project


async def full_answer(fake: FakeDiscordAPI, token: str) -> str:
    """A command's whole answer: every follow-up message, and any text attached."""
    await answer(fake, token)
    await asyncio.sleep(0.3)
    parts = []
    for r in fake.requests:
        if r.path.endswith(f"/{token}"):
            parts.append(r.payload.get("content") or "")
            parts += [f["data"].decode() for f in r.files if f["filename"].endswith(".txt")]
    return "\n".join(parts)


async def posts(fake: FakeDiscordAPI, count: int, settle: float = 0.4) -> list[Request]:
    """The channel's posts (those Discord took) once there are ``count`` (and no more after
    ``settle`` s)."""
    def taken() -> list[Request]:
        return [r for r in fake.requests if r.path == POSTS and not r.limited]

    await fake.wait_for(lambda r: len(taken()) >= count)
    await asyncio.sleep(settle)
    return taken()


# ---------------------------------------------------------------------- read-only commands

def test_runs_lists_a_project_with_filters_order_state_in_one_query(
        local: Project, wandb_env: FakeWandb, monkeypatch: pytest.MonkeyPatch) -> None:
    async def scenario() -> None:
        async with running(BotLogic(conf_for(local)), monkeypatch) as (fake, _):
            _, token = await fake.slash("runs", sweep="lab/big", source="wandb", top=100,
                                        sort="val/acc")
            text = await full_answer(fake, token)
            assert "**WandB lab/big**: 100 run(s), best first by val/acc (max)" in text
            lines = [ln for ln in text.splitlines() if ln.startswith("big-")]
            assert len(lines) == 100
            values = [float(ln.split("val/acc=")[1]) for ln in lines]
            assert values == sorted(values, reverse=True)
            _, token = await fake.slash(
                "runs", sweep="lab/big", source="wandb", state="CRASHED",
                filters='{"config.lr.value": {"$gte": 0.05}}')
            text = (await answer(fake, token)).payload["content"]
            names = [ln.split()[0] for ln in text.splitlines() if ln.startswith("big-")]
            assert sorted(names) == sorted(f"big-{i}" for i in range(50, 100, 10)), text
            assert "failed" in text and "finished" not in text
            _, token = await fake.slash("runs", sweep="lab/big", source="wandb",
                                        filters='{"state": ')
            text = (await answer(fake, token)).payload["content"]
            assert text.startswith("error: filters: is not JSON"), text
            _, token = await fake.slash("runs", sweep="lab/big", source="wandb",
                                        state="PRUNED")
            text = (await answer(fake, token)).payload["content"]
            assert "state:PRUNED is not a WandB run state" in text
            assert all(KEY not in json.dumps(r.payload) for r in fake.requests)

    run(scenario())
    first = wandb_env.operations("Runs")[0]["query"]["variables"]
    assert first["perPage"] == 100 and first["order"] == "-summary_metrics.val/acc"
    # 100 runs with their summaries and configs: one query, not one per run
    assert len(wandb_env.operations("Runs")) == 2 and not wandb_env.operations("Run")
    second = json.loads(wandb_env.operations("Runs")[1]["query"]["variables"]["filters"])
    assert second == {"$and": [{"state": {"$in": ["crashed", "failed"]}},
                               {"config.lr.value": {"$gte": 0.05}}]}


def test_summary_of_a_wandb_run_by_path_or_name_with_key_prefixes(
        local: Project, wandb_env: FakeWandb, monkeypatch: pytest.MonkeyPatch) -> None:
    async def scenario() -> None:
        async with running(BotLogic(conf_for(local, wandb_project="lab/mnist")),
                           monkeypatch) as (fake, _):
            _, token = await fake.slash("summary", run="lab/mnist/ida", source="wandb")
            text = (await answer(fake, token)).payload["content"]
            assert text.startswith("**WandB lab/mnist/ida** (a): finished, 12m34s"), text
            assert "last step 1399" in text
            assert "val/acc" in text and "loss" in text and "opt/name  adam" in text
            assert "_runtime" not in text
            _, token = await fake.slash("summary", run="c", keys="val,lr", source="wandb")
            text = (await answer(fake, token)).payload["content"]
            assert "**WandB lab/mnist/idc** (c)" in text
            assert "val/acc  0.9964" in text and "loss" not in text and "lr   0.2" in text
            assert "seed" not in text
            _, token = await fake.slash("summary", run="nosuch", source="wandb")
            text = (await answer(fake, token)).payload["content"]
            assert text == "error: no run 'nosuch' in WandB project lab/mnist"

    run(scenario())


def test_plot_reads_every_point_of_keys_logged_at_different_intervals(
        local: Project, wandb_env: FakeWandb, monkeypatch: pytest.MonkeyPatch) -> None:
    logic = BotLogic(conf_for(local))

    async def scenario() -> None:
        async with running(logic, monkeypatch) as (fake, _):
            _, token = await fake.slash("plot", sweep="lab/mnist", runs="a,c",
                                        keys="loss,val/acc", source="wandb")
            reply = await answer(fake, token)
            assert "**WandB lab/mnist**: loss, val/acc over steps, 2 run(s)" in \
                reply.payload["content"]
            (png,) = reply.files
            assert png["filename"].endswith(".png")
            width, height = png_size(png["data"])
            assert width == 800 and height > 600  # two panels
            _, token = await fake.slash("plot", sweep="lab/mnist", runs="a,b,c",
                                        keys="val/acc", spread=True, source="wandb")
            reply = await answer(fake, token)
            assert "mean and 95% band over seeds" in reply.payload["content"]

    run(scenario())
    # each key scanned on its own, so the rows of one never hide the other's
    specs = [json.loads(q["query"]["variables"]["spec"])
             for q in wandb_env.operations("SampledHistoryPage")]
    assert {tuple(k for k in s["keys"] if k != "_step") for s in specs} == {("loss",),
                                                                             ("val/acc",)}
    source = logic.wandb.source
    a = source.run("lab/mnist/ida")
    steps, values = source.history(a, "loss")
    assert len(steps) == 1400 and steps[:3] == [0.0, 1.0, 2.0]  # every step
    steps, values = source.history(a, "val/acc")
    assert len(steps) == 200 and steps[:3] == [0.0, 7.0, 14.0]  # every 7th: none lost
    import wandb

    sampled = wandb.Api().run("lab/mnist/ida").history(keys=["loss"], pandas=False)
    assert len(sampled) == 500  # what WandB's sampled history would have drawn instead
    groups = logic.wandb._groups([a, source.run("lab/mnist/idb"), source.run("lab/mnist/idc")],
                                 "val/acc", spread=True)
    assert [(g.label, len(g.runs)) for g in groups] == [("lr=0.1", 2), ("lr=0.2", 1)]


def test_autocomplete_of_wandb_runs_and_keys(local: Project, wandb_env: FakeWandb,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    async def scenario() -> None:
        async with running(BotLogic(conf_for(local)), monkeypatch) as (fake, _):
            _, token = await fake.autocomplete("summary", focused="run", run="",
                                               sweep="lab/mnist", source="wandb")
            (cb,) = await fake.wait_for(lambda r: r.path.endswith(f"/{token}/callback"))
            assert sorted(c["value"] for c in cb.payload["data"]["choices"]) == [
                "ida", "idb", "idc", "idd"]
            _, token = await fake.autocomplete("plot", focused="keys", sweep="lab/mnist",
                                               keys="loss,va", source="wandb")
            (cb,) = await fake.wait_for(lambda r: r.path.endswith(f"/{token}/callback"))
            assert [c["value"] for c in cb.payload["data"]["choices"]] == ["loss,val/acc"]
            # WandB is read with the host's key: nothing suggested to who may not read it
            _, token = await fake.autocomplete("summary", focused="run", run="",
                                               sweep="lab/mnist", source="wandb",
                                               user_id=OTHER_USER)
            (cb,) = await fake.wait_for(lambda r: r.path.endswith(f"/{token}/callback"))
            assert cb.payload["data"]["choices"] == []

    run(scenario())
    assert len(wandb_env.operations("Runs")) == 1  # the second came from the cache


def test_a_slow_wandb_times_out_and_never_blocks_the_bot(
        local: Project, wandb_env: FakeWandb, monkeypatch: pytest.MonkeyPatch) -> None:
    async def scenario() -> None:
        async with running(BotLogic(conf_for(local, wandb_timeout_s=1.0)),
                           monkeypatch) as (fake, _):
            wandb_env.delay_s = 3.0
            started = time.monotonic()
            _, slow = await fake.slash("runs", sweep="lab/mnist", source="wandb")
            _, quick = await fake.slash("sweeps")
            assert "alpha" in (await answer(fake, quick)).payload["content"]
            assert time.monotonic() - started < 1.5  # answered while WandB was still silent
            text = (await answer(fake, slow)).payload["content"]
            assert text == ("error: WandB did not answer for the runs of lab/mnist within 1 s; "
                            "try again later")
            wandb_env.delay_s = 0.0
            wandb_env.failing = True
            _, token = await fake.slash("summary", run="lab/mnist/ida", source="wandb")
            text = (await answer(fake, token)).payload["content"]
            assert text.startswith("error: WandB did not answer for run ida of lab/mnist within "
                                   "1 s") or text.startswith("error: WandB could not answer "
                                                             "for run ida"), text
            assert KEY not in text

    run(scenario())


def test_subscriptions_mix_local_and_wandb_commands(
        local: Project, wandb_env: FakeWandb, monkeypatch: pytest.MonkeyPatch) -> None:
    clock = FakeClock()

    async def scenario() -> None:
        async with running(BotLogic(conf_for(local, state_file="subs.json"), clock),
                           monkeypatch) as (fake, _):
            _, token = await fake.slash(
                "subscribe", every=5.0,
                what="runs sweep:alpha; runs source:wandb sweep:lab/big top:3 sort:val/acc; "
                     "plot source:wandb sweep:lab/mnist runs:a keys:val/acc")
            assert (await answer(fake, token)).payload["content"].startswith("subscribed")
            _, token = await fake.slash("subscribe", every=5.0,
                                        what="runs source:wandb sweep:lab/big colour:red")
            text = (await answer(fake, token)).payload["content"]
            assert "/runs has no option 'colour'" in text
            clock.now += 5 * 60
            (post,) = await posts(fake, 1)
            text = post.payload["content"]
            assert "**alpha**: 2 run(s)" in text
            assert "**WandB lab/big**: 3 run(s), best first by val/acc (max)" in text
            assert "big-" in text and "val/acc=0.99" in text
            assert [f["filename"] for f in post.files] == ["lab_mnist-val_acc.png"]

    run(scenario())


def test_reading_wandb_needs_a_steering_user_unless_public(
        local: Project, wandb_env: FakeWandb, monkeypatch: pytest.MonkeyPatch) -> None:
    async def scenario(public: bool) -> None:
        async with running(BotLogic(conf_for(local, wandb_public=public)),
                           monkeypatch) as (fake, _):
            for command, options in (("runs", {"sweep": "lab/mnist"}),
                                     ("summary", {"run": "lab/mnist/ida"}),
                                     ("plot", {"sweep": "lab/mnist", "keys": "loss"})):
                _, token = await fake.slash(command, user_id=OTHER_USER, source="wandb",
                                            **options)
                if public:
                    reply = await answer(fake, token)
                    assert not reply.payload["content"].startswith("refused"), reply.payload
                else:
                    data = await immediate(fake, token)
                    assert data["content"].startswith(f"refused: you are not allowed to use "
                                                      f"/{command} source:wandb"), data

    run(scenario(False))
    assert not wandb_env.queries  # refused before WandB was asked anything
    run(scenario(True))


# ---------------------------------------------------------------------- /watch

def live_run(fake: FakeWandb, name: str, state: str, minute: int, **summary: Any) -> FakeRun:
    """A run of lab/live, created or changed at ``minute`` (its heartbeat moves)."""
    run = fake.find(ENTITY, "live", f"id{name}")
    if run is None:
        run = FakeRun(ENTITY, "live", f"id{name}", name, created_at=stamp(minute),
                      history=[{"_step": s, "val/acc": s / 10} for s in range(0, 10, 3)])
        fake.runs.append(run)
    run.state, run.heartbeat_at = state, stamp(minute)
    run.summary.update(summary, _runtime=65.0)
    return run


def texts(found: list[Request]) -> list[str]:
    return [r.payload["content"] for r in found]


def test_watch_posts_each_change_once_across_a_restart_and_a_wandb_outage(
        local: Project, wandb_env: FakeWandb, monkeypatch: pytest.MonkeyPatch) -> None:
    clock = FakeClock()
    conf = conf_for(local, watch_file="watches.json", watch_s=60.0, wandb_timeout_s=2.0)
    live_run(wandb_env, "old", "finished", 1, **{"val/acc": 0.5})
    live_run(wandb_env, "x", "running", 2)

    async def first() -> None:
        async with running(BotLogic(conf, clock), monkeypatch) as (fake, _):
            _, token = await fake.slash("watch", project="lab/live", metric="val/acc")
            text = (await answer(fake, token)).payload["content"]
            assert "watching WandB **lab/live**" in text and "2 run(s) there now, 1 running" \
                in text
            await asyncio.sleep(0.3)
            assert not [r for r in fake.requests if r.path == POSTS]  # what was there: quiet
            live_run(wandb_env, "x", "finished", 3, **{"val/acc": 0.91, "loss": 0.2})
            live_run(wandb_env, "y", "running", 3)
            clock.now += 60
            found = await posts(fake, 2)
            assert len(found) == 2, texts(found)
            done, started = found
            assert done.payload["content"].startswith("✅ **x** (lab/live/idx) finished after "
                                                      "1m05s: val/acc=0.91, loss=0.2")
            assert [f["filename"] for f in done.files] == ["lab_live-val_acc.png"]
            assert started.payload["content"] == "▶ **y** (lab/live/idy) started"
            clock.now += 60  # nothing changed: nothing posted
            await asyncio.sleep(0.4)
            assert len([r for r in fake.requests if r.path == POSTS]) == 2

    run(first())
    # while the bot is down: y crashes, z starts and finishes
    live_run(wandb_env, "y", "crashed", 5, **{"val/acc": 0.1})
    live_run(wandb_env, "z", "finished", 6, **{"val/acc": 0.95})

    async def after_restart() -> None:
        async with running(BotLogic(conf, clock), monkeypatch) as (fake, _):
            fake.rate_limit_via = False  # Discord's rate limit on the first post: waited out
            fake.rate_limit_next[POSTS] = 1
            clock.now += 60
            found = await posts(fake, 2)
            assert [r.limited for r in fake.requests if r.path == POSTS] == [True, False, False]
            assert texts(found) == [
                "❌ **y** (lab/live/idy) crashed after 1m05s: val/acc=0.1",
                "✅ **z** (lab/live/idz) finished after 1m05s: val/acc=0.95"], texts(found)
            # WandB goes down: said once, however many polls fail
            wandb_env.failing = True
            for _ in range(4):
                clock.now += 60 * 8
                await asyncio.sleep(0.3)
            _, token = await fake.slash("sweeps")  # the bot still answers
            assert "alpha" in (await answer(fake, token)).payload["content"]
            found = await posts(fake, 3)
            down = found[2].payload["content"]
            assert down.startswith("⚠ watching WandB lab/live: WandB ") and "back-off" in down
            assert len(found) == 3
            live_run(wandb_env, "w", "running", 30)
            live_run(wandb_env, "x", "running", 31)  # resumed
            wandb_env.failing = False
            clock.now += 60 * 11  # past the longest back-off
            found = await posts(fake, 6)
            assert texts(found)[3:] == [
                "WandB lab/live answers again: 2 change(s) since it stopped.",
                "▶ **w** (lab/live/idw) started", "▶ **x** (lab/live/idx) resumed"]
            # many changes at once: one digest
            for i in range(7):
                live_run(wandb_env, f"s{i}", "finished", 40 + i, **{"val/acc": i / 10})
            clock.now += 60
            found = await posts(fake, 7)
            digest = found[6]
            assert digest.payload["content"].startswith("**WandB lab/live**: 7 runs changed "
                                                        "(7 finished)")
            assert [f["filename"] for f in digest.files] == ["lab_live-val_acc.png"]
            assert len(found) == 7
            _, token = await fake.slash("unwatch", project="lab/live")
            assert "stopped watching **lab/live**" in (await answer(fake, token)).payload[
                "content"]

    run(after_restart())
    assert json.loads((local.root / "watches.json").read_text()) == {"watches": []}


def test_changes_found_but_not_yet_posted_are_posted_once_after_a_crash(
        local: Project, wandb_env: FakeWandb, monkeypatch: pytest.MonkeyPatch) -> None:
    """A bot killed after a poll wrote its outbox but before posting: the next bot posts each
    of those changes, once; the poll itself is not repeated."""
    clock = FakeClock()
    conf = conf_for(local, watch_file="w2.json", watch_s=60.0)
    live_run(wandb_env, "p", "running", 1)
    logic = BotLogic(conf, clock)
    caller = Caller(conf.allowed_users[0], CHANNEL)
    assert "watching" in logic.watch(caller, "lab/live").text
    live_run(wandb_env, "p", "failed", 2)
    live_run(wandb_env, "q", "running", 2)
    clock.now += 60
    (watch,) = logic.watcher.store.items
    logic.watcher.poll(watch)  # ... and the process dies here: nothing was posted
    saved = json.loads((local.root / "w2.json").read_text())["watches"][0]
    assert [p["state"] for p in saved["outbox"]] == ["failed", "running"]
    polls = len(wandb_env.operations("Runs"))

    async def restarted() -> None:
        async with running(BotLogic(conf, clock), monkeypatch) as (fake, _):
            found = await posts(fake, 2, settle=0.6)
            assert texts(found) == ["❌ **p** (lab/live/idp) failed after 1m05s",
                                    "▶ **q** (lab/live/idq) started"]

    run(restarted())
    assert len(wandb_env.operations("Runs")) == polls  # not due again: nothing asked twice
    assert json.loads((local.root / "w2.json").read_text())["watches"][0]["outbox"] == []
    run(_quiet(conf, clock, monkeypatch))


async def _quiet(conf: Any, clock: FakeClock, monkeypatch: pytest.MonkeyPatch) -> None:
    async with running(BotLogic(conf, clock), monkeypatch) as (fake, _):
        await asyncio.sleep(0.5)
        assert not [r for r in fake.requests if r.path == POSTS]  # posted before: not again


def test_watch_needs_a_steering_user_and_a_reachable_project(
        local: Project, wandb_env: FakeWandb, monkeypatch: pytest.MonkeyPatch) -> None:
    async def scenario() -> None:
        async with running(BotLogic(conf_for(local, watch_file="w3.json", wandb_timeout_s=1.0)),
                           monkeypatch) as (fake, _):
            _, token = await fake.slash("watch", user_id=OTHER_USER, project="lab/live")
            assert (await immediate(fake, token))["content"].startswith(
                "refused: you are not allowed to use /watch")
            _, token = await fake.slash("watch", project="not a project")
            text = (await answer(fake, token)).payload["content"]
            assert text == "error: 'not a project' is not a WandB project; write it as " \
                           "entity/project"
            wandb_env.failing = True
            _, token = await fake.slash("watch", project="lab/live")
            text = (await answer(fake, token)).payload["content"]
            assert text.startswith("error: WandB "), text

    run(scenario())
    assert not (local.root / "w3.json").exists()  # nothing saved for a refused watch


def test_a_launch_goes_to_the_admins_launch_function_through_discord(
        project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    """A team whose work starts elsewhere (a cluster queue): /launch, checked as always, hands
    the overrides to bot.launch_fn; nothing runs locally."""
    calls = project.root / "calls.jsonl"
    (project.root / "cluster_queue.py").write_text(  # (a name no other test imports)
        "import json\n\ndef submit(overrides, **info):\n"
        f"    with open({str(calls)!r}, 'a') as f:\n"
        "        f.write(json.dumps({'overrides': overrides, **info}) + '\\n')\n"
        "    return 'queued as job 42'\n")
    logic = BotLogic(conf_for(project, launch_fn="cluster_queue:submit"))

    async def scenario() -> None:
        async with running(logic, monkeypatch) as (fake, _):
            _, token = await fake.slash("launch", overrides="task=toy +sweep=grid "
                                                            "task.lr=0.1,0.2 seed=1")
            text = (await answer(fake, token)).payload["content"]
            assert text.startswith("handed **toy-grid-") and text.endswith(
                "to `cluster_queue:submit`: queued as job 42")
            _, token = await fake.slash("launch", overrides="task=toy task.fn=os:system")
            text = (await answer(fake, token)).payload["content"]
            assert "'task.fn' cannot be set from chat" in text

    run(scenario())
    (call,) = [json.loads(line) for line in calls.read_text().splitlines()]
    assert call["overrides"] == ["task=toy", "+sweep=grid", "task.lr=0.1,0.2", "seed=1"]
    assert call["runs"] == 2 and logic.launches.items == []
    assert [p.name for p in (project.root / "outputs").iterdir()] == [".discord-bot"]


def test_only_the_configured_wandb_projects_are_read(local: Project,
                                                     wandb_env: FakeWandb) -> None:
    logic = BotLogic(conf_for(local, wandb_projects=["lab/b*"], watch_file="w4.json"))
    assert "**WandB lab/big**" in logic.runs("lab/big", source="wandb", top=2).text
    refused = "WandB project lab/mnist is not one this bot reads (bot.wandb_projects)"
    for attempt in (lambda: logic.runs("lab/mnist", source="wandb"),
                    lambda: logic.summary("lab/mnist/ida", source="wandb"),
                    lambda: logic.summary("ida", sweep="lab/mnist", source="wandb"),
                    lambda: logic.plot("lab/big", runs="lab/mnist/ida", source="wandb"),
                    lambda: logic.watch(Caller(logic.conf.allowed_users[0], CHANNEL),
                                        "lab/mnist")):
        with pytest.raises(StateError, match=refused.replace("(", r"\(").replace(")", r"\)")):
            attempt()
    assert not wandb_env.operations("Run") and len(wandb_env.operations("Runs")) == 1


# ---------------------------------------------------------------------- bounded WandB work


def test_wandb_work_past_its_deadline_frees_its_worker_and_is_capped(
        local: Project, wandb_env: FakeWandb, tmp_path: Path) -> None:
    """A long history scan that misses its deadline stops at its next page; a user's and a
    channel's concurrent WandB work is capped; watches poll in a lane of their own, so slow
    commands never make a watch declare WandB down."""
    import threading

    from runner.integrations.discord_bot.wandb_source import CALLER

    wandb_env.runs.append(curve_run("long", 0.1, 0, steps=20_000))
    logic = BotLogic(conf_for(local, wandb_timeout_s=1.0,
                              watch_file=str(tmp_path / "watches.json")))
    source = logic.wandb.source
    long_run = source.run("lab/mnist/idlong")
    wandb_env.delay_s = 0.3  # every page of the scan: 20 pages, 6 s in all

    def as_user(user: int, channel: int, fn: Any) -> Any:
        token = CALLER.set((user, channel))
        try:
            return fn()
        finally:
            CALLER.reset(token)

    started = time.monotonic()
    with pytest.raises(StateError, match="did not answer .* within 1 s"):
        as_user(1, 10, lambda: source.history(long_run, "loss"))
    assert time.monotonic() - started < 1.5
    deadline = time.monotonic() + 3
    while source.running and time.monotonic() < deadline:
        time.sleep(0.05)
    assert source.running == 0  # the scan stopped at its next page, its worker is free

    # four slow scans (two users, two each) fill the commands lane; a third of one user's
    # and a fifth in one channel are refused at once
    results: list[str] = []
    barrier = threading.Barrier(4)

    def scan(user: int, key: str) -> None:
        barrier.wait()
        try:
            as_user(user, 10, lambda: source.history(long_run, key))
        except StateError as exc:
            results.append(str(exc))

    threads = [threading.Thread(target=scan, args=(u, k))
               for u, k in ((1, "loss"), (1, "val/acc"), (2, "loss"), (2, "val/acc"))]
    for t in threads:
        t.start()
    time.sleep(0.3)
    with pytest.raises(StateError, match="bot.wandb_per_user"):
        as_user(1, 11, lambda: source.history(long_run, "x"))
    with pytest.raises(StateError, match="bot.wandb_per_channel"):
        as_user(3, 10, lambda: source.history(long_run, "x"))
    watch, _, _ = logic.watcher.add(CHANNEL, "lab/mnist", None, 1, 5)
    watch.next_poll = 0
    logic.watcher.poll(watch)  # the commands lane is full: the watch's own lane answers
    assert not watch.down and watch.failures == 0
    for t in threads:
        t.join()
    assert len(results) == 4 and all("did not answer" in r for r in results)


def test_rights_are_checked_each_time_a_subscription_or_a_watch_runs(
        local: Project, wandb_env: FakeWandb, tmp_path: Path) -> None:
    """A creator taken out of bot.allowed_users, a project out of bot.wandb_projects (the
    bot restarted with new settings): their subscriptions and watches pause, say so once,
    read nothing with the host's key, and go on once the rights are back."""
    from discord_harness import ALLOWED_USER

    clock = FakeClock()
    files = {"watch_file": str(tmp_path / "w.json"), "state_file": str(tmp_path / "s.json")}
    conf = conf_for(local, wandb_project="lab/mnist", **files)
    logic = BotLogic(conf, clock=clock)
    caller = Caller(ALLOWED_USER, CHANNEL)
    logic.subscribe(caller, 1, "runs sweep:lab/mnist source:wandb")
    logic.watch(caller, "lab/mnist")

    def reports() -> list[str]:
        clock.now += 61
        return [reply.text for _, reply in logic.due_reports()]

    assert "lab/mnist" in reports()[0]
    conf.allowed_users.remove(ALLOWED_USER)
    queries = len(wandb_env.operations("Runs"))
    (paused,) = reports()
    assert "paused" in paused and "bot.allowed_users" in paused
    assert reports() == [] and len(wandb_env.operations("Runs")) == queries
    conf.allowed_users.append(ALLOWED_USER)
    assert "lab/mnist" in reports()[0]

    # restarted with lab/mnist no longer readable: the watch pauses, once
    later = BotLogic(conf_for(local, wandb_projects=["other/*"], **files), clock=clock)
    (watch,) = later.watcher.store.items
    queries = len(wandb_env.operations("Runs"))
    for _ in range(2):
        clock.now += 120
        later.watcher.poll(watch)
    assert [p["kind"] for p in watch.outbox] == ["paused"]
    assert "bot.wandb_projects" in later.watcher.render(watch, watch.outbox[0]).text
    assert len(wandb_env.operations("Runs")) == queries
    again = BotLogic(conf_for(local, **files), clock=clock)
    (watch,) = again.watcher.store.items
    clock.now += 120
    again.watcher.poll(watch)
    assert [p["kind"] for p in watch.outbox] == ["paused", "resumed"] and not watch.paused


def test_a_watched_run_named_to_ping_pings_nobody(
        local: Project, wandb_env: FakeWandb, monkeypatch: pytest.MonkeyPatch,
        tmp_path: Path) -> None:
    """Anyone who logs to a watched project names runs and tags; the post shows the name,
    mentions broken, and says it mentions nobody (``running`` checks every message)."""
    clock = FakeClock()
    conf = conf_for(local, watch_file=str(tmp_path / "w.json"), watch_s=60.0)

    async def scenario() -> str:
        async with running(BotLogic(conf, clock), monkeypatch) as (fake, _):
            _, token = await fake.slash("watch", project="lab/live")
            await answer(fake, token)
            run = live_run(wandb_env, "nitro", "running", 50)
            run.name = f"@everyone free nitro <@&{ROLE}> @here"
            clock.now += 60
            (post,) = await posts(fake, 1)
            return str(post.payload["content"])

    text = run(scenario())
    assert "@\u200beveryone free nitro" in text and f"<@\u200b&{ROLE}>" in text, text
    assert "@\u200bhere" in text


def test_the_bots_wandb_teardown_is_bounded(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """WandB's teardown waiting on a service that never hears it (a scan given up mid-page)
    does not keep the bot from exiting: after the bound the service is killed."""
    import shutil
    import subprocess
    import threading

    import wandb

    core = tmp_path / "wandb-core"
    shutil.copy(shutil.which("sleep") or "/bin/sleep", core)
    service = subprocess.Popen([str(core), "300"])
    never = threading.Event()

    def hung_teardown(*args: Any, **kwargs: Any) -> None:  # as WandB does once its service
        never.wait(300)                                     # is killed: sys.exit(-9)
        raise SystemExit(-9)

    monkeypatch.setattr(wandb, "teardown", hung_teardown)
    started = time.monotonic()
    try:
        teardown_wandb(seconds=1.0)
        assert time.monotonic() - started < 5
        assert service.wait(timeout=5) == -9  # killed, not left to run
    finally:
        service.kill()
        never.set()
