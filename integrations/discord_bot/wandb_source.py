"""The bot's reads of WandB projects: runs, one run, a key's full history, names to complete.

One ``wandb.Api`` per bot, made with the host's key (``$WANDB_API_KEY`` or ``bot.wandb_key_env``;
never from chat, registered as a secret so no reply or log can echo it). Every query runs in a
worker thread under a deadline (``bot.wandb_timeout_s``): a slow or dead WandB ends in a clear
error, never in a blocked bot. Answers are cached briefly (``bot.wandb_cache_s``) and listing a
project is one paginated query for up to 100 runs (WandB's full run fragment, so summaries and
configs come in the same answer instead of one query per run). A key's history is read with
WandB's history scan, one key at a time, so a key logged every N steps is neither thinned out nor
dropped by the rows of another key.

WandB work is bounded: a query past its deadline stops at its next row or page (it checks the
deadline as it reads), so it never keeps holding a worker; a command's queries are capped per
user and per channel while they run (``bot.wandb_per_user``, ``bot.wandb_per_channel``; who asks
comes from ``CALLER``, which the transport sets around a command's work); and watches query in a
lane of their own, so a watch's health is judged by its own queries only.
"""

from __future__ import annotations

import contextvars
import json
import math
import os
import re
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from typing import Any, TypeVar

from runner.config.secrets import redact, register
from runner.errors import StateError
from runner.storage.metrics import flatten

T = TypeVar("T")
PAGE = 100  # runs per query: WandB's largest page
MAX_LIST = 500  # runs one listing reads at most
MAX_FILTER_CHARS = 2000
MAX_FILTER_DEPTH = 8
PROJECT = re.compile(r"[\w.-]+/[\w.-]+")
# runner's state names, as WandB spells them
STATE_NAMES = {"COMPLETED": ["finished"], "RUNNING": ["running"],
               "CRASHED": ["crashed", "failed"], "INTERRUPTED": ["killed", "preempted"]}
WANDB_STATES = ("running", "finished", "crashed", "failed", "killed", "preempted", "pending")


# (user id, channel id) of the command whose work runs in this context; None: the bot's own
CALLER: contextvars.ContextVar[tuple[int, int] | None] = contextvars.ContextVar(
    "wandb_caller", default=None)
_DEADLINE: contextvars.ContextVar[float] = contextvars.ContextVar("wandb_deadline",
                                                                  default=math.inf)
LANES = {"commands": 4, "watches": 2}  # worker threads of each lane


class _Expired(Exception):
    """The query's deadline passed: it stops where it is."""


def check_deadline() -> None:
    if time.monotonic() > _DEADLINE.get():
        raise _Expired()


def until_deadline(items: Iterable[T]) -> Iterator[T]:
    """``items`` (a paginated WandB iterator), stopping once the query's deadline passed."""
    for item in items:
        check_deadline()
        yield item


@dataclass(frozen=True)
class WRun:
    """A WandB run as plain data (safe to cache and to hand to threads)."""

    entity: str
    project: str
    id: str
    name: str
    state: str
    created_at: str
    heartbeat_at: str
    group: str | None = None
    tags: tuple[str, ...] = ()
    config: dict[str, Any] = field(default_factory=dict)  # flattened, a/b/c
    summary: dict[str, Any] = field(default_factory=dict)  # flattened, WandB's _keys left out
    last_step: int | None = None

    @property
    def path(self) -> str:
        return f"{self.entity}/{self.project}/{self.id}"

    @property
    def runtime_s(self) -> float | None:
        value = self.summary.get("_runtime")
        if isinstance(value, int | float):
            return float(value)
        try:
            start = time.mktime(time.strptime(self.created_at[:19], "%Y-%m-%dT%H:%M:%S"))
            end = time.mktime(time.strptime(self.heartbeat_at[:19], "%Y-%m-%dT%H:%M:%S"))
        except (TypeError, ValueError):
            return None
        return max(end - start, 0.0)

    def metrics(self) -> dict[str, Any]:
        return {k: v for k, v in self.summary.items() if not k.startswith("_")}


def _wrun(run: Any) -> WRun:
    """A public-API ``Run`` from a listing as plain data (nothing here queries again)."""
    attrs = getattr(run, "_attrs", {}) or {}
    try:
        last: int | None = int((attrs.get("historyKeys") or {})["lastStep"])
    except (TypeError, ValueError, KeyError):
        last = None
    config = {k: v for k, v in dict(run.config or {}).items()
              if not str(k).startswith("_") and k != "wandb_version"}
    summary = {k: v for k, v in dict(getattr(run, "summary_metrics", None) or {}).items()
               if k != "_wandb"}
    return WRun(run.entity, run.project, run.id, run.name or run.id, str(run.state),
                str(attrs.get("createdAt") or ""), str(attrs.get("heartbeatAt") or ""),
                attrs.get("group"), tuple(attrs.get("tags") or ()), flatten(config),
                flatten(summary), last)


