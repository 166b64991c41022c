"""The one owner of file names in sweep and run directories.

No other module builds these paths by hand, so the on-disk layout is defined here and only here::

    <sweep_dir>/
        sweep.json            manifest, frozen at expansion (runs, values, fingerprint, provenance)
        sweep.added.jsonl     runs added since sweep.json was last written (a study's trials, a
                              Hydra sweeper's batches, extend): a line per addition, appended
        git.diff              uncommitted changes of the user's repository at expansion
        code/                 each launch's code version: <id>.diff, environment-<id>.json
        runs/<run dir>/
            config.yaml       the run's resolved config (frozen)
            values.json       the run's swept values
            UNHATCHED | RUNNING | COMPLETED | CRASH.txt | INTERRUPTED     FLAG files (state.py)
            stdout.log, stderr.log
            metrics.jsonl, progress.csv
            checkpoints/      the task's own checkpoints, found again on resume
            attempts/         FLAG files of earlier attempts
        slurm/<submission>/   one sbatch submission (launcher=slurm)
            job.sbatch        the rendered script (``sbatch job.sbatch`` submits it again)
            tasks.json        array index -> run directory and lease token
            submission.json   job name, job id once sbatch answered
            logs/<index>.out  the batch script's own output (the worker logs into the run dir)
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from runner.errors import ConfigError

FLAG_UNHATCHED = "UNHATCHED"
FLAG_RUNNING = "RUNNING"
FLAG_COMPLETED = "COMPLETED"
FLAG_CRASH = "CRASH.txt"
FLAG_INTERRUPTED = "INTERRUPTED"
FLAG_PRUNED = "PRUNED"  # a study's pruner stopped the trial early: final, never retried
FLAG_NAMES = (FLAG_UNHATCHED, FLAG_RUNNING, FLAG_COMPLETED, FLAG_CRASH, FLAG_INTERRUPTED,
              FLAG_PRUNED)


MAX_NAME = 200
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def check_component(value: str, key: str) -> str:
    """``value`` if it is one plain path component; else a ConfigError naming ``key``.

    Every name runner turns into a directory under ``runner.output_dir`` passes through here, so
    no ``runner.name`` or ``task.name`` (from the command line or from chat) can point elsewhere.
    """
    why = None
    if not value:
        why = "it is empty"
    elif "/" in value or "\\" in value:
        why = "it contains a path separator"
    elif value in (".", ".."):
        why = "it is '.' or '..'"
    elif value.startswith("."):
        why = "names starting with '.' are runner's own (hidden) folders"
    elif _CONTROL.search(value):
        why = "it contains a control character"
    elif len(value.encode()) > MAX_NAME:
        why = f"it is longer than {MAX_NAME} bytes"
    if why:
        raise ConfigError(f"{key}={value!r} cannot name a directory: {why} (a sweep's folder "
                          "is one plain name under runner.output_dir)")
    return value


@dataclass(frozen=True)
class RunPaths:
    """Every file name inside one run directory."""

    root: Path

    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    @property
    def values(self) -> Path:
        return self.root / "values.json"

    @property
    def lock(self) -> Path:
        return self.root / ".lock"

    @property
    def stdout(self) -> Path:
        return self.root / "stdout.log"

    @property
    def stderr(self) -> Path:
        return self.root / "stderr.log"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.jsonl"

    @property
    def progress(self) -> Path:
        return self.root / "progress.csv"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def attempts(self) -> Path:
        return self.root / "attempts"

    @property
    def cleaned(self) -> Path:
        """What ``clean --runs`` removed of this run's outputs, and when."""
        return self.root / "cleaned.json"

    def flag(self, name: str) -> Path:
        assert name in FLAG_NAMES, name
        return self.root / name


@dataclass(frozen=True)
class SweepPaths:
    """Every file name at the top of a sweep directory."""

    root: Path

    @property
    def manifest(self) -> Path:
        return self.root / "sweep.json"

    @property
    def added(self) -> Path:
        """The manifest's runs added since ``sweep.json`` was last written, one line per
        addition (``runner.storage.store``): appending a trial costs the trial, not the study;
        the next rewrite of ``sweep.json`` takes them in."""
        return self.root / "sweep.added.jsonl"

    @property
    def manifest_lock(self) -> Path:
        """flock'ed while the manifest is read, changed and rewritten (concurrent launches)."""
        return self.root / ".manifest.lock"

    @property
    def annotations(self) -> Path:
        """The sweep's and its runs' tags and notes (``runner.storage.annotations``)."""
        return self.root / "annotations.json"

    @property
    def annotations_lock(self) -> Path:
        return self.root / ".annotations.lock"

    @property
    def git_diff(self) -> Path:
        return self.root / "git.diff"

    @property
    def code(self) -> Path:
        """Each code version a launch ran: ``<id>.diff``, ``environment-<id>.json``."""
        return self.root / "code"

    def code_diff(self, code_id: str) -> Path:
        return self.code / f"{code_id}.diff"

    def environment(self, env_id: str) -> Path:
        return self.code / f"environment-{env_id}.json"

    @property
    def runs(self) -> Path:
        return self.root / "runs"

    @property
    def reopened(self) -> Path:
        """Rewritten (a new token) before any ended run of the sweep is claimed again: a reader
        that keeps ended runs' states (``runner.results.status.LiveScan``) knows from this one
        file whether it must read them again."""
        return self.root / ".reopened"

    @property
    def status_cache(self) -> Path:
        """Parsed FLAGs of settled runs, a file per block of runs: a cache, never the source of
        truth (``runner.results.status.FlagCache``)."""
        return self.root / ".status-cache"

    @property
    def slurm(self) -> Path:
        return self.root / "slurm"

    def run(self, dirname: str) -> RunPaths:
        return RunPaths(self.runs / dirname)

    def submission(self, submission_id: str) -> SubmissionPaths:
        return SubmissionPaths(self.slurm / submission_id)


@dataclass(frozen=True)
class SubmissionPaths:
    """Every file name of one SLURM submission (one ``sbatch`` call: one job array)."""

    root: Path

    @property
    def script(self) -> Path:
        return self.root / "job.sbatch"

    @property
    def tasks(self) -> Path:
        return self.root / "tasks.json"

    @property
    def record(self) -> Path:
        return self.root / "submission.json"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    def log(self, index: int | str) -> Path:
        return self.logs / f"{index}.out"
