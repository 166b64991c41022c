"""The sbatch script of one submission, rendered from the launcher config.

The script is saved in the submission's directory, so a user can read it or submit it again by
hand (``sbatch job.sbatch``): array task ``i`` runs the run at index ``i`` of ``tasks.json``, and
a run that is already COMPLETED is left alone. Paths are never put in ``#SBATCH`` lines (whose
quoting rules and ``%`` patterns differ from the shell's): the batch script sends its own output
to the submission's ``logs/`` by shell redirection, with every path quoted by ``shlex.quote``.
"""

from __future__ import annotations

import math
import shlex
from collections.abc import Mapping
from dataclasses import dataclass

from runner.config.schema import SlurmLauncherConf
from runner.errors import ConfigError
from runner.storage.paths import SubmissionPaths


@dataclass(frozen=True)
class ArraySpec:
    size: int
    max_parallel: int | None = None

    def __str__(self) -> str:
        cap = f"%{self.max_parallel}" if self.max_parallel else ""
        return f"0-{self.size - 1}{cap}"


def sbatch_options(conf: SlurmLauncherConf, job_name: str, array: ArraySpec) -> list[str]:
    """The ``#SBATCH`` options, shared resource names translated to SLURM's."""
    options = [f"--job-name={job_name}", f"--array={array}",
               "--output=/dev/null", f"--cpus-per-task={conf.cpus_per_run}"]
    if conf.nodes > 1:  # one task per node: each runs its node's ranks (runner.slurm.nodes)
        options += [f"--nodes={conf.nodes}", "--ntasks-per-node=1"]
    if conf.gpus_per_run:
        options.append(f"--gres=gpu:{conf.gpus_per_run}")
    if conf.mem_gb:
        options.append(f"--mem={math.ceil(conf.mem_gb * 1024)}M")
    if conf.timeout_min:
        minutes = math.ceil(conf.timeout_min)
        # the warning can come no earlier than half-way (a 1-minute test job gets it at 30 s)
        warn_s = max(1, min(conf.signal_delay_s, minutes * 30))
        options.append(f"--time={minutes}")
        options.append(f"--signal=B:USR1@{warn_s}")
    options.append("--requeue")
    return _checked(options + _site_options(conf) + _extra_options(conf))


def _site_options(conf: SlurmLauncherConf,
                  keys: tuple[str, ...] = ("partition", "account", "qos", "constraint")
                  ) -> list[str]:
    """``--partition=...`` and the like, for the keys that are set."""
    return [f"--{key}={getattr(conf, key)}" for key in keys if getattr(conf, key)]


def _extra_options(conf: SlurmLauncherConf) -> list[str]:
    """``launcher.sbatch_extra``, each with or without its ``#SBATCH``."""
    return [extra.strip().removeprefix("#SBATCH").strip() for extra in conf.sbatch_extra]


def _checked(options: list[str]) -> list[str]:
    for option in options:
        if "\n" in option or not option.startswith("-"):
            raise ConfigError(f"launcher.sbatch_extra: {option!r} is not an sbatch option "
                              "(one '--name=value' per entry)")
    return options


def _requeueing(what: str, var: str, command: list[str]) -> list[str]:
    """A job's last lines: ``command`` in the background, and a trap that requeues this array
    task (by ``<array>_<task>``: the task holding the array's own id would name every task)
    when SLURM warns that the time limit is near; the job waits for the command to end."""
    trap = (f"trap 'echo \"=== runner: the time limit is near: {what} requeues itself ===\"; "
            "scontrol requeue \"${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}\"' USR1")
    return [trap, " ".join([*command, "&"]), f"{var}=$!",
            f'wait "${var}"; code=$?',
            f'while kill -0 "${var}" 2>/dev/null; do wait "${var}"; code=$?; done  # (a trap ran)',
            'exit "$code"']


def render_script(conf: SlurmLauncherConf, *, job_name: str, array: ArraySpec,
                  paths: SubmissionPaths, cwd: str, python: str,
                  env: Mapping[str, str], heartbeat_s: float) -> str:
    q = shlex.quote
    lines = ["#!/bin/bash",
             f"# runner: job array {_comment(job_name)}; array task i runs entry i of "
             "tasks.json.",
             "# Submit again by hand with: sbatch job.sbatch (COMPLETED runs are skipped)"]
    lines += [f"#SBATCH {option}" for option in sbatch_options(conf, job_name, array)]
    lines += _prologue(conf, paths, '"$SLURM_ARRAY_TASK_ID".out',
                       "job ${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}", cwd, env)
    lines.append(" ".join([
        "exec", q(python), "-m", "runner.slurm.array_task", q(str(paths.tasks)),
        "--max-requeue", str(conf.max_requeue), "--heartbeat-s", f"{heartbeat_s:g}"]))
    return "\n".join(lines) + "\n"


