"""A fork server for runs: one process imports runner (and ``runner.preload``) once, then forks
one child per run on request and reports each child's pid and exit status.

Why not ``multiprocessing``'s fork server: each of its children re-runs the parent's
``__main__`` preparation and unpickles a Process object, and exit statuses arrive through one pipe
per child. Here a request is one JSON line and a fork, and the server reports exits itself as they
happen (SIGCHLD), so the launcher reuses a slot the moment a run ends.

Protocol (JSON lines over a socket pair): the launcher sends
``{"key": K, "args": [run_dir, token, heartbeat_s, cwd, env]}``; the server answers
``{"key": K, "pid": P}`` once forked and ``{"key": K, "code": C}`` when the child ended (negative:
killed by that signal). The server exits when the launcher closes the socket or dies, and its
children are SIGKILLed with it (PR_SET_PDEATHSIG), so a SIGKILLed runner leaves no orphans.
"""

from __future__ import annotations

import importlib
import json
import os
import select
import signal
import socket
import subprocess
import sys
import time
import traceback
from typing import Any

import runner
from runner.errors import LaunchError


class ForkServer:
    """The launcher's side: start the server, send requests, collect replies."""

    def __init__(self, preload: list[str], fork: bool = False) -> None:
        """``fork``: the server is a fork of this process instead of a fresh interpreter, so
        runs see everything this process holds (a task defined in ``__main__``, a closure,
        registered resolvers); call it before this process starts threads."""
        ours, theirs = socket.socketpair()
        self.sock = ours
        self._buffer = b""
        self.proc: subprocess.Popen[bytes] | _Forked
        if fork:
            self.proc = _Forked.serve(ours, theirs, preload)
            theirs.close()
            return
        # the server imports the same runner as this process, installed or not
        package_root = os.path.dirname(os.path.dirname(os.path.abspath(runner.__file__)))
        path = os.pathsep.join(p for p in (package_root, os.environ.get("PYTHONPATH")) if p)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "runner.launchers.forkserver", str(theirs.fileno()),
             json.dumps(preload), str(os.getpid())],
            pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL,
            env={**os.environ, "PYTHONPATH": path})
        theirs.close()

    def _died(self) -> LaunchError:
        try:
            code = self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            code = None
        if code is not None and code < 0:
            how = f"was killed by {signal.Signals(-code).name}"
        elif code is None:
            how = "stopped answering"
        else:
            how = f"exited with status {code} (its error, if any, is printed above)"
        return LaunchError(f"runner's fork server (pid {self.proc.pid}) {how}; the runs it "
                           "started ended with it and are found interrupted on resume "
                           "(launcher.start_method=spawn runs without a fork server)")

    def fileno(self) -> int:
        return self.sock.fileno()

    def start(self, key: str, args: list[Any]) -> None:
        try:
            self.sock.sendall(json.dumps({"key": key, "args": args}).encode() + b"\n")
        except OSError:
            raise self._died() from None

    def messages(self, timeout: float) -> list[dict[str, Any]]:
        """Replies that arrived within ``timeout`` seconds (at least one, unless it expired)."""
        ready, _, _ = select.select([self.sock], [], [], max(0.0, timeout))
        out = []
        while ready:
            try:
                chunk = self.sock.recv(65536)
            except OSError:
                chunk = b""
            if not chunk:
                raise self._died()
            self._buffer += chunk
            ready, _, _ = select.select([self.sock], [], [], 0)
        while b"\n" in self._buffer:
            line, self._buffer = self._buffer.split(b"\n", 1)
            out.append(json.loads(line))
        return out

    def close(self) -> None:
        self.sock.close()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class _Forked:
    """The fork-server process when it is a fork of the launcher's process."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None

    @classmethod
    def serve(cls, ours: socket.socket, theirs: socket.socket, preload: list[str]) -> _Forked:
        launcher = os.getpid()
        pid = os.fork()
        if pid:
            return cls(pid)
        code = 0
        try:
            ours.close()
            _serve(theirs.fileno(), preload, launcher)
        except (BrokenPipeError, ConnectionResetError):
            pass
        except BaseException:
            traceback.print_exc()
            code = 1
        finally:
            os._exit(code)

    def wait(self, timeout: float | None = None) -> int:
        end = None if timeout is None else time.monotonic() + timeout
        while self.returncode is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG if end is not None else 0)
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
            elif end is not None and time.monotonic() > end:
                raise subprocess.TimeoutExpired(str(self.pid), timeout or 0)
            else:
                time.sleep(0.01)
        return self.returncode

    def kill(self) -> None:
        try:
            os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


# ------------------------------------------------------------------ the server process

def _serve(fd: int, preload: list[str], launcher: int) -> None:
    from runner.execution import worker
    worker.die_with_parent(launcher)  # (the launcher's pid from before the server started)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the launcher's to handle
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # (a forked server: not the launcher's)
    for name in preload:
        try:
            importlib.import_module(name)
        except Exception as exc:  # a bad preload must not stop the sweep: runs import it again
            print(f"runner: could not preload '{name}': {exc}", file=sys.stderr, flush=True)
    sock = socket.socket(fileno=fd)
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    children: dict[int, str] = {}
    buffer = b""
    while True:
        try:
            ready, _, _ = select.select([sock.fileno(), wake_r], [], [])
        except InterruptedError:
            continue
        if wake_r in ready:
            os.read(wake_r, 4096)
        if sock.fileno() in ready:
            chunk = sock.recv(65536)
            if not chunk:
                return  # the launcher is gone: exit, and PDEATHSIG takes the runs with us
            buffer += chunk
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                request = json.loads(line)
                server = os.getpid()
                pid = os.fork()
                if pid == 0:
                    _child(sock, wake_r, wake_w, request["args"], server)
                children[pid] = request["key"]
                sock.sendall(json.dumps({"key": request["key"], "pid": pid}).encode() + b"\n")
        while children:
            pid, status = os.waitpid(-1, os.WNOHANG)
            if pid == 0:
                break
            key = children.pop(pid, None)
            if key is not None:
                code = os.waitstatus_to_exitcode(status)
                sock.sendall(json.dumps({"key": key, "code": code}).encode() + b"\n")


def _child(sock: socket.socket, wake_r: int, wake_w: int, args: list[Any], server: int
           ) -> None:
    """In the forked child: die with the server (first of all: it may be dying now), drop the
    server's plumbing, run the worker, never return."""
    from runner.execution import worker
    worker.die_with_parent(server)
    code = 1
    try:
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        sock.close()
        os.close(wake_r)
        os.close(wake_w)
        code = worker.child_main(*args)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:
        traceback.print_exc()
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


if __name__ == "__main__":
    try:
        _serve(int(sys.argv[1]), json.loads(sys.argv[2]), int(sys.argv[3]))
    except (BrokenPipeError, ConnectionResetError):  # the launcher died first: nothing to say
        sys.exit(0)
