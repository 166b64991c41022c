"""Discord webhook notifier against a local fake of Discord's webhook endpoint."""

from __future__ import annotations

import json
import logging
import time

import pytest

from conftest import colours_in, png_size
from fakes.discord_server import FakeDiscord
from runner.integrations.discord_notify import (
    DESCRIPTION_LIMIT,
    EMBED_TOTAL_LIMIT,
    FIELD_LIMIT,
    DiscordNotifier,
    DiscordNotifierConf,
    build_message,
)
from runner.notifiers.base import SweepNotice, SweepStarted
from runner.results.plots import colours


def notifier(url: str, monkeypatch, **kw) -> DiscordNotifier:
    monkeypatch.setenv("DISCORD_WEBHOOK_URL", url)
    return DiscordNotifier(DiscordNotifierConf(**{"flush_timeout_s": 10.0, **kw}))


def started(name: str = "s") -> SweepStarted:
    return SweepStarted("/tmp/x", name, 4, 4, {"UNHATCHED": 4})


def test_messages_keep_within_discord_limits():
    msg = build_message("runner", "t" * 300, "d" * 5000, 0,
                        [("big", "v" * 2000), *((f"f{i}", "w" * 1000) for i in range(8))])
    embed = msg.payload["embeds"][0]
    assert len(embed["title"]) <= 256 and len(embed["description"]) <= DESCRIPTION_LIMIT
    assert all(len(f["value"]) <= FIELD_LIMIT for f in embed["fields"])
    size = len(embed["title"]) + len(embed["description"]) + sum(
        len(f["name"]) + len(f["value"]) for f in embed["fields"])
    assert size <= EMBED_TOTAL_LIMIT
    details = msg.files["details.txt"].decode()
    assert "d" * 5000 in details and "v" * 2000 in details  # nothing is lost: it is attached


def test_a_429_is_retried_after_retry_after(monkeypatch):
    with FakeDiscord(script=[(429, 0.3)]) as fake:
        n = notifier(fake.webhook_url, monkeypatch)
        n.notify(started())
        n.close()
    assert [r.answered for r in fake.requests] == [429, 200]
    assert fake.requests[1].time - fake.requests[0].time >= 0.3
    assert n.delivered == 1 and n.failed == 0
    assert fake.requests[1].payload["embeds"][0]["title"] == "Sweep s started"


def test_5xx_backs_off_and_4xx_gives_up(monkeypatch):
    with FakeDiscord(script=[(500, 0), (502, 0)]) as fake:
        n = notifier(fake.webhook_url, monkeypatch)
        n.notify(started())
        n.close()
    assert [r.answered for r in fake.requests] == [500, 502, 200] and n.delivered == 1
    with FakeDiscord(script=[(404, 0)]) as fake:
        n = notifier(fake.webhook_url, monkeypatch)
        n.notify(started())
        n.close()
    assert len(fake.requests) == 1 and n.failed == 1


def test_unreachable_discord_never_blocks_and_never_shows_the_url(monkeypatch, caplog):
    with FakeDiscord() as fake:
        url = fake.webhook_url  # the server is closed when the block ends
    caplog.set_level(logging.WARNING, logger="runner.discord")
    n = notifier(url, monkeypatch, max_retries=1, flush_timeout_s=2.0, queue_size=2)
    t0 = time.monotonic()
    for _ in range(10):
        n.notify(started())
    assert time.monotonic() - t0 < 0.5  # notify() never waits for Discord
    n.close()
    assert n.dropped >= 7
    assert "unreachable" in caplog.text and fake.token not in caplog.text


def test_missing_secret_is_named_never_guessed(monkeypatch):
    monkeypatch.delenv("DISCORD_WEBHOOK_URL", raising=False)
    with pytest.raises(Exception, match=r"no secret found in \$DISCORD_WEBHOOK_URL"):
        DiscordNotifier(DiscordNotifierConf())


def test_a_real_sweep_reports_start_crash_and_finish(project, monkeypatch):
    with FakeDiscord() as fake:
        monkeypatch.setenv("DISCORD_WEBHOOK_URL", fake.webhook_url)
        proc = project.run("notifier=[console,discord]", "notifier.discord.metric=loss",
                           "notifier.discord.mode=min", "task.mode=ok,raise,sigkill",
                           "seed=0,1", "launcher.max_parallel=1")
    assert proc.returncode == 1, proc.stderr
    assert all(r.payload["allowed_mentions"] == {"parse": [], "replied_user": False}
               for r in fake.requests)  # no post can ping anyone
    titles = [r.payload["embeds"][0]["title"] for r in fake.requests]
    assert titles[0].startswith("Sweep toy-grid-") and titles[0].endswith(" started")
    assert sum(t.endswith(" crashed") for t in titles) == 4
    assert titles[-1].endswith(" finished") and len(titles) == 6
    crashes = [r.payload["embeds"][0] for r in fake.requests
               if "crashed" in r.payload["embeds"][0]["title"]]
    # a run killed by SIGKILL (as by the OOM killer) is reported like any other crash
    assert sum(c["description"].startswith("killed by SIGKILL") for c in crashes) == 2
    crash = next(c for c in crashes if "toy failure" in c["description"])
    assert "ValueError: toy failure lr=0.1" in crash["description"]
    assert "Traceback" in crash["description"] or "toy failure" in crash["description"]
    fields = {f["name"]: f["value"] for f in crash["fields"]}
    assert "task.mode=raise" in fields["values"] and fields["log"].endswith("stderr.log")
    finished = fake.requests[-1]
    embed = finished.payload["embeds"][0]
    counts = next(f["value"] for f in embed["fields"] if f["name"] == "counts")
    assert "completed: 2" in counts and "crashed: 4" in counts
    assert "best loss (min)" in embed["description"]
    (png_name,) = [n for n in finished.files if n.endswith(".png")]
    assert png_name == "top-2.png"  # the two completed runs, best first
    assert png_size(finished.files[png_name]) == (1600, 1000)  # 200 dpi
    assert embed["image"]["url"] == f"attachment://{png_name}"
    png = project.root / png_name
    png.write_bytes(finished.files[png_name])
    assert colours_in(png, colours(10)[:6]) == [0, 1]  # one curve per top run
    # the secret is nowhere: not in any file of the sweep, not in runner's output
    leaked = [p for p in (project.root / "outputs").rglob("*") if p.is_file()
              and fake.token.encode() in p.read_bytes()]
    assert leaked == [] and fake.token not in proc.stdout + proc.stderr


