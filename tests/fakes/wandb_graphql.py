"""A local imitation of WandB's server, enough for the real ``wandb`` package (``wandb.Api()``,
its wandb-core service, ``wandb sync``): point it here with ``WANDB_BASE_URL``.

Reads: ``Viewer`` / ``GetDefaultEntity`` (the key check inside ``Api()``), ``Runs`` (WandB's
MongoDB-style run filters, order, paging by cursor), ``Run``, ``RunState``, ``RunHistoryKeys``,
history through ``sampledHistory`` (``SampledHistoryPage`` from ``scan_history``,
``RunSampledHistory`` from ``history``; rows without the asked keys left out and more rows than
``samples`` thinned, as WandB does) and ``parquetHistory`` (no exports: the live tail only).
Writes, as ``wandb sync`` sends them: ``UpsertBucket`` (a run created or updated),
``file_stream`` (history lines, summary, exit code), ``CreateRunFiles`` and the uploads.

Faults for tests: ``delay_s`` (every request answered that much later), ``failing`` (every
request answered 503). Every request is kept in ``queries``.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

ENTITY = "lab"


@dataclass
class FakeRun:
    entity: str
    project: str
    name: str  # WandB's run id
    display_name: str
    state: str = "running"
    config: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    created_at: str = "2026-01-01T00:00:00"
    heartbeat_at: str = "2026-01-01T00:01:00"
    group: str | None = None
    tags: list[str] = field(default_factory=list)
    files: dict[str, bytes] = field(default_factory=dict)

    def node(self) -> dict[str, Any]:
        keys = sorted({k for row in self.history for k in row})
        last = max((int(r.get("_step", -1)) for r in self.history), default=-1)
        return {"id": f"id-{self.name}", "tags": self.tags, "name": self.name,
                "displayName": self.display_name, "sweepName": None, "state": self.state,
                "config": json.dumps({k: {"value": v} for k, v in self.config.items()}),
                "group": self.group, "jobType": None, "commit": None, "readOnly": False,
                "createdAt": self.created_at, "heartbeatAt": self.heartbeat_at,
                "description": None, "notes": None, "systemMetrics": "{}",
                "summaryMetrics": json.dumps(self.summary), "historyLineCount": len(self.history),
                "user": {"name": "alice", "username": "alice"}, "projectId": 1,
                "historyKeys": {"lastStep": last, "keys": {k: {} for k in keys}}}

    def field(self, path: str) -> Any:
        """The value a filter or an order names: ``state``, ``display_name``,
        ``config.lr.value`` (or ``config.lr``), ``summary_metrics.loss``, ``createdAt``..."""
        head, _, rest = path.partition(".")
        if head == "config":
            rest = rest[:-len(".value")] if rest.endswith(".value") else rest
            return _dig(self.config, rest)
        if head in ("summary_metrics", "summaryMetrics"):
            return _dig(self.summary, rest)
        return {"state": self.state, "display_name": self.display_name,
                "displayName": self.display_name, "name": self.name, "group": self.group,
                "tags": self.tags, "created_at": self.created_at, "createdAt": self.created_at,
                "heartbeat_at": self.heartbeat_at, "heartbeatAt": self.heartbeat_at,
                "updatedAt": self.heartbeat_at}.get(path)


def _dig(tree: dict[str, Any], path: str) -> Any:
    if path in tree:
        return tree[path]
    node: Any = tree
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def run_node(name: str, state: str, summary: dict[str, Any], config: dict[str, Any]
             ) -> FakeRun:
    """A finished (or other) run of ``lab/mnist`` named ``name``."""
    return FakeRun(ENTITY, "mnist", f"run-{name}".replace("=", "-"), name, state, config,
                   summary)


OPS: dict[str, Callable[[Any, Any], bool]] = {
    "$eq": lambda a, b: a == b, "$ne": lambda a, b: a != b,
    "$gt": lambda a, b: a is not None and a > b, "$gte": lambda a, b: a is not None and a >= b,
    "$lt": lambda a, b: a is not None and a < b, "$lte": lambda a, b: a is not None and a <= b,
    "$in": lambda a, b: (any(x in b for x in a) if isinstance(a, list) else a in b),
    "$nin": lambda a, b: a not in b,
    "$regex": lambda a, b: isinstance(a, str) and re.search(b, a) is not None,
    "$exists": lambda a, b: (a is not None) == bool(b),
}


def matches(run: FakeRun, flt: Any) -> bool:
    """WandB's MongoDB-style run filters (the subset of operators above)."""
    if not flt:
        return True
    for key, want in flt.items():
        if key == "$and":
            ok = all(matches(run, f) for f in want)
        elif key == "$or":
            ok = any(matches(run, f) for f in want)
        elif key == "$not":
            ok = not matches(run, want)
        elif isinstance(want, dict) and want and all(k.startswith("$") for k in want):
            value = run.field(key)
            try:
                ok = all(OPS[op](value, arg) for op, arg in want.items())
            except TypeError:
                ok = False
        else:
            value = run.field(key)
            ok = (want in value) if isinstance(value, list) else value == want
        if not ok:
            return False
    return True


