"""A launcher for the kill-around-fork tests (``test_orphans.py``): a real fork server whose runs'
bodies only mark their start and end, killed at chosen moments around each fork.

``python fork_race_launcher.py server MARKS TRIES SEED [fork|exec] [SPREAD_S]``: one launcher,
TRIES fork servers in turn; each gets one run request and is SIGKILLed 0-SPREAD_S later (3 ms
by default: before, during or after its fork; a fresh interpreter's server first forks one
warm-up run, so that it is up); the kill times go to MARKS/kills.json.

``python fork_race_launcher.py launcher MARKS KEY [fork|exec]``: one fork server and one run
request, then "sent" on stdout; the test SIGKILLs this process (the runner) at a moment of its
choosing.

A body writes ``<key>-start-<pid>`` holding the monotonic clock at its start, sleeps 1 s and
writes ``<key>-end-<pid>``: a body that starts after its supervisor's kill, or ends at all, ran
as an orphan.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sys
import time
from pathlib import Path
from typing import Any


def mark(name: str) -> None:
    """A marker holding the monotonic clock, renamed into place (never seen half-written)."""
    marks = Path(os.environ["RACE_MARKS"])
    tmp = marks / f".{name}"
    tmp.write_text(repr(time.monotonic()))
    os.rename(tmp, marks / name)


def body(paths: Any, token: str, heartbeat_s: float = 0.0, **_: Any) -> int:
    key = Path(paths.root).name
    mark(f"{key}-start-{os.getpid()}")
    time.sleep(1.0)
    mark(f"{key}-end-{os.getpid()}")
    return 0


def install() -> None:
    """Runs' bodies become ``body`` (what ``child_main`` calls last): in this process, and in
    a fork server started as a fresh interpreter, which preloads this module."""
    from runner.execution import worker
    worker.execute = body  # type: ignore[assignment]


if os.environ.get("RACE_MARKS") and __name__ != "__main__":
    install()


def main() -> None:
    mode, marks = sys.argv[1], Path(sys.argv[2])
    how = sys.argv[5] if mode == "server" and len(sys.argv) > 5 else \
        sys.argv[4] if mode == "launcher" and len(sys.argv) > 4 else "fork"
    os.environ["RACE_MARKS"] = str(marks)
    from runner.launchers.forkserver import ForkServer

    install()
    runs = marks / "runs"

    def new_server() -> ForkServer:  # a fork of this process, or a fresh interpreter
        return ForkServer(["fork_race_launcher"], fork=how == "fork")

    def request(server: ForkServer, key: str) -> None:
        (runs / key).mkdir(parents=True, exist_ok=True)
        server.start(key, [str(runs / key), "token", 1.0, "", {}])

    if mode == "server":
        tries, rng = int(sys.argv[3]), random.Random(int(sys.argv[4]))
        # how long after the request the kill may come: a forked server's child starts its
        # body within a few ms, a fresh interpreter's (under load) can take tens of ms
        spread = float(sys.argv[6]) if len(sys.argv) > 6 else 0.003
        kills = {}
        for i in range(tries):
            server = new_server()
            if how == "exec":  # up and forking before the request the kill is timed against
                request(server, f"w{i}")
                while not any("pid" in m for m in server.messages(10)):
                    pass
            request(server, f"s{i}")
            # a forked server: half the kills within the spread, half within ten times it, so
            # that under a load that slows every fork (a loaded CI machine) some bodies still
            # start before their kill (a CI run had none of 300 start within 3 ms)
            wider = rng.choice((1, 10)) if how == "fork" else 1
            end = time.monotonic() + rng.uniform(0, spread * wider)
            while time.monotonic() < end:
                pass
            os.kill(server.proc.pid, signal.SIGKILL)
            kills[f"s{i}"] = time.monotonic()
            server.proc.wait()
            server.sock.close()
        (marks / "kills.json").write_text(json.dumps(kills))
        return
    server = new_server()
    request(server, sys.argv[3])
    print("sent", flush=True)
    time.sleep(30)


if __name__ == "__main__":
    main()
