"""Sweep events to a Discord channel through a webhook (no bot needed).

Deliveries run on a background thread behind a bounded queue, so a slow or dead Discord never
slows or breaks a sweep: when the queue is full the newest message is dropped and counted, and at
the end of the sweep pending messages get ``flush_timeout_s`` to go out. A 429 is retried after
the ``retry_after`` Discord sends, a 5xx or a network error after an exponential back-off, up to
``max_retries`` times. Messages respect Discord's limits (2,000 characters of content; embed title
256, description 4,096, field 1,024, 6,000 in all): what does not fit is attached as a text file.
The webhook URL is a secret: it is read from the environment or a file and redacted from every
log line and error.
"""

from __future__ import annotations

import io
import json
import logging
import queue
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runner.config.schema import NotifierConf
from runner.config.secrets import known, read_secret, redact
from runner.errors import ConfigError
from runner.integrations.mentions import NO_MENTIONS, no_pings
from runner.notifiers.base import (
    Event,
    Notifier,
    RunEnded,
    SweepFinished,
    SweepNotice,
    SweepProgress,
    SweepStarted,
)

log = logging.getLogger("runner.discord")

CONTENT_LIMIT = 2000
TITLE_LIMIT = 256
DESCRIPTION_LIMIT = 4096
FIELD_LIMIT = 1024
EMBED_TOTAL_LIMIT = 6000
COLOURS = {"started": 0x3498DB, "COMPLETED": 0x2ECC71, "CRASHED": 0xE74C3C,
           "INTERRUPTED": 0xF1C40F, "PRUNED": 0x5D6D7E, "finished": 0x95A5A6}


@dataclass
class DiscordNotifierConf(NotifierConf):
    _target_: str = "runner.integrations.discord_notify.DiscordNotifier"
    events: list[str] = field(default_factory=lambda: [
        "sweep_started", "run_crashed", "run_interrupted", "sweep_notice", "sweep_finished"])
    webhook_url_env: str | None = "DISCORD_WEBHOOK_URL"
    webhook_url_file: str | None = None
    username: str = "runner"
    metric: str | None = None  # sweep_finished: best runs and a plot by this metric
    mode: str = field(default="max", metadata={"choices": ("max", "min")})
    top_k: int = field(default=5, metadata={"min": 1})
    queue_size: int = field(default=100, metadata={"min": 1})
    timeout_s: float = field(default=10.0, metadata={"min": 0.0})
    max_retries: int = field(default=5, metadata={"min": 0})
    flush_timeout_s: float = field(default=30.0, metadata={"min": 0.0})


@dataclass
class Message:
    """One webhook post: JSON payload plus optional files (name -> bytes)."""

    payload: dict[str, Any]
    files: dict[str, bytes] = field(default_factory=dict)


UNREACHABLE_GRACE_S = 3.0  # how long the end of a sweep waits on a webhook that does not answer


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def build_message(username: str, title: str, description: str, colour: int,
                  fields: list[tuple[str, str]] | None = None,
                  attachments: dict[str, bytes] | None = None) -> Message:
    """An embed within Discord's limits; overflowing text goes into an attached file.

    Every text is redacted first: a task's exception message could quote a secret.
    """
    title, description = redact(title), redact(description)
    fields = [(redact(name), redact(value)) for name, value in fields or []]
    files = dict(attachments or {})
    overflow = []
    if len(description) > DESCRIPTION_LIMIT:
        overflow.append(description)
        description = _cut(description, DESCRIPTION_LIMIT - 40) + "\n(full text attached)"
    embed_fields = []
    for name, value in fields:
        if len(value) > FIELD_LIMIT:
            overflow.append(f"{name}:\n{value}")
            value = _cut(value, FIELD_LIMIT - 20) + "\n(attached)"
        embed_fields.append({"name": _cut(name, TITLE_LIMIT), "value": value or "-",
                             "inline": len(value) < 40})
    embed: dict[str, Any] = {"title": _cut(title, TITLE_LIMIT), "description": description,
                             "color": colour, "fields": embed_fields}
    while _embed_size(embed) > EMBED_TOTAL_LIMIT and embed["fields"]:
        dropped = embed["fields"].pop()
        overflow.append(f"{dropped['name']}:\n{dropped['value']}")
    if overflow:
        files["details.txt"] = "\n\n".join(overflow).encode()
    for name in files:
        if name.endswith(".png"):
            embed["image"] = {"url": f"attachment://{name}"}
    embed["title"], embed["description"] = no_pings(embed["title"]), no_pings(description)
    for item in embed["fields"]:
        item["name"], item["value"] = no_pings(item["name"]), no_pings(item["value"])
    return Message({"username": no_pings(username), "embeds": [embed],
                    "allowed_mentions": dict(NO_MENTIONS)}, files)


def _embed_size(embed: dict[str, Any]) -> int:
    return (len(embed["title"]) + len(embed["description"])
            + sum(len(f["name"]) + len(f["value"]) for f in embed["fields"]))