def test_slow_or_dead_discord_does_not_slow_the_sweep(project, monkeypatch):
    with FakeDiscord(delay_s=12.0) as fake:
        monkeypatch.setenv("DISCORD_WEBHOOK_URL", fake.webhook_url)
        t0 = time.monotonic()
        proc = project.run("notifier=[discord]", "notifier.discord.flush_timeout_s=0.5",
                           "seed=0,1")
        elapsed = time.monotonic() - t0
        assert proc.returncode == 0, proc.stderr
        assert elapsed < 10.0  # one delivery alone takes 12 s (the sweep: about 2 s)
        assert project.status()["counts"]["COMPLETED"] == 2  # the run store lost nothing
        assert "still pending at exit" in proc.stderr



def test_a_sweep_without_the_secret_stops_before_writing(project, monkeypatch):
    monkeypatch.delenv("DISCORD_WEBHOOK_URL", raising=False)
    proc = project.run("notifier=[discord]")
    assert proc.returncode == 2 and "DISCORD_WEBHOOK_URL" in proc.stderr
    assert not (project.root / "outputs").exists()



def test_periodic_progress_digest(project, monkeypatch):
    with FakeDiscord() as fake:
        monkeypatch.setenv("DISCORD_WEBHOOK_URL", fake.webhook_url)
        proc = project.run("notifier=[console,discord]", "notifier.discord.events=[]",
                           "notifier.discord.digest_every_min=0.01",
                           "notifier.console.digest_every_min=0.01", "seed=range(4)",
                           "task.sleep=1.0", "task.steps=10", "launcher.max_parallel=2")
    assert proc.returncode == 0, proc.stderr
    digests = [r.payload["embeds"][0] for r in fake.requests]
    assert len(digests) >= 2 and all(d["title"].endswith(": progress") for d in digests)
    assert "running" in digests[-1]["description"]
    assert "progress: " in proc.stderr and " waiting (" in proc.stderr


def test_secrets_quoted_by_a_crashing_task_are_redacted(monkeypatch):
    from runner.notifiers.base import RunEnded

    with FakeDiscord() as fake:
        n = notifier(fake.webhook_url, monkeypatch)
        leak = f"ValueError: could not post to {fake.webhook_url}"
        n.notify(RunEnded("/tmp/s", "s", "abc", "/tmp/s/runs/abc", {"x": 1}, "CRASHED", 1, 0.1,
                          {}, leak, f"Traceback ...\n{leak}\n" + "x" * 5000))
        n.close()
    (request,) = fake.requests
    text = str(request.payload) + "".join(v.decode() for v in request.files.values())
    assert fake.token not in text and "ValueError: could not post to ***" in text


def test_no_webhook_post_can_ping():
    """Names, values and errors from a run are shown without a mention; the payload says it
    mentions nobody."""
    msg = build_message("runner @here", "Sweep @everyone started", "<@&123456789012345678> hi",
                        0, [("values", "task.note=<@!123456789012345678>")])
    text = json.dumps(msg.payload, ensure_ascii=False)
    assert msg.payload["allowed_mentions"] == {"parse": [], "replied_user": False}
    for mention in ("@everyone", "@here", "<@&", "<@!"):
        assert mention not in text, mention
    assert "Sweep @\u200beveryone started" in text


def test_a_dead_webhook_adds_seconds_not_half_a_minute_to_a_sweep(project, monkeypatch):
    """With the default flush_timeout_s (30 s), a webhook that does not answer holds the end
    of the sweep a few seconds at most, and the end says what was not delivered."""
    with FakeDiscord() as fake:
        url = fake.webhook_url  # closed when the block ends: nothing answers
    monkeypatch.setenv("DISCORD_WEBHOOK_URL", url)
    t0 = time.monotonic()
    proc = project.run("notifier=[console,discord]", "seed=0,1")
    elapsed = time.monotonic() - t0
    assert proc.returncode == 0, proc.stderr
    assert elapsed < 12, elapsed
    assert "not delivered (the webhook:" in proc.stderr, proc.stderr
    assert fake.token not in proc.stderr


def test_a_notice_is_posted_by_default_and_pings_nobody(monkeypatch):
    """A sweep's notice (a node left out) goes to the channel with the default events."""
    with FakeDiscord() as discord:
        n = notifier(discord.webhook_url, monkeypatch)
        assert "sweep_notice" in n.events
        n.notify(SweepNotice("/tmp/x", "s", "node @everyone is left out of this sweep"))
        n.close()
        (post,) = discord.delivered()
    embed = post.payload["embeds"][0]
    assert embed["title"] == "Sweep s: notice"
    assert embed["description"] == "node @\u200beveryone is left out of this sweep"