def thin(rows: list[dict[str, Any]], samples: int) -> list[dict[str, Any]]:
    """At most ``samples`` rows, evenly spaced, first and last kept (WandB's sampling)."""
    if samples <= 0 or len(rows) <= samples:
        return rows
    if samples == 1:
        return rows[-1:]
    picks = sorted({round(i * (len(rows) - 1) / (samples - 1)) for i in range(samples)})
    return [rows[i] for i in picks]


class FakeWandb:
    def __init__(self, runs: list[FakeRun] | None = None) -> None:
        self.runs: list[FakeRun] = list(runs or [])
        self.queries: list[dict[str, Any]] = []
        self.delay_s = 0.0
        self.failing = False
        self.lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def handle(self) -> None:
                try:
                    super().handle()
                except (BrokenPipeError, ConnectionResetError):
                    pass  # a client that hung up (wandb-core closing its connections)

            def _reply(self, status: int, payload: Any) -> None:
                body = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                try:
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up waiting (a test of a slow server)

            def _handle(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0) or 0))
                try:
                    query = json.loads(raw) if raw else {}
                except ValueError:
                    query = {"raw": raw[:200].decode(errors="replace")}
                with fake.lock:
                    fake.queries.append({"path": self.path, "method": self.command,
                                         "query": query,
                                         "auth": self.headers.get("Authorization", "")})
                if fake.delay_s:
                    time.sleep(fake.delay_s)
                if fake.failing:
                    self._reply(503, {"errors": [{"message": "service unavailable"}]})
                    return
                with fake.lock:
                    status, payload = fake.answer(self.command, self.path, query, raw)
                self._reply(status, payload)

            do_POST = do_GET = do_PUT = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    # ------------------------------------------------------------------ the store

    def find(self, entity: str, project: str, name: str) -> FakeRun | None:
        for run in self.runs:
            if (run.entity, run.project, run.name) == (entity, project, name):
                return run
        return None

    def of_project(self, entity: str, project: str) -> list[FakeRun]:
        return [r for r in self.runs if (r.entity, r.project) == (entity, project)]

    def operations(self, name: str) -> list[dict[str, Any]]:
        """The GraphQL requests of one operation (``Runs``, ``SampledHistoryPage``, ...)."""
        return [q for q in self.queries
                if re.search(rf"\b(query|mutation)\s+{name}\b", str(q["query"].get("query", "")))]

    # ------------------------------------------------------------------ requests

    def answer(self, method: str, path: str, query: dict[str, Any], raw: bytes
               ) -> tuple[int, Any]:
        stream = re.fullmatch(r"/files/([^/]+)/([^/]+)/([^/]+)/file_stream", path)
        if stream:
            return 200, self._file_stream(*stream.groups(), query)
        upload = re.fullmatch(r"/upload/([^/]+)/([^/]+)/([^/]+)/(.+)", path)
        if upload:
            run = self.find(*upload.groups()[:3])
            if run is not None:
                run.files[upload.group(4)] = raw
            return 200, {}
        if path.rstrip("/") != "/graphql":
            return 200, {}
        text = str(query.get("query", ""))
        var = query.get("variables") or {}
        match = re.search(r"\b(query|mutation)\s+(\w+)", text)
        op = match.group(2) if match else ""
        handler = getattr(self, f"_op_{op}", None)
        if handler is None:
            return 200, {"data": {}}
        return 200, {"data": handler(var)}

    def _run_of(self, var: dict[str, Any], key: str = "name") -> FakeRun | None:
        return self.find(var.get("entity") or ENTITY, var.get("project", ""),
                         var.get(key) or var.get("run") or var.get("runName") or "")

    def _op_Viewer(self, var: dict[str, Any]) -> Any:
        return {"viewer": {"id": "u1", "entity": ENTITY, "username": "alice", "email": None,
                           "flags": "{}", "teams": {"edges": []}}}

    def _op_GetDefaultEntity(self, var: dict[str, Any]) -> Any:
        return self._op_Viewer(var)

    def _op_Runs(self, var: dict[str, Any]) -> Any:
        flt = var.get("filters")
        flt = json.loads(flt) if isinstance(flt, str) else flt
        found = [r for r in self.of_project(var.get("entity") or ENTITY, var.get("project", ""))
                 if matches(r, flt)]
        order = var.get("order") or "+created_at"
        desc, key = order.startswith("-"), order.lstrip("+-")
        present = [r for r in found if r.field(key) is not None]
        present.sort(key=lambda r: (r.field(key), r.created_at), reverse=desc)
        found = present + [r for r in found if r.field(key) is None]
        start = int(var.get("cursor") or 0)
        per_page = int(var.get("perPage") or 50)
        page = found[start:start + per_page]
        more = start + per_page < len(found)
        return {"project": {"internalId": "1", "readOnly": False, "runCount": len(found),
                            "runs": {"edges": [{"node": r.node(), "cursor": str(start + i + 1)}
                                               for i, r in enumerate(page)],
                                     "pageInfo": {"endCursor": str(start + len(page)),
                                                  "hasNextPage": more}}}}

    def _op_Run(self, var: dict[str, Any]) -> Any:
        run = self._run_of(var)
        return {"project": {"run": run.node() if run else None}}

    def _op_RunState(self, var: dict[str, Any]) -> Any:
        run = self._run_of(var)
        return {"project": {"run": {"state": run.state} if run else None}}

    def _op_RunHistoryKeys(self, var: dict[str, Any]) -> Any:
        run = self._run_of(var)
        return {"project": {"run": {"historyKeys": run.node()["historyKeys"]} if run else None}}

    def _op_RunParquetHistory(self, var: dict[str, Any]) -> Any:
        return {"project": {"run": {"parquetHistory": {"parquetUrls": [], "liveData": []}}}}

    def _sampled(self, run: FakeRun | None, spec: dict[str, Any]) -> list[dict[str, Any]]:
        if run is None:
            return []
        keys = [k for k in spec.get("keys", []) if k != "_step"]
        lo, hi = spec.get("minStep", 0), spec.get("maxStep")
        rows = [{k: row[k] for k in ("_step", *keys) if k in row} for row in run.history
                if all(k in row for k in keys) and row.get("_step", 0) >= lo
                and (hi is None or row.get("_step", 0) <= hi)]
        return thin(rows, int(spec.get("samples", 500)))

    def _op_SampledHistoryPage(self, var: dict[str, Any]) -> Any:
        spec = json.loads(var["spec"])
        return {"project": {"run": {"sampledHistory": [self._sampled(self._run_of(var), spec)]}}}

    def _op_RunSampledHistory(self, var: dict[str, Any]) -> Any:
        run = self._run_of(var)
        return {"project": {"run": {"sampledHistory": [self._sampled(run, json.loads(s))
                                                       for s in var["specs"]]}}}

    def _op_UpsertBucket(self, var: dict[str, Any]) -> Any:
        entity, project, name = var.get("entity") or ENTITY, var["project"], var["name"]
        run = self.find(entity, project, name)
        inserted = run is None
        if run is None:
            run = FakeRun(entity, project, name, var.get("displayName") or name,
                          created_at=time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()))
            self.runs.append(run)
        if var.get("displayName"):
            run.display_name = var["displayName"]
        if var.get("groupName"):
            run.group = var["groupName"]
        if var.get("tags") is not None:
            run.tags = list(var["tags"])
        if var.get("config"):
            config = json.loads(var["config"])
            run.config.update({k: v.get("value") if isinstance(v, dict) else v
                               for k, v in config.items() if k != "_wandb"})
        run.heartbeat_at = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())
        return {"upsertBucket": {"bucket": {
            "id": f"id-{name}", "name": name, "displayName": run.display_name,
            "description": None, "config": json.dumps({}), "sweepName": None,
            "project": {"id": "p1", "name": project, "entity": {"id": "e1", "name": entity}},
            "historyLineCount": len(run.history)}, "inserted": inserted}}

    def _op_CreateRunFiles(self, var: dict[str, Any]) -> Any:
        base = f"{self.url}/upload/{var.get('entity') or ENTITY}/{var['project']}/{var['run']}"
        return {"createRunFiles": {"runID": f"id-{var['run']}", "uploadHeaders": [],
                                   "files": [{"name": f, "uploadUrl": f"{base}/{f}"}
                                             for f in var["files"]]}}

    def _file_stream(self, entity: str, project: str, name: str, body: dict[str, Any]
                     ) -> dict[str, Any]:
        run = self.find(entity, project, name)
        if run is None:
            return {}
        files = body.get("files") or {}
        for line in (files.get("wandb-history.jsonl") or {}).get("content", []):
            run.history.append(json.loads(line))
        for line in (files.get("wandb-summary.json") or {}).get("content", []):
            run.summary = {k: v for k, v in json.loads(line).items() if k != "_wandb"}
        if body.get("complete"):
            run.state = "finished" if not body.get("exitcode") else "failed"
        run.heartbeat_at = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())
        return {}

    def __enter__(self) -> FakeWandb:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
