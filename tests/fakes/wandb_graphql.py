"""A local imitation of the WandB GraphQL endpoint, enough for ``wandb.Api().runs(path)``:
``Viewer`` / ``GetDefaultEntity`` (the key check inside ``Api()``) and ``Runs``. Point the real
wandb package at it with ``WANDB_BASE_URL``; every query is kept in ``queries``."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def run_node(name: str, state: str, summary: dict[str, Any], config: dict[str, Any]
             ) -> dict[str, Any]:
    return {"id": f"run-{name}", "tags": [], "name": name.replace("=", "-"),
            "displayName": name, "sweepName": None, "state": state,
            "config": json.dumps({k: {"value": v} for k, v in config.items()}), "group": None,
            "jobType": None, "commit": None, "readOnly": False,
            "createdAt": "2026-01-01T00:00:00", "heartbeatAt": "2026-01-01T00:01:00",
            "description": None, "notes": None, "systemMetrics": "{}",
            "summaryMetrics": json.dumps(summary), "historyLineCount": 10,
            "user": {"name": "alice", "username": "alice"}, "historyKeys": {}}


class FakeWandb:
    def __init__(self, runs: list[dict[str, Any]]) -> None:
        self.runs = runs
        self.queries: list[dict[str, Any]] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                try:
                    query = json.loads(raw)
                except ValueError:
                    query = {}
                fake.queries.append({"path": self.path, "query": query,
                                     "auth": self.headers.get("Authorization", "")})
                text = str(query.get("query", ""))
                data: dict[str, Any] = {}
                if "query Runs" in text:
                    data = {"project": {"internalId": "p1", "readOnly": False,
                                        "runCount": len(fake.runs),
                                        "runs": {"edges": [{"node": r, "cursor": r["id"]}
                                                           for r in fake.runs],
                                                 "pageInfo": {"endCursor": None,
                                                              "hasNextPage": False}}}}
                elif "viewer" in text:
                    data = {"viewer": {"id": "u1", "entity": "lab", "username": "alice",
                                       "flags": "{}", "teams": {"edges": []}}}
                body = json.dumps({"data": data}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> FakeWandb:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