def render_driver_script(conf: SlurmLauncherConf, *, job_name: str, paths: SubmissionPaths,
                         sweep_root: str, cwd: str, python: str,
                         env: Mapping[str, str]) -> str:
    """The job that carries on a sweep whose runner left (``launcher.wait=false``) while runs
    are still to come from its source (a study's next trials): runner's own sweep loop, with
    the same launcher (it submits the trials), on one CPU of the cluster. Warned that its time
    limit (the partition's) is near, it requeues itself: the loop, stopped by the requeue,
    leaves the trials running (SLURM's launcher detaches on an interrupt) and, restarted,
    re-attaches to them and goes on proposing."""
    q = shlex.quote
    options = [f"--job-name={job_name}", "--array=0-0", "--output=/dev/null",
               "--cpus-per-task=1", "--requeue", f"--signal=B:USR1@{conf.signal_delay_s}",
               *_site_options(conf, ("partition", "account", "qos"))]
    lines = ["#!/bin/bash",
             f"# runner: the sweep loop of {_comment(sweep_root)} (launcher.wait=false with "
             "trials still to propose); it submits them as slots free.",
             *[f"#SBATCH {option}" for option in options]]
    lines += _prologue(conf, paths, "driver.out", "sweep loop job ${SLURM_ARRAY_JOB_ID}", cwd,
                       env)
    lines += _requeueing("the sweep loop", "loop", [
        q(python), "-m", "runner", "resume", q(sweep_root), "launcher.wait=true",
        "runner.progress=false"])
    return "\n".join(lines) + "\n"


def render_pool_script(conf: SlurmLauncherConf, *, job_name: str, pools: int,
                       paths: SubmissionPaths, sweep_root: str, cwd: str, python: str,
                       env: Mapping[str, str]) -> str:
    """The job array of ``pools`` pools (``launcher.runs_per_job=K``): each task holds K runs'
    CPUs, GPUs and memory and runs runner's sweep loop on them (``runner.slurm.pool``), taking
    the next runnable run whenever a slot frees. Warned that its time limit is near, a pool
    requeues itself; its runs stop as on Ctrl-C (INTERRUPTED) and the requeued pool resumes
    them."""
    q = shlex.quote
    k = int(conf.runs_per_job)
    options = [f"--job-name={job_name}", f"--array=0-{pools - 1}", "--output=/dev/null",
               f"--cpus-per-task={k * conf.cpus_per_run}", "--requeue",
               f"--signal=B:USR1@{conf.signal_delay_s}"]
    if conf.gpus_per_run:
        options.append(f"--gres=gpu:{k * conf.gpus_per_run}")
    if conf.mem_gb:
        options.append(f"--mem={math.ceil(k * conf.mem_gb * 1024)}M")
    options = _checked(options + _site_options(conf) + _extra_options(conf))
    lines = ["#!/bin/bash",
             f"# runner: {pools} pool(s) of {_comment(sweep_root)}; each runs up to {k} of its "
             "runs at once, the next runnable one whenever a slot frees.",
             *[f"#SBATCH {option}" for option in options]]
    lines += _prologue(conf, paths, '"$SLURM_ARRAY_TASK_ID".out',
                       "pool ${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}", cwd, env)
    lines += _requeueing("the pool", "pool", [
        q(python), "-m", "runner.slurm.pool", q(sweep_root), "--slots", str(k)])
    return "\n".join(lines) + "\n"


def _prologue(conf: SlurmLauncherConf, paths: SubmissionPaths, log: str, job: str, cwd: str,
              env: Mapping[str, str]) -> list[str]:
    """A job's first lines: its output to ``logs/<log>`` (shell-quoted: never in #SBATCH
    lines), a banner, its directory, its environment, the launcher's setup lines."""
    q = shlex.quote
    return ["", f"mkdir -p {q(str(paths.logs))}", f"exec >>{q(str(paths.logs))}/{log} 2>&1",
            f'echo "=== runner: {job} on $(hostname) restart ${{SLURM_RESTART_COUNT:-0}} at '
            '$(date -Is) ==="', f"cd {q(cwd)}",
            *[f"export {key}={q(value)}" for key, value in sorted(env.items())],
            *conf.setup]


def job_name(base: str, submission_id: str) -> str:
    """A job name unique to one submission; it goes to squeue filters (``--name=a,b``), so
    commas, blanks and quotes become ``_``."""
    cleaned = "".join(c if c.isalnum() or c in "-_.+" else "_" for c in base)[:80]
    return f"{cleaned or 'runner'}.{submission_id}"


def _comment(text: str) -> str:
    return " ".join(text.split())
