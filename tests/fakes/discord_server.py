"""A local imitation of Discord's webhook endpoint on 127.0.0.1, for offline tests.

It records every POST (JSON or multipart ``payload_json`` + ``files[n]``) and answers like
Discord: 200 with the message JSON, or, when scripted, 429 with ``retry_after`` and a ``Via``
header (as Discord's edge sends), 5xx, or a slow answer.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Received:
    path: str
    payload: dict[str, Any]
    files: dict[str, bytes]
    time: float
    answered: int = 200


@dataclass
class FakeDiscord:
    """``with FakeDiscord() as fake: url = fake.webhook_url``; ``fake.script`` queues answers."""

    script: list[tuple[int, float]] = field(default_factory=list)  # (status, retry_after)
    delay_s: float = 0.0
    requests: list[Received] = field(default_factory=list)
    webhook_id: str = "112233445566778899"
    token: str = "tok-" + "x" * 64

    def __enter__(self) -> FakeDiscord:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # keep test output clean
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                payload, files = _parse(self.headers.get("Content-Type", ""), body)
                if fake.delay_s:
                    time.sleep(fake.delay_s)
                status, retry_after = fake.script.pop(0) if fake.script else (200, 0.0)
                fake.requests.append(Received(self.path, payload, files, time.time(), status))
                if status == 429:
                    data = {"message": "You are being rate limited.", "retry_after": retry_after,
                            "global": False}
                    self._answer(429, data, {"Via": "1.1 google", "Retry-After": "1"})
                elif status >= 400:
                    self._answer(status, {"message": "error", "code": 10015})
                else:
                    self._answer(200, {"id": str(len(fake.requests)), "content": ""})

            def _answer(self, status: int, data: dict[str, Any],
                        headers: dict[str, str] | None = None) -> None:
                raw = json.dumps(data).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(raw)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()

    @property
    def webhook_url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}/api/webhooks/{self.webhook_id}/{self.token}"

    def delivered(self) -> list[Received]:
        return [r for r in self.requests if r.answered == 200]


def _parse(content_type: str, body: bytes) -> tuple[dict[str, Any], dict[str, bytes]]:
    if content_type.startswith("application/json"):
        return json.loads(body), {}
    message = BytesParser(policy=HTTP).parsebytes(
        b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + body)
    payload: dict[str, Any] = {}
    files: dict[str, bytes] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        data = part.get_payload(decode=True)
        if name == "payload_json":
            payload = json.loads(data)
        else:
            files[part.get_filename()] = data
    return payload, files