def check_project(project: str) -> str:
    if not PROJECT.fullmatch(project or ""):
        raise StateError(f"'{project[:80]}' is not a WandB project; write it as entity/project")
    return project


def parse_filters(text: str | None) -> dict[str, Any] | None:
    """WandB's MongoDB-style run filters, as JSON from chat: data handed to WandB, bounded."""
    if not text or not text.strip():
        return None
    if len(text) > MAX_FILTER_CHARS:
        raise StateError(f"filters: is {len(text)} characters long; at most {MAX_FILTER_CHARS}")
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise StateError(f"filters: is not JSON ({exc.msg} at character {exc.pos}); e.g. "
                         '{"state": "finished", "config.lr.value": {"$gt": 0.01}}') from None
    if not isinstance(value, dict):
        raise StateError("filters: must be a JSON object, e.g. {\"state\": \"finished\"}")

    def depth(node: Any, level: int = 1) -> int:
        if isinstance(node, dict):
            return max([depth(v, level + 1) for v in node.values()], default=level)
        if isinstance(node, list):
            return max([depth(v, level + 1) for v in node], default=level)
        return level

    if depth(value) > MAX_FILTER_DEPTH:
        raise StateError(f"filters: nests deeper than {MAX_FILTER_DEPTH} levels")
    return value