def encode_multipart(message: Message) -> tuple[bytes, str]:
    """``payload_json`` plus ``files[n]``: the form Discord's webhook endpoint takes."""
    boundary = uuid.uuid4().hex
    out = io.BytesIO()
    parts: list[tuple[str, str | None, str, bytes]] = [
        ("payload_json", None, "application/json", json.dumps(message.payload).encode())]
    parts += [(f"files[{i}]", name, "image/png" if name.endswith(".png") else "text/plain",
               data) for i, (name, data) in enumerate(message.files.items())]
    for name, filename, ctype, data in parts:
        out.write(f"--{boundary}\r\n".encode())
        disposition = f'form-data; name="{name}"'
        if filename:
            disposition += f'; filename="{filename}"'
        out.write(f"Content-Disposition: {disposition}\r\nContent-Type: {ctype}\r\n\r\n".encode())
        out.write(data + b"\r\n")
    out.write(f"--{boundary}--\r\n".encode())
    return out.getvalue(), f"multipart/form-data; boundary={boundary}"


class DiscordNotifier(Notifier):
    config_class = DiscordNotifierConf

    def __init__(self, conf: Any) -> None:
        super().__init__(conf)
        self.url = read_secret("notifier.discord webhook URL", conf.webhook_url_env,
                               conf.webhook_url_file)
        parsed = urllib.parse.urlsplit(self.url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            where = known().get(self.url, "the configured place")  # read_secret's record
            raise ConfigError(f"notifier.discord: the webhook URL in {where} is not an http(s) "
                              "URL (copy it whole from Discord: https://discord.com/api/webhooks/"
                              "...)")
        self.queue: queue.Queue[Message | None] = queue.Queue(maxsize=conf.queue_size)
        self.dropped = 0
        self.delivered = 0
        self.failed = 0
        self.unreachable: str | None = None  # why the last post failed, while it fails
        self.thread = threading.Thread(target=self._deliver_all, name="runner-discord",
                                       daemon=True)
        self.thread.start()

    # ---------------------------------------------------------------- formatting

    def handle(self, event: Event) -> None:
        message = self.format(event)
        if message is None:
            return
        try:
            self.queue.put_nowait(message)
        except queue.Full:
            self.dropped += 1  # never block the sweep on Discord

    def format(self, event: Event) -> Message | None:
        user = self.conf.username
        if isinstance(event, SweepStarted):
            counts = ", ".join(f"{n} {s.lower()}" for s, n in event.counts.items() if n)
            return build_message(user, f"Sweep {event.sweep_name} started",
                                 f"{event.to_run} of {event.total} runs to launch ({counts}).",
                                 COLOURS["started"], [("directory", str(event.sweep_dir))])
        if isinstance(event, RunEnded):
            values = ", ".join(f"{k}={v}" for k, v in event.values.items()) or "(no values)"
            fields = [("values", values), ("attempt", str(event.attempt)),
                      ("log", str(Path(event.run_dir) / "stderr.log"))]
            tail = "\n".join(event.details.strip().splitlines()[-15:])
            description = event.reason or event.state.lower()
            if tail:
                description += f"\n```\n{tail}\n```"
            return build_message(user, f"Run {event.run_id} {event.state.lower()}",
                                 description, COLOURS.get(event.state, 0), fields)
        if isinstance(event, SweepNotice):
            return build_message(user, f"Sweep {event.sweep_name}: notice", event.text,
                                 COLOURS["CRASHED"], [("directory", str(event.sweep_dir))])
        if isinstance(event, SweepFinished):
            return self._finished(event)
        if isinstance(event, SweepProgress):
            eta = f"about {event.eta_s / 60:.1f} min left" if event.eta_s is not None else ""
            return build_message(user, f"Sweep {event.sweep_name}: progress",
                                 f"{event.done} done, {event.crashed} crashed, {event.running} "
                                 f"running, {event.left} waiting. {eta}", COLOURS["started"],
                                 [("elapsed", f"{event.elapsed_s / 60:.1f} min")])
        return None

    def _finished(self, event: SweepFinished) -> Message:
        counts = "\n".join(f"{s.lower()}: {n}" for s, n in event.counts.items() if n)
        verb = "interrupted" if event.interrupted else "stopped" if event.stopped else \
            "finished"
        fields = [("counts", counts or "no runs"), ("duration", f"{event.duration_s:.0f} s"),
                  ("directory", str(event.sweep_dir))]
        if event.stopped:
            fields.insert(0, ("stopped", event.stopped))
        files: dict[str, bytes] = {}
        description = ""
        if self.conf.metric:
            try:
                description, files = self._best(event.sweep_dir)
            except Exception as exc:  # a report problem must not lose the message
                description = f"(no {self.conf.metric} summary: {exc})"
        return build_message(self.conf.username, f"Sweep {event.sweep_name} {verb}",
                             description, COLOURS["finished"], fields, files)

    def _best(self, sweep_dir: Path) -> tuple[str, dict[str, bytes]]:
        """Top runs by the metric as a table, and a PNG of the metric over steps for them."""
        import tempfile

        from runner.results import plots
        from runner.results.aggregate import Group, collect
        from runner.storage.store import SweepStore

        metric, mode, k = self.conf.metric, self.conf.mode, self.conf.top_k
        results = [r for r in collect(SweepStore(sweep_dir), metric, "final", mode)
                   if r.value is not None]
        results.sort(key=lambda r: r.value, reverse=mode == "max")  # type: ignore[arg-type,return-value]
        top = results[:k]
        if not top:
            return f"no run has a value of {metric} yet", {}
        lines = [f"{'#':>2} {metric:>12}  run           values"]
        for i, r in enumerate(top, 1):
            values = ", ".join(f"{key}={v}" for key, v in r.values.items())
            lines.append(f"{i:>2} {r.value:>12.6g}  {r.id}  {values}")
        text = f"best {metric} ({mode}): **{top[0].value:.6g}** (run {top[0].id})\n```\n" + \
            "\n".join(lines) + "\n```"
        groups = [Group(tuple(r.values.items()), [r]) for r in top]
        varying = [key for key in dict.fromkeys(k for r in top for k in r.values)
                   if len({str(r.values.get(key)) for r in top}) > 1]
        labels = [", ".join(f"{key}={r.values.get(key)}" for key in varying) or r.id
                  for r in top]  # what tells the runs apart, not their ids
        with tempfile.TemporaryDirectory() as tmp:
            path = plots.curves(groups, metric, Path(tmp) / "top.png",
                                title=f"{metric}: top {len(top)} runs", labels=labels)
            png = path.read_bytes()
        return text, {f"top-{len(top)}.png": png}

    # ---------------------------------------------------------------- delivery

    def _deliver_all(self) -> None:
        while True:
            message = self.queue.get()
            try:
                if message is None:
                    return
                self._deliver(message)
            finally:
                self.queue.task_done()

    def _deliver(self, message: Message) -> None:
        delay = 0.5
        for attempt in range(self.conf.max_retries + 1):
            retry_after = self._post(message)
            if retry_after is None:
                self.delivered += 1
                return
            if retry_after < 0:
                break  # not worth retrying (4xx)
            if attempt < self.conf.max_retries:
                time.sleep(retry_after or delay)
                delay = min(delay * 2, 30.0)
        self.failed += 1

    def _post(self, message: Message) -> float | None:
        """None when delivered, seconds to wait before a retry, or -1 to give up."""
        url = self.url + ("&" if "?" in self.url else "?") + "wait=true"
        if message.files:
            body, ctype = encode_multipart(message)
        else:
            body, ctype = json.dumps(message.payload).encode(), "application/json"
        request = urllib.request.Request(url, data=body, method="POST",
                                         headers={"Content-Type": ctype,
                                                  "User-Agent": "runner (webhook notifier)"})
        try:
            with urllib.request.urlopen(request, timeout=self.conf.timeout_s):
                self.unreachable = None
                return None
        except urllib.error.HTTPError as exc:
            text = exc.read().decode("utf-8", "replace")
            if exc.code == 429:
                try:
                    wait = float(json.loads(text).get("retry_after", 1.0))
                except (ValueError, AttributeError):
                    wait = float(exc.headers.get("Retry-After", 1.0))
                log.warning("Discord rate limit (429): retrying in %.2f s", wait)
                return max(wait, 0.01)
            log.warning("Discord answered %s: %s", exc.code, redact(text[:300]))
            if exc.code >= 500:
                self.unreachable = f"Discord answered {exc.code}"
            return 0.0 if exc.code >= 500 else -1.0
        except (urllib.error.URLError, OSError) as exc:
            log.warning("Discord webhook unreachable: %s", redact(str(exc)))
            self.unreachable = redact(str(getattr(exc, "reason", exc)))[:120]
            return 0.0

    def close(self) -> None:
        """Give pending messages ``flush_timeout_s`` to go out, but only a few seconds while
        the webhook does not answer (the end of a sweep never waits on a dead Discord), then
        say what was not delivered."""
        start = time.monotonic()
        try:
            self.queue.put(None, timeout=0.05)
        except queue.Full:  # (the thread ends with the process: it is a daemon)
            pass
        while self.thread.is_alive():
            limit = UNREACHABLE_GRACE_S if self.unreachable else self.conf.flush_timeout_s
            left = start + min(limit, self.conf.flush_timeout_s) - time.monotonic()
            if left <= 0:
                break
            self.thread.join(min(left, 0.1))
        pending = sum(m is not None for m in list(self.queue.queue))
        pending += 1 if self.thread.is_alive() and self.queue.unfinished_tasks > pending else 0
        if self.thread.is_alive() or self.dropped or self.failed:
            why = f" (the webhook: {self.unreachable})" if self.unreachable else ""
            log.warning("Discord: %d message(s) delivered, %d not delivered%s: %d failed, %d "
                        "dropped (queue full), %d still pending at exit", self.delivered,
                        self.failed + self.dropped + pending, why, self.failed, self.dropped,
                        pending)
