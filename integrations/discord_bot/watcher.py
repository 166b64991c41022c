"""``/watch``: a WandB project's run changes, posted into a channel.

Each watch asks WandB, every ``bot.watch_s``, for the runs whose heartbeat moved since its
cursor (one paginated query, oldest change first), and compares each run's state with the state
it last saw: a run that starts, finishes, crashes, fails or is killed becomes one post (the
metric and a few summary values; on finish, a plot of the metric). More changes than
``bot.watch_digest`` at once become one digest.

Exactly once across restarts: the changes found by a poll, the new cursor and the states seen
are written together, atomically, into ``bot.watch_file`` (an *outbox* of posts to send) before
anything is posted; each post is then sent and taken out of the outbox. A bot stopped at any
moment re-sends at most the one post whose sending it did not record, and never skips a change.

WandB down or slow: the poll fails within ``bot.wandb_timeout_s`` (it runs off the event loop),
the watch says so once in its channel, backs off (doubling, up to 10 minutes), keeps its cursor,
and catches up when WandB answers again.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from runner.errors import RunnerError, StateError
from runner.integrations.discord_bot.messages import Reply, code_table, duration_text, fmt
from runner.integrations.discord_bot.wandb_source import WandbSource, WRun, check_project
from runner.storage.atomic import write_json_atomic

MAX_BACKOFF_S = 600.0
OVERLAP_S = 120  # re-read runs whose heartbeat is this close behind the cursor (clock skew)
MAX_PER_POLL = 500  # runs one poll reads at most; the rest in the next poll
TERMINAL = ("finished", "crashed", "failed", "killed", "preempted")
VERB = {"running": "started", "finished": "finished", "crashed": "crashed", "failed": "failed",
        "killed": "was killed", "preempted": "was preempted", "pending": "is pending"}
MARK = {"running": "▶", "finished": "✅", "crashed": "❌", "failed": "❌", "killed": "⏹",
        "preempted": "⏸", "pending": "…"}


@dataclass
class Watch:
    id: str
    channel_id: int
    project: str
    metric: str | None
    created_by: int
    cursor: str = ""  # the latest heartbeat seen (WandB's clock, ISO text)
    seen: dict[str, list[str]] = field(default_factory=dict)  # run id -> [state, heartbeat]
    outbox: list[dict[str, Any]] = field(default_factory=list)  # posts not yet sent
    failures: int = 0
    down: bool = False  # WandB did not answer; said so once
    next_poll: float = 0.0
    created_roles: list[int] = field(default_factory=list)  # the creator's roles back then
    paused: str = ""  # why it stopped polling (its creator or its project lost its rights)


def _iso_minus(stamp: str, seconds: int) -> str:
    try:
        t = time.strptime(stamp[:19], "%Y-%m-%dT%H:%M:%S")
    except ValueError:
        return stamp
    import calendar

    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(calendar.timegm(t) - seconds))


class WatchStore:
    """The watches of every channel, in one JSON file replaced atomically."""

    def __init__(self, path: Path | str, private: bool = True) -> None:
        self.path = Path(path)
        self.private = private  # 0600
        self.lock = threading.RLock()
        self.items: list[Watch] = self._load()

    def _load(self) -> list[Watch]:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return []
        except ValueError as exc:
            raise StateError(f"{self.path} is not valid JSON ({exc}); fix or delete it") from None
        return [Watch(**item) for item in data.get("watches", [])]

    def save(self) -> None:
        with self.lock:
            self.path.parent.mkdir(mode=0o700 if self.private else 0o777, parents=True,
                                   exist_ok=True)
            write_json_atomic(self.path, {"watches": [asdict(w) for w in self.items]},
                              private=self.private)

    def of_channel(self, channel_id: int) -> list[Watch]:
        return [w for w in self.items if w.channel_id == channel_id]


class Watcher:
    def __init__(self, store: WatchStore, source: WandbSource, every_s: float = 60.0,
                 digest_after: int = 5, clock: Callable[[], float] = time.time,
                 permit: Callable[[Watch], str | None] = lambda watch: None) -> None:
        self.store = store
        self.source = source
        self.permit = permit  # why a watch may not poll now (its creator's rights), or None
        self.every_s = every_s
        self.digest_after = digest_after
        self.clock = clock

    # ------------------------------------------------------------------ commands

    def add(self, channel_id: int, project: str, metric: str | None, user_id: int,
            max_watches: int, roles: tuple[int, ...] = ()) -> tuple[Watch, int, int]:
        """A new watch, after a first look at the project (nothing posted for what is there
        already): (watch, runs seen, of them running)."""
        check_project(project)
        with self.store.lock:
            mine = self.store.of_channel(channel_id)
            if any(w.project == project for w in mine):
                raise StateError(f"this channel watches {project} already; /unwatch it first")
            if len(mine) >= max_watches:
                raise StateError(f"this channel has {max_watches} watches already; "
                                 "/unwatch one first")
        watch = Watch(uuid.uuid4().hex[:6], channel_id, project, metric or None, user_id,
                      created_roles=list(roles))
        runs = self._changed(watch)  # raises if WandB does not answer: nothing is saved
        for run in runs:
            watch.seen[run.id] = [run.state, run.heartbeat_at]
            watch.cursor = max(watch.cursor, run.heartbeat_at)
        watch.next_poll = self.clock() + self.every_s
        with self.store.lock:
            self.store.items.append(watch)
            self.store.save()
        return watch, len(runs), sum(r.state == "running" for r in runs)

    def remove(self, channel_id: int, project: str | None) -> list[Watch]:
        with self.store.lock:
            gone = [w for w in self.store.of_channel(channel_id)
                    if not project or w.project == project or w.id == project]
            self.store.items = [w for w in self.store.items if w not in gone]
            self.store.save()
            return gone

    # ------------------------------------------------------------------ polling

    def _changed(self, watch: Watch) -> list[WRun]:
        """Runs whose heartbeat moved since the cursor (a little overlap), oldest first."""
        flt = ({"heartbeatAt": {"$gt": _iso_minus(watch.cursor, OVERLAP_S)}}
               if watch.cursor else None)
        return self.source.runs(watch.project, flt, "+heartbeat_at", MAX_PER_POLL, fresh=True,
                                lane="watches")

    def due(self) -> list[Watch]:
        now = self.clock()
        with self.store.lock:
            return [w for w in self.store.items if w.next_poll <= now or w.outbox]

    def poll(self, watch: Watch) -> None:
        """One look at WandB: what changed goes into the outbox, saved with the new cursor."""
        now = self.clock()
        if watch.next_poll > now:
            return
        if not self._permitted(watch):
            with self.store.lock:
                watch.next_poll = now + self.every_s
                self.store.save()
            return
        try:
            runs = self._changed(watch)
        except RunnerError as exc:
            with self.store.lock:
                watch.failures += 1
                watch.next_poll = now + min(self.every_s * 2 ** watch.failures, MAX_BACKOFF_S)
                if not watch.down:
                    watch.down = True
                    watch.outbox.append({"id": uuid.uuid4().hex[:8], "kind": "down",
                                         "text": f"⚠ watching WandB {watch.project}: {exc} "
                                                 "Retrying with back-off; changes will be posted "
                                                 "when it answers."})
                self.store.save()
            return
        changes = []
        for run in runs:
            before = watch.seen.get(run.id)
            if before is None or before[0] != run.state:
                changes.append({"run": run.path, "name": run.name, "from": before[0] if before
                                else None, "state": run.state,
                                "metrics": _some_metrics(run, watch.metric),
                                "runtime_s": run.runtime_s})
        with self.store.lock:
            if watch.down:
                watch.outbox.append({"id": uuid.uuid4().hex[:8], "kind": "up",
                                     "text": f"WandB {watch.project} answers again: "
                                             f"{len(changes)} change(s) since it stopped."})
            if len(changes) > self.digest_after:
                watch.outbox.append({"id": uuid.uuid4().hex[:8], "kind": "digest",
                                     "changes": changes})
            else:
                watch.outbox.extend({"id": uuid.uuid4().hex[:8], "kind": "change", **c}
                                    for c in changes)
            for run in runs:
                watch.seen[run.id] = [run.state, run.heartbeat_at]
                watch.cursor = max(watch.cursor, run.heartbeat_at)
            horizon = _iso_minus(watch.cursor, 2 * OVERLAP_S)  # older ones are not asked again
            watch.seen = {k: v for k, v in watch.seen.items()
                          if v[1] >= horizon or v[0] not in TERMINAL}
            watch.failures, watch.down = 0, False
            watch.next_poll = now + self.every_s
            self.store.save()

    def _permitted(self, watch: Watch) -> bool:
        """Rights are checked when used: a watch whose creator or project lost them pauses
        (said once in its channel) and goes on once they are back. (``poll`` saves what this
        changes, on every path.)"""
        why = self.permit(watch)
        with self.store.lock:
            if why and not watch.paused:
                watch.paused = why
                watch.outbox.append({"id": uuid.uuid4().hex[:8], "kind": "paused",
                                     "text": f"⏸ watch {watch.id} of WandB {watch.project} "
                                             f"paused: {why}"})
            elif not why and watch.paused:
                watch.paused = ""
                watch.outbox.append({"id": uuid.uuid4().hex[:8], "kind": "resumed",
                                     "text": f"▶ watch {watch.id} of WandB {watch.project} "
                                             "resumed"})
        return why is None

    def sent(self, watch: Watch, post_id: str) -> None:
        with self.store.lock:
            watch.outbox = [p for p in watch.outbox if p["id"] != post_id]
            self.store.save()

    # ------------------------------------------------------------------ posts

    def render(self, watch: Watch, post: dict[str, Any]) -> Reply:
        """A post's message; a finished run's plot is drawn now (without it if WandB fails)."""
        if post["kind"] in ("down", "up", "paused", "resumed"):
            return Reply(post["text"])
        if post["kind"] == "digest":
            rows = [[c["name"], (c["from"] or "new") + " → " + c["state"],
                     ", ".join(f"{k}={fmt(v)}" for k, v in list(c["metrics"].items())[:2])]
                    for c in post["changes"]]
            counts: dict[str, int] = {}
            for c in post["changes"]:
                counts[c["state"]] = counts.get(c["state"], 0) + 1
            text = (f"**WandB {watch.project}**: {len(rows)} runs changed ("
                    + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) + ")\n"
                    + code_table(["run", "state", "summary"], rows))
            done = [c for c in post["changes"] if c["state"] == "finished"]
            return Reply(text, self._plot(watch, done))
        state = post["state"]
        verb = VERB.get(state, state)
        if post["from"] in TERMINAL and state == "running":
            verb = "resumed"
        text = (f"{MARK.get(state, '•')} **{post['name']}** ({post['run']}) {verb}"
                + (f" after {duration_text(post['runtime_s'])}" if state in TERMINAL
                   and post.get("runtime_s") else ""))
        if post["metrics"] and state != "running":
            text += ": " + ", ".join(f"{k}={fmt(v)}" for k, v in post["metrics"].items())
        files = self._plot(watch, [post]) if state == "finished" else []
        return Reply(text, files)

    def _plot(self, watch: Watch, changes: list[dict[str, Any]]) -> list[tuple[str, bytes]]:
        if not watch.metric or not changes:
            return []
        from runner.integrations.discord_bot.wandb_commands import WandbCommands

        try:
            reply = WandbCommands(self.source).plot(
                watch.project, ",".join(c["run"].rsplit("/", 1)[-1] for c in changes[:20]),
                watch.metric)
        except RunnerError:
            return []  # the text goes out without its plot
        return reply.files


def _some_metrics(run: WRun, metric: str | None, n: int = 4) -> dict[str, Any]:
    """The watched metric first, then a few other summary values (numbers first)."""
    metrics = run.metrics()
    out: dict[str, Any] = {}
    if metric and metric in metrics:
        out[metric] = metrics[metric]
    numbers = [k for k, v in metrics.items() if isinstance(v, int | float) and k not in out]
    for key in numbers[: n - len(out)]:
        out[key] = metrics[key]
    return out