class WandbSource:
    def __init__(self, key_env: str = "WANDB_API_KEY", timeout_s: float = 20.0,
                 cache_s: float = 30.0, clock: Callable[[], float] = time.monotonic,
                 per_user: int = 2, per_channel: int = 4) -> None:
        self.key_env = key_env
        self.timeout_s = timeout_s
        self.cache_s = cache_s
        self.clock = clock
        self.per_user, self.per_channel = per_user, per_channel
        self._api: Any = None
        self._lock = threading.Lock()
        self._cache: OrderedDict[tuple[Any, ...], tuple[float, Any]] = OrderedDict()
        self._pools = {lane: ThreadPoolExecutor(max_workers=n,
                                                thread_name_prefix=f"wandb-{lane}")
                       for lane, n in LANES.items()}
        self._busy: Counter[tuple[str, int]] = Counter()  # queries still running per user/channel
        self.running = 0  # queries holding a worker now (tests read it)

    # ------------------------------------------------------------------ plumbing

    def _key(self) -> str:
        key = os.environ.get(self.key_env)
        if not key:
            raise StateError(f"no WandB key on this host (${self.key_env} is not set); "
                             "keys are never taken from chat")
        register(key)  # never echoed, even in an error from the API
        return key

    def _make_api(self) -> Any:
        key = self._key()
        with self._lock:
            if self._api is None:
                import wandb

                self._api = wandb.Api(api_key=key, timeout=max(int(self.timeout_s), 1))
            return self._api

    def _take(self, who: tuple[int, int] | None) -> list[tuple[str, int]]:
        """Count a query against its user and channel; refused past their caps."""
        if who is None:
            return []
        slots = [("user", who[0]), ("channel", who[1])]
        with self._lock:
            if self._busy[slots[0]] >= self.per_user:
                raise StateError(f"you have {self.per_user} WandB queries still running "
                                 "(bot.wandb_per_user); wait for them to end")
            if self._busy[slots[1]] >= self.per_channel:
                raise StateError(f"this channel has {self.per_channel} WandB queries still "
                                 "running (bot.wandb_per_channel); wait for them to end")
            self._busy.update(slots)
        return slots

    def _give(self, slots: list[tuple[str, int]]) -> None:
        with self._lock:
            self._busy.subtract(slots)
            self._busy += Counter()  # (drops zeros)

    def call(self, what: str, fn: Callable[[Any], T], timeout_s: float | None = None,
             lane: str = "commands") -> T:
        """``fn(api)`` in a worker thread of ``lane``; WandB's errors and a missed deadline as
        one clear line (the key never in it). Past its deadline the query stops at its next
        row or page and frees its worker; its user's and channel's slots are taken until then.
        """
        self._key()
        deadline = self.timeout_s if timeout_s is None else timeout_s
        slots = self._take(CALLER.get())
        end = time.monotonic() + deadline

        def work() -> T:
            token = _DEADLINE.set(end)
            with self._lock:
                self.running += 1
            try:
                check_deadline()  # (waited in the queue past its deadline: never starts)
                return fn(self._make_api())
            finally:
                with self._lock:
                    self.running -= 1
                _DEADLINE.reset(token)

        try:
            future = self._pools[lane].submit(work)
        except BaseException:
            self._give(slots)
            raise
        future.add_done_callback(lambda _: self._give(slots))
        try:
            return future.result(timeout=deadline)
        except (FutureTimeout, _Expired):
            future.cancel()
            raise StateError(f"WandB did not answer {what} within {deadline:g} s; "
                             "try again later") from None
        except StateError:
            raise
        except Exception as exc:  # wandb's CommError, ValueError for a missing run, HTTP errors
            text = redact(str(exc)).strip().splitlines()
            msg = text[0][:200] if text else type(exc).__name__
            raise StateError(f"WandB could not answer {what}: {msg}") from None

    def cached(self, key: tuple[Any, ...], what: str, fn: Callable[[Any], T],
               timeout_s: float | None = None, lane: str = "commands") -> T:
        now = self.clock()
        with self._lock:
            hit = self._cache.get(key)
            if hit and now - hit[0] < self.cache_s:
                self._cache.move_to_end(key)
                return hit[1]
        value = self.call(what, fn, timeout_s, lane)
        with self._lock:
            self._cache[key] = (self.clock(), value)
            while len(self._cache) > 64:
                self._cache.popitem(last=False)
        return value

    # ------------------------------------------------------------------ queries

    def runs(self, project: str, filters: dict[str, Any] | None = None,
             order: str = "-created_at", top: int = 25, fresh: bool = False,
             timeout_s: float | None = None, what: str = "", lane: str = "commands"
             ) -> list[WRun]:
        """Runs of ``entity/project`` matching WandB's ``filters``, in WandB's ``order``, at
        most ``top`` (one query per 100)."""
        check_project(project)
        top = max(1, min(int(top), MAX_LIST))

        def query(api: Any) -> list[WRun]:
            found = api.runs(project, filters=filters or None, order=order,
                             per_page=min(top, PAGE), lazy=False)
            out = []
            for run in until_deadline(found):
                out.append(_wrun(run))
                if len(out) >= top:
                    break
            return out

        key = ("runs", project, json.dumps(filters, sort_keys=True), order, top)
        what = what or f"for the runs of {project}"
        if fresh:
            return self.call(what, query, timeout_s, lane)
        return self.cached(key, what, query, timeout_s, lane)

    def run(self, ref: str, project: str | None = None) -> WRun:
        """A run by ``entity/project/run_id``, or by id or display name within ``project``."""
        parts = ref.strip().split("/")
        if len(parts) == 3:
            project, ref = "/".join(parts[:2]), parts[2]
        elif len(parts) != 1 or not ref.strip():
            raise StateError(f"'{ref[:80]}' is not a WandB run; give entity/project/run_id, or "
                             "a run id or name with sweep:<entity/project>")
        if not project:
            raise StateError("give the run as entity/project/run_id, or sweep:<entity/project> "
                             "(or set bot.wandb_project)")
        check_project(project)
        by_name = self.runs(project, {"$or": [{"name": ref}, {"display_name": ref}]}, top=3,
                            what=f"for run {ref} of {project}")
        exact = [r for r in by_name if r.id == ref] or by_name
        if not exact:
            raise StateError(f"no run '{ref}' in WandB project {project}")
        if len({r.id for r in exact}) > 1:
            raise StateError(f"{len(exact)} runs of {project} are named '{ref}'; give the run "
                             f"id ({', '.join(r.id for r in exact)})")
        return exact[0]

    def history(self, run: WRun, key: str) -> tuple[list[float], list[float]]:
        """Every logged (step, value) of one key: WandB's full history scan, never sampled."""
        def query(api: Any) -> tuple[list[float], list[float]]:
            steps: list[float] = []
            values: list[float] = []
            handle = api.run(run.path)
            # wandb.log({"val": {"acc": x}}) is kept as "val.acc"; listings show it as val/acc
            for name in dict.fromkeys([key, key.replace("/", ".")]):
                for row in until_deadline(handle.scan_history(keys=[name], page_size=1000)):
                    value = row.get(name)
                    if isinstance(value, bool) or not isinstance(value, int | float):
                        continue
                    steps.append(float(row.get("_step", len(steps))))
                    values.append(float(value))
                if steps:
                    break
            return steps, values

        return self.cached(("history", run.path, key, run.heartbeat_at),
                           f"for the history of {key} in {run.path}", query)

    def close(self) -> None:
        for pool in self._pools.values():
            pool.shutdown(wait=False, cancel_futures=True)


def teardown_wandb(seconds: float = 20.0) -> None:
    """``wandb.teardown()`` (what WandB's own exit hook does), bounded: after a scan given up
    mid-page the service's connection may be gone, and WandB's teardown then waits for its
    service (wandb-core) to stop by itself, 10 minutes or more. After ``seconds`` the service
    is killed. Nothing happens in a process that never imported wandb."""
    import sys

    wandb = sys.modules.get("wandb")
    if wandb is None:
        return
    import psutil

    done = threading.Event()

    def teardown() -> None:
        try:
            wandb.teardown()
        except (Exception, SystemExit):  # (a killed service makes WandB call sys.exit here;
            pass                         # its end is all that is wanted)
        finally:
            done.set()

    threading.Thread(target=teardown, name="wandb-teardown", daemon=True).start()
    if not done.wait(seconds):
        for child in psutil.Process().children():
            if "wandb-core" in child.name():
                child.kill()
        done.wait(seconds)
