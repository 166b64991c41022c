"""discord.py transport: slash commands with autocompletion, bound to ``BotLogic``.

Every command acknowledges its interaction at once (``defer``: Discord allows 3 s), runs the
logic in a worker thread (plots and queries never block the event loop), and follows up within
Discord's limits (``messages.plan_messages``). A 429 that discord.py does not retry itself is
waited out and retried here. Subscribed reports are posted by a background task.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import traceback
from collections.abc import Awaitable, Callable
from typing import Any

import discord
from discord import app_commands

from runner.config.secrets import redact
from runner.errors import RunnerError
from runner.integrations.discord_bot.logic import BotLogic, Caller, Reply
from runner.integrations.discord_bot.messages import plan_messages
from runner.integrations.discord_bot.wandb_source import CALLER
from runner.integrations.mentions import no_pings

log = logging.getLogger("runner.discord_bot")
MAX_429_RETRIES = 4
MAX_POST_TRIES = 5  # a watch's post Discord refuses this often is dropped
STATES = ["COMPLETED", "RUNNING", "CRASHED", "INTERRUPTED", "PRUNED", "UNHATCHED", "CORRUPT",
          "failed", "killed"]  # the last two: WandB's (source:wandb)


def _retry_after(exc: discord.HTTPException) -> float:
    try:
        return float(json.loads(exc.text).get("retry_after"))
    except (TypeError, ValueError, AttributeError):
        pass
    headers = getattr(exc.response, "headers", {}) or {}
    try:
        return float(headers.get("Retry-After", 1.0))
    except (TypeError, ValueError):
        return 1.0


async def _send(send: Callable[..., Awaitable[Any]], text: str,
                files: list[tuple[str, bytes]], ephemeral: bool) -> None:
    """One message; a 429 (Discord's rate limit) is waited out and the message sent again."""
    for attempt in range(MAX_429_RETRIES + 1):
        kwargs: dict[str, Any] = {"content": no_pings(redact(text)) or None,
                                  "allowed_mentions": discord.AllowedMentions.none()}
        if files:
            kwargs["files"] = [discord.File(io.BytesIO(data), name) for name, data in files]
        if ephemeral:
            kwargs["ephemeral"] = True
        try:
            await send(**kwargs)
            return
        except discord.HTTPException as exc:
            if exc.status != 429 or attempt == MAX_429_RETRIES:
                raise
            wait = min(_retry_after(exc), 60.0)
            log.warning("Discord rate limit (429): retrying in %.2fs", wait)
            await asyncio.sleep(wait)


async def deliver(send: Callable[..., Awaitable[Any]], reply: Reply,
                  allow_ephemeral: bool = True) -> None:
    texts, files = plan_messages(redact(reply.text), reply.files)  # reply.txt too
    for i, text in enumerate(texts):
        last = i == len(texts) - 1
        await _send(send, text, files if last else [], reply.ephemeral and allow_ephemeral)


async def _refuse(interaction: discord.Interaction, text: str) -> None:
    """A refusal only the caller sees (it may echo what they typed: never a mention)."""
    await interaction.response.send_message(no_pings(redact(text)), ephemeral=True,
                                            allowed_mentions=discord.AllowedMentions.none())


def _caller(interaction: discord.Interaction) -> Caller:
    user = interaction.user
    roles = tuple(int(r) for r in getattr(user, "_roles", ()))  # ids, cached guild or not
    return Caller(user.id, interaction.channel_id or 0, roles, str(user),
                  in_guild=interaction.guild_id is not None)


class RunnerBot(discord.Client):
    def __init__(self, logic: BotLogic, *, guild_ready_timeout: float = 2.0) -> None:
        super().__init__(intents=discord.Intents.default(),
                         guild_ready_timeout=guild_ready_timeout,
                         allowed_mentions=discord.AllowedMentions.none())
        self.logic = logic
        self.tree = app_commands.CommandTree(self)
        self.errors: list[BaseException] = []  # what app commands raised (also logged)
        self._reports: asyncio.Task[None] | None = None
        self._watches: asyncio.Task[None] | None = None
        _register(self)

        @self.tree.error
        async def on_error(interaction: discord.Interaction,
                           error: app_commands.AppCommandError) -> None:
            self.errors.append(error)
            log.error("command failed: %s", redact("".join(traceback.format_exception(error))))

    async def setup_hook(self) -> None:
        guild_id = self.logic.conf.guild_id
        if guild_id:
            guild = discord.Object(id=guild_id)
            self.tree.copy_global_to(guild=guild)
            await self.tree.sync(guild=guild)
        else:
            await self.tree.sync()
        self._reports = asyncio.create_task(self._post_reports())
        self._watches = asyncio.create_task(self._post_watches())

    async def close(self) -> None:
        for task in (self._reports, self._watches):
            if task is not None:
                task.cancel()
        await super().close()

    async def _post_watches(self) -> None:
        """Each due watch polls WandB in a worker thread; its outbox is then posted, each post
        taken out once Discord has it. A post Discord keeps refusing is dropped after a few
        tries (logged); nothing a watch does can stop the bot."""
        await self.wait_until_ready()
        watcher = self.logic.watcher
        while not self.is_closed():
            try:
                for watch in watcher.due():
                    await asyncio.to_thread(watcher.poll, watch)
                    for post in list(watch.outbox):
                        reply = await asyncio.to_thread(watcher.render, watch, post)
                        channel = self.get_partial_messageable(watch.channel_id)
                        try:
                            await deliver(channel.send, reply, allow_ephemeral=False)
                        except discord.HTTPException as exc:
                            post["tries"] = post.get("tries", 0) + 1
                            log.error("watch %s: post failed (%s)", watch.id, redact(str(exc)))
                            if post["tries"] < MAX_POST_TRIES:
                                break  # the rest after it, in order, next time
                        await asyncio.to_thread(watcher.sent, watch, post["id"])
            except asyncio.CancelledError:
                raise
            except BaseException as exc:
                log.error("watch failed: %s", redact(repr(exc)))
                self.errors.append(exc)
            await asyncio.sleep(self.logic.conf.tick_s)

    async def _post_reports(self) -> None:
        await self.wait_until_ready()
        while not self.is_closed():
            try:
                for channel_id, reply in await asyncio.to_thread(self.logic.due_reports):
                    channel = self.get_partial_messageable(channel_id)
                    await deliver(channel.send, reply, allow_ephemeral=False)
            except asyncio.CancelledError:
                raise
            except BaseException as exc:  # a failing report (even SystemExit) stops nothing
                log.error("subscription report failed: %s", redact(repr(exc)))
                self.errors.append(exc)
            await asyncio.sleep(self.logic.conf.tick_s)

    async def answer(self, interaction: discord.Interaction,
                     work: Callable[[], Reply], ephemeral: bool = False) -> None:
        """Acknowledge now, work in a thread, follow up (errors as clear messages)."""
        await interaction.response.defer(thinking=True, ephemeral=ephemeral)
        caller = _caller(interaction)
        who = CALLER.set((caller.user_id, caller.channel_id))  # (copied into the thread)
        try:
            reply = await asyncio.to_thread(work)
        except asyncio.CancelledError:
            raise
        except RunnerError as exc:
            reply = Reply(f"error: {exc}")
        except BaseException as exc:  # SystemExit or KeyboardInterrupt too: the bot goes on
            log.error("command failed: %s", redact("".join(traceback.format_exception(exc))))
            reply = Reply(f"internal error: {type(exc).__name__}: {exc}")
        finally:
            CALLER.reset(who)
        await deliver(interaction.followup.send, reply)

    async def read(self, interaction: discord.Interaction, command: str,
                   work: Callable[[], Reply]) -> None:
        """A read-only command: answered in the allowed channels only, never in DMs."""
        refused = self.logic.read_refusal(_caller(interaction), command)
        if refused is not None:
            await _refuse(interaction, refused.text)
            return
        await self.answer(interaction, work)

    async def steer(self, interaction: discord.Interaction, command: str,
                    work: Callable[[Caller], Reply]) -> None:
        caller = _caller(interaction)
        refused = self.logic.refusal(caller, command)
        if refused is not None:  # answered at once, only to the caller
            await _refuse(interaction, refused.text)
            return
        await self.answer(interaction, lambda: work(caller))


def _register(bot: RunnerBot) -> None:
    logic, tree = bot.logic, bot.tree

    async def complete(interaction: discord.Interaction, fn: Callable[..., list[str]],
                       *args: str) -> list[str]:
        """Suggestions, or none: outside the read channels (silently), or when the lookup fails
        (whatever it raises: it never reaches the bot)."""
        if logic.read_refusal(_caller(interaction), "autocomplete", log=False) is not None:
            return []
        try:
            return await asyncio.to_thread(fn, *args)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            log.error("autocomplete failed: %s", redact(repr(exc)))
            return []

    def source_of(interaction: discord.Interaction) -> str:
        return str(getattr(interaction.namespace, "source", None) or "runner")

    def wandb_allowed(interaction: discord.Interaction) -> bool:
        """WandB is read with the host's key: suggestions only for those who may read it."""
        return (logic.conf.wandb_public
                or logic.refusal_reason(_caller(interaction)) is None)

    async def sweep_names(interaction: discord.Interaction,
                          current: str) -> list[app_commands.Choice[str]]:
        source = source_of(interaction)
        if source == "wandb" and not wandb_allowed(interaction):
            return []
        names = await complete(interaction, logic.complete_sweeps, current, source)
        return [app_commands.Choice(name=n[:100], value=n[:100]) for n in names]

    async def in_sweep(interaction: discord.Interaction, fn: Callable[..., list[str]],
                       current: str) -> list[app_commands.Choice[str]]:
        """Suggestions within the chosen sweep (or WandB project, default bot.wandb_project)."""
        sweep = getattr(interaction.namespace, "sweep", None) or ""
        source = source_of(interaction)
        if source == "wandb":
            if not wandb_allowed(interaction):
                return []
            sweep = sweep or logic.conf.wandb_project or ""
        names = await complete(interaction, fn, sweep, current, source) if sweep else []
        return [app_commands.Choice(name=n[:100], value=n[:100]) for n in names]

    async def run_ids(interaction: discord.Interaction,
                      current: str) -> list[app_commands.Choice[str]]:
        return await in_sweep(interaction, logic.complete_runs, current)

    async def metric_names(interaction: discord.Interaction,
                           current: str) -> list[app_commands.Choice[str]]:
        return await in_sweep(interaction, logic.complete_metrics, current)

    async def read_from(interaction: discord.Interaction, command: str, source: str,
                        work: Callable[[], Reply]) -> None:
        """A read-only command; reading WandB uses the host's key, so unless
        ``bot.wandb_public`` it is allowed like a steering command."""
        if source == "wandb" and not logic.conf.wandb_public:
            await bot.steer(interaction, f"{command} source:wandb", lambda c: work())
        else:
            await bot.read(interaction, command, work)

    sources = [app_commands.Choice(name=s, value=s) for s in ("runner", "wandb")]
    filters_help = ('WandB run filters as JSON (source:wandb), e.g. {"state": "finished", '
                    '"config.lr.value": {"$gt": 0.01}}')

    @tree.command(name="sweeps", description="Recent sweeps with counts per state")
    async def sweeps(interaction: discord.Interaction) -> None:
        await bot.read(interaction, "sweeps", logic.sweeps)

    @tree.command(name="runs", description="Runs of a sweep or a WandB project, best first")
    @app_commands.describe(sweep="sweep name (or entity/project with source:wandb)",
                           state="only runs in this state", top="only the first k",
                           sort="best first by this metric", mode="min or max is better (default: "
                           "from the metric's name: loss -> min, acc -> max)",
                           source="runner (default) or wandb", filters=filters_help)
    @app_commands.choices(state=[app_commands.Choice(name=s.lower(), value=s) for s in STATES],
                          mode=[app_commands.Choice(name=m, value=m) for m in ("min", "max")],
                          source=sources)
    @app_commands.autocomplete(sweep=sweep_names, sort=metric_names)
    async def runs(interaction: discord.Interaction, sweep: str, state: str | None = None,
                   top: int | None = None, sort: str | None = None, mode: str | None = None,
                   source: str = "runner", filters: str | None = None) -> None:
        await read_from(interaction, "runs", source,
                        lambda: logic.runs(sweep, state, top, sort, mode, source, filters))

    @tree.command(name="summary", description="A run's config, state, duration, last metrics")
    @app_commands.describe(run="run id (or sweep/run; entity/project/run_id with source:wandb)",
                           keys="keys or key prefixes, e.g. train,val/loss",
                           sweep="the run's sweep (if the id is not unique) or WandB project",
                           source="runner (default) or wandb")
    @app_commands.choices(source=sources)
    @app_commands.autocomplete(run=run_ids, sweep=sweep_names)
    async def summary(interaction: discord.Interaction, run: str, keys: str = "",
                      sweep: str | None = None, source: str = "runner") -> None:
        await read_from(interaction, "summary", source,
                        lambda: logic.summary(run, keys, sweep, source))

    @tree.command(name="plot", description="Metrics over steps as a PNG")
    @app_commands.describe(sweep="sweep name (or entity/project with source:wandb)",
                           runs="run ids, comma-separated (default: all; WandB: the latest 20)",
                           keys="metrics, comma-separated", spread="mean and 95% band over seeds",
                           source="runner (default) or wandb", filters=filters_help)
    @app_commands.choices(source=sources)
    @app_commands.autocomplete(sweep=sweep_names, keys=metric_names)
    async def plot(interaction: discord.Interaction, sweep: str, runs: str = "",
                   keys: str = "loss", spread: bool = False, source: str = "runner",
                   filters: str | None = None) -> None:
        await read_from(interaction, "plot", source,
                        lambda: logic.plot(sweep, runs, keys, spread, source, filters))

    @tree.command(name="subscribe", description="Post read-only commands here periodically")
    @app_commands.describe(every="minutes between reports",
                           what="commands, ';'-separated, e.g. sweeps; runs sweep:x top:5")
    async def subscribe(interaction: discord.Interaction, every: float, what: str) -> None:
        await bot.steer(interaction, "subscribe", lambda c: logic.subscribe(c, every, what))

    @tree.command(name="unsubscribe", description="Stop periodic reports in this channel")
    @app_commands.describe(id="the subscription's id (default: all of this channel)")
    async def unsubscribe(interaction: discord.Interaction, id: str = "") -> None:
        await bot.steer(interaction, "unsubscribe", lambda c: logic.unsubscribe(c, id))

    @tree.command(name="watch", description="Post a WandB project's run changes here")
    @app_commands.describe(project="entity/project", metric="the metric to show and plot, "
                           "e.g. val/acc")
    async def watch(interaction: discord.Interaction, project: str,
                    metric: str | None = None) -> None:
        await bot.steer(interaction, "watch", lambda c: logic.watch(c, project, metric))

    @tree.command(name="unwatch", description="Stop posting a WandB project's changes here")
    @app_commands.describe(project="entity/project or the watch's id (default: every watch here)")
    async def unwatch(interaction: discord.Interaction, project: str = "") -> None:
        await bot.steer(interaction, "unwatch", lambda c: logic.unwatch(c, project))

    @tree.command(name="launch", description="Start a sweep: Hydra overrides, checked first")
    @app_commands.describe(overrides="e.g. +sweep=grid task.lr=0.1,0.01 seed=1,2")
    async def launch(interaction: discord.Interaction, overrides: str) -> None:
        await bot.steer(interaction, "launch", lambda c: logic.launch(c, overrides))

    @tree.command(name="resume", description="Resume a sweep")
    @app_commands.autocomplete(sweep=sweep_names)
    async def resume(interaction: discord.Interaction, sweep: str) -> None:
        await bot.steer(interaction, "resume", lambda c: logic.resume(c, sweep))

    @tree.command(name="cancel", description="Stop a sweep's runs (they stay resumable)")
    @app_commands.autocomplete(sweep=sweep_names)
    async def cancel(interaction: discord.Interaction, sweep: str) -> None:
        await bot.steer(interaction, "cancel", lambda c: logic.cancel(c, sweep))
