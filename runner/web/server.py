"""``python -m runner serve``: a local, read-only web app over the run store (Starlette served by
uvicorn; figures by plotly.js, shipped inside the plotly package: no internet needed).

Only GET requests exist, and none writes: the pages poll the JSON API every few seconds, so a
run that starts, logs or ends shows up without a reload. The server binds 127.0.0.1 by default
and then answers only requests addressed to that host (a web page elsewhere cannot reach it by
DNS rebinding); bound to any other address it asks for a token, given once in the printed
address (it is then kept in a same-site cookie). Every response forbids framing and scripts from
elsewhere (a Content-Security-Policy of 'self').
"""

from __future__ import annotations

import hmac
import ipaddress
import secrets as token_source
import socket
from pathlib import Path
from typing import Any

from runner.errors import RunnerError, StateError
from runner.web.data import Catalog, dumps

STATIC = Path(__file__).parent / "static"
PAGES = {"app.js": "text/javascript", "app.css": "text/css"}
COOKIE = "runner_token"
CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
       "img-src 'self' data: blob:; connect-src 'self'; frame-ancestors 'none'; "
       "base-uri 'none'; form-action 'none'")


def plotly_js() -> Path:
    import plotly

    path = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
    if not path.is_file():
        raise RunnerError("plotly's plotly.min.js is missing: reinstall plotly "
                          "(pip install -e '.[web]')")
    return path


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def create_app(roots: list[Path], token: str | None = None, host: str = "127.0.0.1") -> Any:
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.requests import Request
    from starlette.responses import FileResponse, PlainTextResponse, Response
    from starlette.routing import Route

    catalog = Catalog(roots)
    plotly_path = plotly_js()
    loopback = is_loopback(host)

    def allowed(request: Request) -> Response | None:
        if loopback:
            sent = (request.headers.get("host") or "").rsplit(":", 1)[0].strip("[]")
            if sent not in ("127.0.0.1", "localhost", "::1", host):
                return PlainTextResponse("this server answers only to its own address", 421)
        if token is not None:
            given = request.query_params.get("token") or request.cookies.get(COOKIE) or ""
            bearer = request.headers.get("authorization", "")
            if bearer.startswith("Bearer "):
                given = bearer[7:]
            if not hmac.compare_digest(given.encode(), token.encode()):
                return PlainTextResponse("a token is needed: open the address the server "
                                         "printed", 401)
        return None

    def secured(response: Response, request: Request) -> Response:
        response.headers["Content-Security-Policy"] = CSP
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers["Cache-Control"] = "no-store"
        if token is not None and request.query_params.get("token"):
            response.set_cookie(COOKIE, token, httponly=True, samesite="strict")
        return response

    def page(handler: Any) -> Any:
        async def endpoint(request: Request) -> Response:
            refused = allowed(request)
            if refused is not None:
                return secured(refused, request)
            try:
                response = await handler(request)
            except (StateError, RunnerError) as exc:
                response = Response(dumps({"error": str(exc)}), 404,
                                    media_type="application/json")
            except (OSError, ValueError) as exc:
                response = Response(dumps({"error": f"{type(exc).__name__}: {exc}"}), 500,
                                    media_type="application/json")
            return secured(response, request)
        return endpoint

    def as_json(obj: Any) -> Response:
        return Response(dumps(obj), media_type="application/json")

    def number(request: Request, key: str, default: int) -> int:
        try:
            return max(0, int(request.query_params.get(key, default)))
        except ValueError:
            return default

    async def index(request: Request) -> Response:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    async def static(request: Request) -> Response:
        name = request.path_params["name"]
        if name == "plotly.min.js":
            return FileResponse(plotly_path, media_type="text/javascript")
        if name not in PAGES:
            return PlainTextResponse("not found", 404)
        return FileResponse(STATIC / name, media_type=PAGES[name])

    async def in_thread(fn: Any, *args: Any) -> Response:
        """The store is read off the event loop: one slow page never holds up the others."""
        return as_json(await run_in_threadpool(fn, *args))

    async def sweeps(request: Request) -> Response:
        return await in_thread(lambda: {"roots": [str(r) for r in roots],
                                        "sweeps": catalog.sweeps()})

    async def runs(request: Request) -> Response:
        q = request.query_params
        return await in_thread(
            catalog.runs_page, request.path_params["sweep"], number(request, "offset", 0),
            number(request, "limit", 50), q.get("state", ""), q.get("q", ""),
            q.get("sort", ""), q.get("order", "asc"))

    async def run(request: Request) -> Response:
        return await in_thread(catalog.run, request.path_params["sweep"],
                               request.path_params["run"])

    async def series(request: Request) -> Response:
        return await in_thread(catalog.series, request.path_params["sweep"],
                               request.path_params["run"], request.query_params.get("metric", ""))

    async def curves(request: Request) -> Response:
        return await in_thread(catalog.curves, request.path_params["sweep"],
                               request.query_params.get("metric", ""))

    async def search(request: Request) -> Response:
        return await in_thread(catalog.search, request.path_params["sweep"],
                               request.query_params.get("metric", ""))

    async def compare(request: Request) -> Response:
        names = [n for n in request.query_params.get("sweeps", "").split(",") if n]
        return await in_thread(catalog.compare, names, request.query_params.get("metric", ""))

    routes = [Route("/", page(index)), Route("/static/{name}", page(static)),
              Route("/api/sweeps", page(sweeps)),
              Route("/api/sweeps/{sweep}/runs", page(runs)),
              Route("/api/sweeps/{sweep}/runs/{run}", page(run)),
              Route("/api/sweeps/{sweep}/runs/{run}/series", page(series)),
              Route("/api/sweeps/{sweep}/curves", page(curves)),
              Route("/api/sweeps/{sweep}/search", page(search)),
              Route("/api/compare", page(compare))]
    return Starlette(routes=routes)


def serve(roots: list[Path], host: str = "127.0.0.1", port: int = 8765,
          announce: Any = print) -> None:
    """Serve until interrupted; ``announce`` gets the address to open (with its token)."""
    import uvicorn

    token = None if is_loopback(host) else token_source.token_urlsafe(24)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(128)  # connections wait from now on, until the app takes them
    except OSError as exc:
        sock.close()
        raise RunnerError(f"cannot listen on {host}:{port}: {exc.strerror} (--port picks "
                          "another; 0: any free one)") from None
    bound = sock.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    announce(f"serving {', '.join(map(str, roots))} at http://{shown}:{bound}/"
             + (f"?token={token}" if token else "") + " (read-only; Ctrl-C stops)")
    app = create_app(roots, token, host)
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
    uvicorn.Server(config).run(sockets=[sock])
