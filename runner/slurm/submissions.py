"""Submission records: which runs went to SLURM in which ``sbatch`` call, under which job.

A submission is written in this order, each step atomic, so a runner killed at any point leaves
something ``resume`` can make sense of:

1. the runs are claimed (RUNNING leases that name the submission and their array index);
2. ``tasks.json``, ``job.sbatch`` and ``submission.json`` (job name, no job id yet) are written;
3. ``sbatch`` is called; 4. the job id goes into ``submission.json`` and into each lease.

Killed between 3 and 4, the job is found again by its unique name (``resolve_job_id``); killed
before 3, nothing by that name ever reaches SLURM, and once ``NEVER_SUBMITTED_S`` have passed the
leases are found interrupted.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from runner.storage.atomic import write_json_atomic
from runner.storage.paths import SubmissionPaths, SweepPaths

NEVER_SUBMITTED_S = 60.0


@dataclass
class Submission:
    id: str
    job_name: str
    created: float
    runs: int
    job_id: str | None = None
    error: str | None = None

    @staticmethod
    def new_id() -> str:
        return time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]


def paths_of(sweep_root: Path | str, submission_id: str) -> SubmissionPaths:
    return SweepPaths(Path(sweep_root)).submission(submission_id)


def write(paths: SubmissionPaths, submission: Submission) -> None:
    write_json_atomic(paths.record, asdict(submission))


def read(paths: SubmissionPaths) -> Submission | None:
    try:
        data = json.loads(paths.record.read_text())
        return Submission(**data)
    except (OSError, ValueError, TypeError):
        return None


def write_tasks(paths: SubmissionPaths, tasks: list[tuple[str, str]], meta: dict[str, Any]) -> None:
    write_json_atomic(paths.tasks, {**meta, "runs": [[d, t] for d, t in tasks]})


def read_tasks(path: Path) -> dict[str, Any]:
    data = json.loads(path.read_text())
    if not isinstance(data, dict) or not isinstance(data.get("runs"), list):
        raise ValueError(f"{path} is not a runner tasks file")
    return data


def all_submissions(sweep_root: Path | str) -> list[Submission]:
    root = SweepPaths(Path(sweep_root)).slurm
    if not root.is_dir():
        return []
    found = [read(SubmissionPaths(p)) for p in sorted(root.iterdir()) if p.is_dir()]
    return [s for s in found if s is not None]


def job_names(sweep_root: Path | str, prefix: str = "") -> list[str]:
    """The SLURM job names of the sweep's submissions (those whose id starts with ``prefix``),
    to ask squeue about them in one call."""
    return [s.job_name for s in all_submissions(sweep_root) if s.id.startswith(prefix)]
