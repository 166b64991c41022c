"""What a Hydra user sees of the jobs on the terminal: their prints and log lines as they come.

Each job runs in its own process with its output in its run's ``stdout.log`` and ``stderr.log``
(Hydra's job logging writes to stderr and to ``<job>.log``). ``JobEcho`` follows those files
while the batch runs and prints each new complete line to the launcher's terminal, stdout to
stdout and stderr to stderr, prefixed ``[#num]`` when more than one job runs at a time; a failed
job's traceback (the app's own frames) thus reaches the terminal.
"""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path
from typing import Any, TextIO

from runner.execution.worker import ATTEMPT_HEADER
from runner.storage.paths import RunPaths

HEADER = ATTEMPT_HEADER.encode()

POLL_S = 0.2
READ = 1 << 20  # bytes of one file read per poll
MAX_LINE = 4000  # characters of one echoed line (a progress bar without newlines is cut)


class JobEcho:
    """Echo the jobs' new output lines until ``stop``; ``jobs``: run dir -> job number.

    As the sweep loop's watch it follows only the files of the jobs running now (and reads a
    job's files once more when it ends), so a poll costs the same for 10 jobs as for 10,000;
    everything is read once more at the end."""

    def __init__(self, jobs: dict[str, int], prefix: bool,
                 out: TextIO | None = None, err: TextIO | None = None) -> None:
        self.prefix = prefix
        self.files_of: dict[str, list[tuple[Path, int, TextIO]]] = {}
        for run_dir, num in jobs.items():
            paths = RunPaths(Path(run_dir))
            self.files_of[str(paths.root)] = [(paths.stdout, num, out or sys.stdout),
                                              (paths.stderr, num, err or sys.stderr)]
        self.files = [f for files in self.files_of.values() for f in files]
        # only what this invocation adds: earlier attempts' output was shown back then
        self.offsets = {path: _size(path) for path, _, _ in self.files}
        self.partial: dict[Path, bytes] = {}
        self._live: dict[str, list[tuple[Path, int, TextIO]]] = {}
        self._ended: list[tuple[Path, int, TextIO]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="runner-job-echo", daemon=True)

    def __enter__(self) -> JobEcho:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join(5)
        self.poll(self.files, final=True)

    def started(self, run: Any) -> None:
        """(the sweep loop's watch) a job began to run: follow its files."""
        with self._lock:
            self._live[str(run.paths.root)] = self.files_of.get(str(run.paths.root), [])

    def ended(self, run: Any) -> None:
        """(the sweep loop's watch) a job's process ended: read its files one last time."""
        with self._lock:
            self._ended += self._live.pop(str(run.paths.root), [])

    def _run(self) -> None:
        while not self._stop.wait(POLL_S):
            with self._lock:
                live = [f for files in self._live.values() for f in files]
                ended, self._ended = self._ended, []
            self.poll(live)
            more = self.poll(ended, final=True)
            with self._lock:  # (more than a read's worth left: the rest next time)
                self._ended += more

    def poll(self, files: list[tuple[Path, int, TextIO]], final: bool = False
             ) -> list[tuple[Path, int, TextIO]]:
        """Echo what ``files`` gained; the files with more left than one read takes."""
        from runner.config.secrets import redact

        more = []
        for path, num, stream in files:
            grew = _size(path) > self.offsets.get(path, 0)  # (one stat: most files are quiet)
            if not grew and not (final and self.partial.get(path)):
                continue
            try:
                with open(path, "rb") as f:
                    f.seek(self.offsets.get(path, 0))
                    chunk = f.read(READ)
            except OSError:
                continue
            if len(chunk) == READ:
                more.append((path, num, stream))
            self.offsets[path] = self.offsets.get(path, 0) + len(chunk)
            data = self.partial.pop(path, b"") + chunk
            lines = data.split(b"\n")
            rest = lines.pop()  # an unfinished line waits for its end
            if final and rest:
                lines.append(rest)
            elif rest:
                self.partial[path] = rest
            for line in lines:
                if line.startswith(HEADER):  # runner's own line, not the job's
                    continue
                text = redact(line.decode("utf-8", "replace").rstrip("\r"))[:MAX_LINE]
                stream.write((f"[#{num}] {text}" if self.prefix else text) + "\n")
            stream.flush()
        return more


def _size(path: Path) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0
