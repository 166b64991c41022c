"""A local imitation of Discord's REST API and gateway on 127.0.0.1 (aiohttp), for the bot.

A real discord.py client logs in (``/users/@me``, ``/oauth2/applications/@me``), connects to the
gateway (HELLO, heartbeat ACKs, IDENTIFY -> READY), syncs its slash commands, and then receives
``INTERACTION_CREATE`` events that the test pushes (``slash``, ``autocomplete``). Everything the
bot sends comes back in ``requests``; ``rate_limit_next`` answers 429s first (with the ``Via``
header Discord's edge sends, which is what makes discord.py retry them itself, or without it).
Tests patch ``discord.http.Route.BASE`` and ``DiscordWebSocket.DEFAULT_GATEWAY`` to point here.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from dataclasses import dataclass
from typing import Any

from aiohttp import web

APP_ID = "1000000000000000001"
GUILD_ID = "1400000000000000001"
BOT_USER = {"id": APP_ID, "username": "runner-bot", "discriminator": "0", "avatar": None,
            "bot": True}
_ids = itertools.count(1100000000000000001)


@dataclass
class Request:
    method: str
    path: str
    payload: Any
    files: list[dict[str, Any]]
    headers: dict[str, str]
    limited: bool = False  # answered 429 (not taken)


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    # exactly "application/json": with "; charset=utf-8" discord.py does not decode the body
    return web.Response(body=json.dumps(data).encode(), status=status,
                        headers={"Content-Type": "application/json", **(headers or {})})


def _message(channel_id: str, payload: dict[str, Any], files: list[dict[str, Any]],
             webhook_id: str | None = None) -> dict[str, Any]:
    message = {
        "id": str(next(_ids)), "channel_id": str(channel_id), "type": 0,
        "content": payload.get("content") or "", "author": BOT_USER, "mention_everyone": False,
        "mentions": [], "mention_roles": [], "pinned": False, "tts": False,
        "embeds": payload.get("embeds", []), "components": [], "flags": payload.get("flags", 0),
        "timestamp": "2026-01-01T00:00:00+00:00", "edited_timestamp": None,
        "attachments": [{"id": str(next(_ids)), "filename": f["filename"], "size": f["size"],
                         "url": "http://127.0.0.1/a/" + f["filename"],
                         "proxy_url": "http://127.0.0.1/a/" + f["filename"]} for f in files]}
    if webhook_id:
        message["webhook_id"] = webhook_id
    return message


def _option_type(value: Any) -> int:
    if isinstance(value, bool):
        return 5
    if isinstance(value, int):
        return 4
    if isinstance(value, float):
        return 10
    return 3


class FakeDiscordAPI:
    def __init__(self) -> None:
        self.requests: list[Request] = []
        self.rate_limit_next: dict[str, int] = {}  # path prefix -> 429s to answer first
        self.rate_limit_via = True
        self.retry_after = 0.2
        self.commands: list[dict[str, Any]] = []
        self.ws: web.WebSocketResponse | None = None
        self.seq = 0
        self.identified = asyncio.Event()
        self.app = web.Application()
        self.app.router.add_get("/gateway", self.gateway)
        self.app.router.add_route("*", "/api/v10/{tail:.*}", self.rest)

    async def start(self) -> FakeDiscordAPI:
        self.runner = web.AppRunner(self.app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.base = f"http://127.0.0.1:{self.port}"
        return self

    async def stop(self) -> None:
        if self.ws is not None:
            await self.ws.close()
        await self.runner.cleanup()

    # ------------------------------------------------------------------ REST

    async def _body(self, request: web.Request) -> tuple[Any, list[dict[str, Any]]]:
        payload, files = None, []
        if request.content_type == "multipart/form-data":
            async for part in await request.multipart():  # type: ignore[union-attr]
                data = await part.read()  # type: ignore[union-attr]
                if part.name == "payload_json":
                    payload = json.loads(data)
                else:
                    files.append({"field": part.name, "filename": part.filename,  # type: ignore[union-attr]
                                  "size": len(data), "data": bytes(data)})
        elif request.can_read_body:
            raw = await request.read()
            payload = json.loads(raw) if raw else None
        return payload, files

    async def rest(self, request: web.Request) -> web.Response:
        path = "/" + request.match_info["tail"]
        payload, files = await self._body(request)
        self.requests.append(Request(request.method, path, payload, files, dict(request.headers)))
        for prefix, left in self.rate_limit_next.items():
            if left and path.startswith(prefix):
                self.rate_limit_next[prefix] -= 1
                self.requests[-1].limited = True
                headers = {"Retry-After": str(self.retry_after), "X-RateLimit-Scope": "user",
                           "X-RateLimit-Bucket": "b1", "X-RateLimit-Limit": "1",
                           "X-RateLimit-Remaining": "0",
                           "X-RateLimit-Reset-After": str(self.retry_after)}
                if self.rate_limit_via:
                    headers["Via"] = "1.1 google"
                return _json({"message": "You are being rate limited.",
                              "retry_after": self.retry_after, "global": False}, 429, headers)
        parts, p = path.strip("/").split("/"), payload or {}
        if path == "/users/@me":
            return _json(BOT_USER)
        if path == "/oauth2/applications/@me":
            return _json({"id": APP_ID, "name": "runner", "description": "", "icon": None,
                          "bot_public": False, "bot_require_code_grant": False,
                          "verify_key": "00" * 32, "flags": 0,
                          "owner": {"id": "1300000000000000001", "username": "alice",
                                    "discriminator": "0", "avatar": None}})
        if parts[0] == "applications" and parts[-1] == "commands" and request.method == "PUT":
            self.commands = [dict(c, id=str(next(_ids)), application_id=APP_ID, version="1",
                                  type=c.get("type", 1), default_member_permissions=None)
                             for c in payload]
            return _json(self.commands)
        if parts[0] == "interactions" and parts[-1] == "callback":
            data = p.get("data") or {}
            inter = {"id": parts[1], "type": 2,
                     "response_message_loading": p.get("type") == 5,
                     "response_message_ephemeral": bool(data.get("flags", 0) & 64)}
            resource: dict[str, Any] = {"type": p.get("type")}
            if p.get("type") == 4:
                resource["message"] = _message("1200000000000000001", data, files)
                inter["response_message_id"] = resource["message"]["id"]
            return _json({"interaction": inter, "resource": resource})
        if parts[0] == "channels" and parts[-1] == "messages" and request.method == "POST":
            return _json(_message(parts[1], p, files))
        if parts[0] == "webhooks" and len(parts) == 3 and request.method == "POST":
            if request.query.get("wait") in ("true", "1"):
                return _json(_message("1200000000000000001", p, files, webhook_id=parts[1]))
            return web.Response(status=204)
        return _json({"message": f"Unknown route {request.method} {path}", "code": 0}, 404)

    # ------------------------------------------------------------------ gateway

    async def gateway(self, request: web.Request) -> web.WebSocketResponse:
        ws = self.ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.send_json({"op": 10, "d": {"heartbeat_interval": 41250}, "s": None, "t": None})
        async for msg in ws:
            op = json.loads(msg.data)["op"]
            if op == 1:
                await ws.send_json({"op": 11, "d": None, "s": None, "t": None})
            elif op == 2:
                await self.dispatch("READY", {
                    "v": 10, "user": BOT_USER, "guilds": [], "session_id": "s1",
                    "resume_gateway_url": f"ws://127.0.0.1:{self.port}/gateway",
                    "application": {"id": APP_ID, "flags": 0}})
                self.identified.set()
        return ws

    async def dispatch(self, event: str, data: dict[str, Any]) -> None:
        assert self.ws is not None, "the bot is not connected"
        self.seq += 1
        await self.ws.send_json({"op": 0, "t": event, "s": self.seq, "d": data})

    async def interaction(self, kind: int, name: str, options: dict[str, Any], user_id: int,
                          channel_id: int, roles: list[int], focused: str | None = None,
                          dm: bool = False) -> tuple[str, str]:
        iid = str(next(_ids))
        token = f"itok{iid}" + "x" * 48  # unique: follow-ups are told apart by token
        user = {"id": str(user_id), "username": f"user{user_id}", "discriminator": "0",
                "avatar": None}
        opts = [{"name": k, "type": _option_type(v), "value": v} for k, v in options.items()]
        for opt in opts:
            if opt["name"] == focused:
                opt["focused"] = True
                opt["type"] = 3
        data = {
            "id": iid, "application_id": APP_ID, "type": kind, "token": token, "version": 1,
            "guild_id": GUILD_ID, "channel_id": str(channel_id),
            "channel": {"id": str(channel_id), "type": 0, "guild_id": GUILD_ID,
                        "name": f"channel-{channel_id}", "position": 0, "flags": 0,
                        "permission_overwrites": [], "nsfw": False, "parent_id": None,
                        "topic": None, "last_message_id": None, "rate_limit_per_user": 0},
            "member": {"user": user, "roles": [str(r) for r in roles], "joined_at":
                       "2026-01-01T00:00:00+00:00", "deaf": False, "mute": False, "flags": 0,
                       "permissions": "0"},
            "data": {"id": str(next(_ids)), "name": name, "type": 1, "options": opts},
            "locale": "en-US", "app_permissions": "0", "entitlements": [], "context": 0,
            "authorizing_integration_owners": {"0": GUILD_ID}, "attachment_size_limit": 8388608}
        if dm:  # a direct message: no guild, no member, the user itself
            data.pop("guild_id")
            data.pop("member")
            data["user"] = user
            data["channel"] = {"id": str(channel_id), "type": 1, "recipients": [user]}
            data["context"] = 1
        await self.dispatch("INTERACTION_CREATE", data)
        return iid, token

    async def slash(self, name: str, user_id: int = 1300000000000000001,
                    channel_id: int = 1200000000000000001, roles: list[int] | None = None,
                    dm: bool = False, **options: Any) -> tuple[str, str]:
        return await self.interaction(2, name, options, user_id, channel_id, roles or [],
                                      dm=dm)

    async def autocomplete(self, name: str, focused: str, user_id: int = 1300000000000000001,
                           channel_id: int = 1200000000000000001, **options: Any
                           ) -> tuple[str, str]:
        return await self.interaction(4, name, options, user_id, channel_id, [], focused)

    async def wait_for(self, predicate: Any, timeout: float = 20.0) -> list[Request]:
        """The requests matching ``predicate``, once there is at least one."""
        for _ in range(int(timeout / 0.02)):
            hits = [r for r in self.requests if predicate(r)]
            if hits:
                return hits
            await asyncio.sleep(0.02)
        raise AssertionError("the bot sent no such request; it sent: "
                             + ", ".join(f"{r.method} {r.path}" for r in self.requests))
