"""What every command does, in plain Python: no discord.py here.

Each command returns a ``Reply`` (text, PNG/text attachments, ephemeral or not); the transport
(``app``) only delivers it. Nothing is answered in direct messages. Read-only commands (sweeps,
runs, summary, plot, and autocompletion) answer everyone, but only in the configured channels
(``bot.read_channels``, default ``bot.channels``), and only about sweeps under ``bot.outputs``;
commands that start, resume or cancel work, post in a channel periodically, or read a WandB
project with the host's key, need a configured user or role *and* a configured channel. Every
refused attempt is written to the audit log.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runner.config.secrets import redact
from runner.errors import RunnerError, StateError
from runner.integrations.discord_bot.chat_policy import ChatPolicy, parse_chat_overrides
from runner.integrations.discord_bot.config import BotConf
from runner.integrations.discord_bot.launches import Launches, open_log
from runner.integrations.discord_bot.messages import (
    MAX_PLOT_RUNS,
    Reply,
    code_table,
    comma_list,
    duration_text,
    fmt,
    plot_keys,
)
from runner.integrations.discord_bot.subscriptions import Subscription, SubscriptionStore
from runner.integrations.discord_bot.wandb_commands import WandbCommands
from runner.integrations.discord_bot.wandb_source import WandbSource
from runner.integrations.discord_bot.watcher import Watcher, WatchStore
from runner.results import queries
from runner.storage.store import SweepStore

READ_ONLY = ("sweeps", "runs", "summary", "plot")
OPTIONS = {"sweeps": (), "runs": ("sweep", "state", "top", "sort", "mode", "source", "filters"),
           "summary": ("run", "keys", "sweep", "source"),
           "plot": ("sweep", "runs", "keys", "spread", "source", "filters")}
MAX_SUBSCRIPTIONS = 10  # per channel
MAX_WHAT = 500  # characters of one subscription's commands


@dataclass(frozen=True)
class Caller:
    user_id: int
    channel_id: int
    role_ids: tuple[int, ...] = ()
    name: str = ""
    in_guild: bool = True  # False: a direct message


def _source(source: str | None) -> str:
    if (source or "runner") not in ("runner", "wandb"):
        raise StateError(f"source:{source} is not one of: runner, wandb")
    return source or "runner"


class BotLogic:
    def __init__(self, conf: BotConf, clock: Callable[[], float] = time.time) -> None:
        self.conf = conf
        self.workdir = Path(conf.workdir or ".").resolve()
        self.outputs = [(self.workdir / o).resolve() for o in conf.outputs]
        self.log_dir = (self.workdir / conf.log_dir).resolve()
        self.clock = clock
        self.subscriptions = SubscriptionStore(self.workdir / conf.state_file, clock,
                                               private=conf.private_files)
        self.launches = Launches(self.workdir, self.log_dir / "launches", conf.max_launches,
                                 ChatPolicy(list(conf.chat_keys), list(conf.tasks)),
                                 conf.max_runs, hidden_env=(conf.token_env,),
                                 private=conf.private_files)
        self._audit_lock = threading.Lock()
        self.wandb = WandbCommands(WandbSource(conf.wandb_key_env, conf.wandb_timeout_s,
                                               conf.wandb_cache_s,
                                               per_user=conf.wandb_per_user,
                                               per_channel=conf.wandb_per_channel),
                                   conf.wandb_project,
                                   conf.wandb_projects)
        self.watcher = Watcher(WatchStore(self.workdir / conf.watch_file, conf.private_files),
                               self.wandb.source, conf.watch_s, conf.watch_digest, clock,
                               permit=self._watch_permit)

    # ------------------------------------------------------------------ safety

    def audit(self, line: str) -> None:
        """One line in bot.log (refusals, launches): who did what, when."""
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        with self._audit_lock:
            fd = open_log(self.log_dir / "bot.log", self.conf.private_files)
            with open(fd, "a", encoding="utf-8") as f:
                f.write(f"{stamp} {redact(line)}\n")

    def read_refusal(self, caller: Caller, command: str, log: bool = True) -> Reply | None:
        """None if ``caller`` may use a read-only ``command`` here; else the refusal (logged
        unless ``log`` is false: autocompletion is refused silently)."""
        channels = (self.conf.channels if self.conf.read_channels is None
                    else self.conf.read_channels)
        if not caller.in_guild:
            why = "this bot does not answer direct messages"
        elif caller.channel_id not in channels:
            why = f"/{command} is not answered in this channel (bot.read_channels)"
        else:
            return None
        return self._refused(caller, command, why, log)

    def refusal_reason(self, caller: Caller, command: str = "this") -> str | None:
        """None if ``caller`` may run a steering command here; else why not."""
        user_ok = (caller.user_id in self.conf.allowed_users
                   or bool(set(caller.role_ids) & set(self.conf.allowed_roles)))
        if not caller.in_guild:
            return "this bot does not answer direct messages"
        if not user_ok:
            return (f"you are not allowed to use /{command} (ask an admin to add you to "
                    "bot.allowed_users or one of your roles to bot.allowed_roles)")
        if caller.channel_id not in self.conf.channels:
            return f"/{command} is not allowed in this channel (bot.channels)"
        return None

    def rights_now(self, user_id: int, roles: list[int], channel_id: int, command: str
                   ) -> str | None:
        """Why the creator of a subscription or a watch may no longer have it run, or None:
        checked each time it runs, against the settings of now (their roles as they were when
        they made it: a role taken away in Discord is not seen, one taken out of
        bot.allowed_roles is)."""
        return self.refusal_reason(Caller(user_id, channel_id, tuple(roles)), command)

    def _watch_permit(self, watch: Any) -> str | None:
        why = self.rights_now(watch.created_by, watch.created_roles, watch.channel_id, "watch")
        if why is None:
            try:
                self.wandb.project(watch.project)
            except RunnerError as exc:
                return str(exc)
        return None if why is None else f"its creator (user {watch.created_by}): {why}"

    def refusal(self, caller: Caller, command: str) -> Reply | None:
        """None if ``caller`` may run a steering ``command`` here; else the refusal (logged)."""
        why = self.refusal_reason(caller, command)
        return None if why is None else self._refused(caller, command, why)

    def _refused(self, caller: Caller, command: str, why: str, log: bool = True) -> Reply:
        """The refusal only the caller sees, written to the audit log."""
        if log:
            self.audit(f"REFUSED /{command} from user {caller.user_id} ({caller.name}) in "
                       f"channel {caller.channel_id}: {why}")
        return Reply(f"refused: {why}", ephemeral=True)

    # ------------------------------------------------------------------ read-only commands

    def sweeps(self, limit: int = 15) -> Reply:
        found = queries.list_sweeps(self.outputs, limit, contained=True)
        if not found:
            return Reply(f"no sweeps under {', '.join(map(str, self.outputs))}")
        states = ["COMPLETED", "RUNNING", "CRASHED", "INTERRUPTED", "PRUNED", "UNHATCHED"]
        rows = [[s.name, s.kind, s.total, *(s.counts.get(k, 0) or "" for k in states),
                 time.strftime("%m-%d %H:%M", time.localtime(s.modified)), ",".join(s.tags)]
                for s in found]
        header = ["sweep", "kind", "runs", "done", "running", "crashed", "interrupted", "pruned",
                  "left", "changed", "tags"]
        return Reply(f"**{len(found)} recent sweep(s)**\n" + code_table(header, rows))

    def runs(self, sweep: str, state: str | None = None, top: int | None = None,
             sort: str | None = None, mode: str | None = None, source: str = "runner",
             filters: str | None = None) -> Reply:
        from runner.results.modes import mode_for

        if _source(source) == "wandb":
            return self.wandb.runs(sweep, state, top, sort, mode, filters)
        if filters:
            raise StateError("filters: are WandB's run filters; give source:wandb as well")
        store = queries.find_sweep(self.outputs, sweep, contained=True)
        mode = mode_for(sort, mode) if sort else "min"
        rows = queries.select_runs(store, state, sort, mode, top)
        varying = list(store.manifest.get("varying", []))
        now = time.time()
        table = []
        for row in rows:
            info = row.reason if row.state in ("CRASHED", "INTERRUPTED", "PRUNED",
                                               "CORRUPT") else ""
            if sort:
                info = f"{sort}={fmt(queries.metric_of(row, sort))}" + (f" {info}" if info else "")
            elif not info:
                info = ", ".join(f"{k}={fmt(v)}" for k, v in list(row.summary.items())[:3])
            table.append([row.ref.id, *(row.ref.values.get(k) for k in varying), row.state,
                          duration_text(row.duration(now)), info[:60]])
        title = (f"**{store.root.name}**: {len(rows)} run(s)" + (f" {state.upper()}" if state
                                                                  else "")
                 + (f", best first by {sort} ({mode})" if sort else ""))
        return Reply(title + "\n" + code_table(["id", *varying, "state", "time", "info"], table))

    def _store_and_run(self, run: str, sweep: str | None) -> tuple[SweepStore, str]:
        if "/" in run and not sweep:
            sweep, run = run.rsplit("/", 1)
        if sweep:
            return queries.find_sweep(self.outputs, sweep, contained=True), run
        hits = []
        for path in queries.sweep_dirs(self.outputs):
            store = SweepStore(path)
            try:
                queries.check_contained(path)
                if any(r.id.startswith(run) for r in store.runs()):
                    hits.append(store)
            except StateError:
                continue  # a sweep being written, or not one of ours
        if len(hits) != 1:
            raise StateError(f"run '{run}' is in {len(hits)} sweeps; give sweep:<name> as well"
                             if hits else f"no run '{run}' in any sweep")
        return hits[0], run

    def summary(self, run: str, keys: str = "", sweep: str | None = None,
                source: str = "runner") -> Reply:
        if _source(source) == "wandb":
            return self.wandb.summary(run, keys, sweep)
        store, run_id = self._store_and_run(run, sweep)
        wanted = comma_list(keys)
        info = queries.run_summary(store, run_id, wanted)
        lines = [f"**{info['sweep']} / {info['id']}**: {info['state']}"
                 + (f" ({info['reason']})" if info["reason"] else "")
                 + f", attempt {info['attempt']}, {duration_text(info['duration_s'])}"]
        lines.append("values: " + ", ".join(f"{k}={fmt(v)}" for k, v in info["values"].items()))
        if info["tags"]:
            lines.append("tags: " + ", ".join(info["tags"]))
        lines += [f"note: {text}" for text in info["notes"][-3:]]
        if info["metrics"]:
            lines.append("metrics:\n"
                         + code_table(["key", "value"], sorted(info["metrics"].items())))
        else:
            lines.append("metrics: none" + (f" matching {keys}" if wanted else " logged yet"))
        if wanted:
            config = sorted(info["config"].items())
            lines.append("config:\n" + code_table(["key", "value"], config) if config
                         else f"config: no key matching {keys}")
        return Reply("\n".join(lines))

    def plot(self, sweep: str, runs: str = "", keys: str = "loss", spread: bool = False,
             source: str = "runner", filters: str | None = None) -> Reply:
        from runner.results import aggregate as results
        from runner.results import plots

        if _source(source) == "wandb":
            return self.wandb.plot(sweep, runs, keys, spread, filters)
        if filters:
            raise StateError("filters: are WandB's run filters; give source:wandb as well")
        store = queries.find_sweep(self.outputs, sweep, contained=True)
        wanted = comma_list(runs)
        metrics = plot_keys(keys)
        panels = []
        for metric in metrics:
            found = results.collect(store, metric, mode="min")
            if wanted:
                found = [r for r in found if any(r.id.startswith(w) for w in wanted)]
                if not found:
                    raise StateError(f"none of the runs {', '.join(wanted)} is in {sweep}")
            found = [r for r in found if len(r.steps)][:MAX_PLOT_RUNS * (5 if spread else 1)]
            if spread:
                groups = results.group_runs(store, found)
            else:
                groups = [results.Group((("run", r.id),), [r]) for r in found]
            panels.append((metric, groups))
        png = plots.metric_panels(panels, title=store.root.name, spread=spread)
        what = "mean and 95% band over seeds" if spread else "one line per run"
        return Reply(f"**{store.root.name}**: {', '.join(metrics)} over steps ({what})",
                     [(f"{store.root.name[:40]}-{'-'.join(metrics)[:40]}.png"
                       .replace("/", "_"), png)])

    # ------------------------------------------------------------------ steering commands

    def launch(self, caller: Caller, overrides: str) -> Reply:
        refused = self.refusal(caller, "launch")
        if refused:
            return refused
        args = parse_chat_overrides(overrides)
        plan: Any = self.launches.plan(args)
        if self.conf.launch_fn:  # the admin's own way of starting work (checked the same way)
            said = self.launches.hand_over(self.conf.launch_fn, args, plan.name,
                                           plan.run_budget(), caller.user_id)
            self.audit(f"LAUNCH by user {caller.user_id} ({caller.name}): {shlex.join(args)} "
                       f"-> {plan.name}, handed to {self.conf.launch_fn}: {said}")
            return Reply(f"handed **{plan.name}** ({plan.run_budget()} run(s), {plan.kind}) to "
                         f"`{self.conf.launch_fn}`" + (f": {said}" if said else ""))
        argv = [*args, "runner.progress=false"]
        item = self.launches.start(argv, plan.name, plan.run_budget(), caller.user_id)
        self.audit(f"LAUNCH by user {caller.user_id} ({caller.name}): python -m runner "
                   f"{shlex.join(argv)} -> {plan.name}, pid {item.proc.pid}")
        return Reply(f"started **{plan.name}**: {plan.run_budget()} run(s) ({plan.kind}), pid "
                     f"{item.proc.pid}. Follow it with `/runs sweep:{plan.name}`.")

    def resume(self, caller: Caller, sweep: str) -> Reply:
        refused = self.refusal(caller, "resume")
        if refused:
            return refused
        store = queries.find_sweep(self.outputs, sweep, contained=True)
        item = self.launches.start(["resume", str(store.root)], store.root.name,
                                   len(store.manifest["runs"]), caller.user_id)
        self.audit(f"RESUME by user {caller.user_id} ({caller.name}): {store.root}, "
                   f"pid {item.proc.pid}")
        return Reply(f"resuming **{store.root.name}** (pid {item.proc.pid})")

    def cancel(self, caller: Caller, sweep: str) -> Reply:
        refused = self.refusal(caller, "cancel")
        if refused:
            return refused
        store = queries.find_sweep(self.outputs, sweep, contained=True)
        self.audit(f"CANCEL by user {caller.user_id} ({caller.name}): {store.root}")
        proc = subprocess.run([sys.executable, "-m", "runner", "cancel", str(store.root)],
                              cwd=self.workdir, capture_output=True, text=True, timeout=180)
        said = (proc.stdout + proc.stderr).strip()
        return Reply(f"cancel **{store.root.name}**: {said or 'done'}")

    def subscribe(self, caller: Caller, every_min: float, what: str) -> Reply:
        refused = self.refusal(caller, "subscribe")
        if refused:
            return refused
        if every_min < 1:
            raise StateError(f"every:{every_min:g} is too often; at least every 1 minute")
        if len(what) > MAX_WHAT:
            raise StateError(f"what: is {len(what)} characters long; at most {MAX_WHAT}")
        if len(self.subscriptions.of_channel(caller.channel_id)) >= MAX_SUBSCRIPTIONS:
            raise StateError(f"this channel has {MAX_SUBSCRIPTIONS} subscriptions already; "
                             "/unsubscribe one first")
        for part in self._parts(what):  # check the commands now, not at the first report
            self._parse_command(part)
        sub = self.subscriptions.add(caller.channel_id, every_min, what, caller.user_id,
                                     caller.role_ids)
        self.audit(f"SUBSCRIBE by user {caller.user_id}: channel {caller.channel_id} every "
                   f"{every_min:g} min: {what}")
        return Reply(f"subscribed (id {sub.id}): every {every_min:g} min this channel gets "
                     f"`{what}`; `/unsubscribe id:{sub.id}` stops it")

    def unsubscribe(self, caller: Caller, sub_id: str = "") -> Reply:
        refused = self.refusal(caller, "unsubscribe")
        if refused:
            return refused
        gone = self.subscriptions.remove(caller.channel_id, sub_id or None)
        if not gone:
            return Reply("no such subscription in this channel"
                         + (f" (id {sub_id})" if sub_id else ""), ephemeral=True)
        return Reply(f"unsubscribed: {', '.join(s.id + ' (' + s.what + ')' for s in gone)}")

    def watch(self, caller: Caller, project: str, metric: str | None = None) -> Reply:
        refused = self.refusal(caller, "watch")
        if refused:
            return refused
        project = self.wandb.project(project)
        watch, total, running = self.watcher.add(caller.channel_id, project, metric,
                                                 caller.user_id, self.conf.max_watches,
                                                 caller.role_ids)
        self.audit(f"WATCH by user {caller.user_id}: channel {caller.channel_id}: {project}"
                   + (f" metric {metric}" if metric else ""))
        return Reply(f"watching WandB **{project}** (id {watch.id}): {total} run(s) there now, "
                     f"{running} running; from now on this channel gets a post when a run "
                     "starts, finishes, crashes or fails"
                     + (f" (with {metric} and, on finish, its plot)" if metric else "")
                     + f". `/unwatch project:{project}` stops it.")

    def unwatch(self, caller: Caller, project: str = "") -> Reply:
        refused = self.refusal(caller, "unwatch")
        if refused:
            return refused
        gone = self.watcher.remove(caller.channel_id, project.strip() or None)
        if not gone:
            return Reply("no such watch in this channel" + (f" ({project})" if project else ""),
                         ephemeral=True)
        self.audit(f"UNWATCH by user {caller.user_id}: channel {caller.channel_id}: "
                   + ", ".join(w.project for w in gone))
        return Reply("stopped watching " + ", ".join(f"**{w.project}**" for w in gone))

    # ------------------------------------------------------------------ periodic reports

    @staticmethod
    def _parts(what: str) -> list[str]:
        parts = [p.strip() for p in what.split(";") if p.strip()]
        if not parts:
            raise StateError("what:<commands> is empty, e.g. what:\"sweeps; runs sweep:x top:5\"")
        return parts

    def _parse_command(self, text: str) -> tuple[str, dict[str, str]]:
        words = shlex.split(text.lstrip("/"))
        name, options = words[0], {}
        if name not in READ_ONLY:
            raise StateError(f"'{name}' cannot be subscribed to; one of: {', '.join(READ_ONLY)}")
        for word in words[1:]:
            key, sep, value = word.partition(":")
            if not sep:
                raise StateError(f"'{word}' in '{text}' is not key:value")
            if key not in OPTIONS[name]:
                raise StateError(f"/{name} has no option '{key}'; its options: "
                                 f"{', '.join(OPTIONS[name]) or 'none'}")
            options[key] = value
        _source(options.get("source", "runner"))
        return name, options

    def run_command(self, text: str) -> Reply:
        """A read-only command written as in chat: ``runs sweep:x state:crashed top:5``."""
        name, o = self._parse_command(text)
        source = o.get("source", "runner")
        if name == "sweeps":
            return self.sweeps()
        if name == "runs":
            try:
                top = int(o["top"]) if o.get("top") else None
            except ValueError:
                raise StateError(f"top:{o['top']} in '{text}' is not a number") from None
            return self.runs(o.get("sweep", ""), o.get("state"), top, o.get("sort"),
                             o.get("mode"), source, o.get("filters"))
        if name == "summary":
            return self.summary(o.get("run", ""), o.get("keys", ""), o.get("sweep"), source)
        return self.plot(o.get("sweep", ""), o.get("runs", ""), o.get("keys", "loss"),
                         o.get("spread", "false").lower() in ("1", "true", "yes"), source,
                         o.get("filters"))

    def report(self, sub: Subscription) -> Reply:
        replies = []
        for part in self._parts(sub.what):
            try:
                replies.append(self.run_command(part))
            except RunnerError as exc:
                replies.append(Reply(f"`{part}`: {exc}"))
        text = f"report ({sub.id}, every {sub.every_min:g} min)\n" + "\n".join(
            r.text for r in replies)
        return Reply(text, [f for r in replies for f in r.files])

    def due_reports(self) -> list[tuple[int, Reply]]:
        """The reports due now. Rights are checked when used: a subscription whose creator
        may no longer subscribe here pauses (said once) and goes on once they may again."""
        out = []
        for sub in self.subscriptions.take_due():
            why = self.rights_now(sub.created_by, sub.created_roles, sub.channel_id,
                                  "subscribe")
            if why is not None:
                if not sub.paused:
                    self.subscriptions.set_paused(sub, why)
                    out.append((sub.channel_id, Reply(
                        f"⏸ subscription {sub.id} paused: its creator (user {sub.created_by}) "
                        f"may no longer subscribe here: {why}")))
                continue
            if sub.paused:
                self.subscriptions.set_paused(sub, "")
            out.append((sub.channel_id, self.report(sub)))
        return out

    # ------------------------------------------------------------------ autocompletion

    def complete_sweeps(self, typed: str, source: str = "runner") -> list[str]:
        if source == "wandb":
            names = [self.conf.wandb_project] if self.conf.wandb_project else []
            return [n for n in names if typed.lower() in n.lower()]
        names = [d.name for d in queries.sweep_dirs(self.outputs)]
        return [n for n in names if typed.lower() in n.lower()][:25]

    def complete_metrics(self, sweep: str, typed: str, source: str = "runner") -> list[str]:
        """Metric names for ``sort:`` or ``keys:``; in a comma list the last item is
        completed (``loss,va`` -> ``loss,val/acc``)."""
        if source == "wandb":
            names = self.wandb.key_names(sweep)
        else:
            try:
                names = queries.metric_names(
                    queries.find_sweep(self.outputs, sweep, contained=True))
            except RunnerError:
                return []
        done, _, last = typed.rpartition(",")
        head = f"{done}," if done else ""
        return [head + name for name in names if last.strip() in name][:25]

    def complete_runs(self, sweep: str, typed: str, source: str = "runner") -> list[str]:
        if source == "wandb":
            return self.wandb.complete_runs(sweep, typed)
        try:
            store = queries.find_sweep(self.outputs, sweep, contained=True)
        except RunnerError:
            return []
        return [r.id for r in store.runs() if r.id.startswith(typed)][:25]
