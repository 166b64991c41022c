"""One Hydra job inside a runner run process, and its ``JobReturn`` read back by the parent.

The run process calls ``run`` instead of a ``task.fn``. Forked from the app's own process
(local and pinned backends) it finds the task function, the Hydra context and the composed
config in ``STATE``, as the app left them (a task in ``__main__``, a closure, registered
resolvers, typed structured configs all work). A fresh process (a SLURM node) rebuilds them: the
config from the run's ``config.yaml`` and ``hydra.json``, the task function from the reference
the sweep recorded (a script is loaded as ``__mp_main__``, as multiprocessing does, so its
``if __name__ == "__main__":`` block does not run again).

The job's outcome is kept in the run directory (``hydra_return.json``: status, return value or
exception, working directory), written before the run is recorded COMPLETED, so every later
invocation can hand Hydra the same ``JobReturn`` without running the job again. It is JSON,
never a pickle (``returns``): whoever can write a run folder cannot make a resume run code.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import sys
from pathlib import Path
from typing import Any

from hydra.core.utils import JobReturn, JobStatus, setup_globals
from hydra.core.utils import run_job as hydra_run_job
from hydra.errors import HydraException
from hydra.types import HydraContext
from omegaconf import DictConfig, OmegaConf, flag_override, open_dict

import runner
from runner.config.configfile import load_run_config
from runner.config.secrets import redact
from runner.execution.tracebacks import HEADER, frames_below
from runner.hydra_plugin import returns
from runner.hydra_plugin.copies import fast_copies
from runner.storage.atomic import write_json_atomic

HYDRA_FILE = "hydra.json"  # the job's Hydra node (JSON: a tenth of YAML's cost to write)
RETURN_FILE = "hydra_return.json"

class JobFailed(HydraException):
    """A job that ended without a result of its own (killed, out of memory, lost its node)."""


# what a run forked from the app's process inherits (set by launch() before the runs fork)
STATE: dict[str, Any] = {"task": None, "context": None, "configs": {}}


def run(_cfg: Any) -> Any:
    ctx = runner.current_run()
    config = STATE["configs"].get(ctx.run_id)
    if config is None:
        config = frozen_config(ctx.paths.root)
    task, context = STATE["task"], STATE["context"]
    if task is None:
        task = load_task(ctx.sweep_dir)
        from hydra._internal.callbacks import Callbacks

        context = HydraContext(config_loader=None, callbacks=Callbacks(config))  # type: ignore[arg-type]
        from hydra.core.utils import JobRuntime

        JobRuntime().set("name", str(config.hydra.job.name))  # (JobReturn.task_name, as Hydra)
    if ctx.rank:  # (a rank of a distributed job: rank 0 saves the job's .hydra/ and outcome)
        with open_dict(config):
            config.hydra.output_subdir = None
    setup_globals()
    with fast_copies(task) as job_task:
        ret = hydra_run_job(hydra_context=context, task_function=job_task, config=config,
                            job_dir_key="hydra.sweep.dir", job_subdir_key="hydra.sweep.subdir")
    if not ctx.rank:
        _keep(ctx.paths.root, ret, ctx.attempt)
    if ret.status is JobStatus.FAILED:
        raise ret._return_value
    return ret._return_value


def frozen_config(run_dir: Path) -> DictConfig:
    from hydra.conf import HydraConf

    from runner.storage.paths import RunPaths

    task_cfg = load_run_config(RunPaths(run_dir))
    hydra_cfg = json.loads((run_dir / HYDRA_FILE).read_text())
    cfg = OmegaConf.create(task_cfg)
    with open_dict(cfg):
        cfg.hydra = OmegaConf.structured(HydraConf)
        with open_dict(cfg.hydra):  # (Hydra's composed node holds more than HydraConf lists)
            cfg.merge_with(hydra_cfg)
    OmegaConf.set_struct(cfg, True)  # as Hydra composes it: a typo in the task is an error
    return cfg


def job_overrides(run_dir: Path) -> list[str]:
    """The job's own overrides, as Hydra listed them (``hydra.overrides.task``)."""
    node = json.loads((Path(run_dir) / HYDRA_FILE).read_text())["hydra"]
    return [str(o) for o in node["overrides"]["task"]]


def load_task(sweep_dir: Path) -> Any:
    """The task function, from the reference the sweep recorded when it was frozen."""
    from runner.storage.store import SweepStore

    ref = SweepStore(sweep_dir).manifest["origin"]["task"]
    for path in reversed(ref.get("sys_path") or []):
        if path not in sys.path:
            sys.path.insert(0, path)
    module_name, qualname = ref["module"], ref["qualname"]
    if module_name == "__main__":
        module = sys.modules.get("__mp_main__")
        if module is None:
            spec = importlib.util.spec_from_file_location("__mp_main__", ref["file"])
            if spec is None or spec.loader is None:
                raise runner.RunnerError(f"cannot load the app's script {ref['file']}")
            module = importlib.util.module_from_spec(spec)
            sys.modules["__mp_main__"] = module
            spec.loader.exec_module(module)
    else:
        module = importlib.import_module(module_name)
    obj: Any = module
    for part in qualname.split("."):
        obj = getattr(obj, part)
    while hasattr(obj, "__wrapped__"):  # the @hydra.main wrapper: the function it wraps
        obj = obj.__wrapped__
    return obj


def _keep(run_dir: Path, ret: JobReturn, attempt: int) -> None:
    """The job's outcome, for the JobReturn of this and every later invocation."""
    value = ret._return_value
    output_dir = OmegaConf.select(ret.hydra_cfg, "hydra.runtime.output_dir") \
        if ret.hydra_cfg is not None else None
    record = {"attempt": attempt, "status": ret.status.name, "value": returns.encode(value),
              "working_dir": ret.working_dir, "task_name": ret.task_name,
              "output_dir": output_dir}
    # not fsynced: the COMPLETED FLAG written next is; a power cut that loses this file leaves
    # the job its summary (job_return falls back to it). Private: a return value is user data.
    write_json_atomic(run_dir / RETURN_FILE, record, durable=False, private=True)


def run_job(exc: BaseException) -> None:
    """Named as Hydra's own: when Hydra reports a job's exception it leaves out the frames
    down to ``run_job``, so the report shows the job's failure, not the launcher's plumbing."""
    in_the_job(exc)


def in_the_job(exc: BaseException) -> None:
    """(The frame Hydra shows: the job's own traceback follows as the exception's note.)"""
    raise exc


def _app_frames(trace: str) -> str:
    """A job's traceback as Hydra shows a job's failure: the frames after Hydra's ``run_job``
    (the app's own) down to the first of OmegaConf's; the exception's own text, which the
    report shows already, left out. Unchanged when it has no ``run_job`` frame."""
    rest = frames_below(trace, "run_job")
    if rest is None:
        return trace
    frames = []
    for line in rest:
        if not line.startswith(" "):  # the exception's text
            break
        if line.strip().startswith("File ") and f"{os.sep}omegaconf{os.sep}" in line:
            break
        frames.append(line)
    return "\n".join([HEADER, *frames])


def _as_raised_in_job(exc: BaseException, run_dir: Path) -> BaseException:
    """The job's exception (read back from its run folder) as Hydra reports a job's own: its
    traceback in the job's process (the app's frames) as a note, and where its log is."""
    crash = run_dir / "CRASH.txt"
    try:
        text = crash.read_text()
        trace = text[text.index("Traceback"):].strip() if "Traceback" in text else ""
    except OSError:
        trace = ""
    if trace:
        exc.add_note(f"\nthe job's traceback (in its own process):\n{redact(_app_frames(trace))}")
    exc.add_note(f"its output: {run_dir / 'stderr.log'}")
    try:
        run_job(exc)
    except BaseException as raised:
        return raised
    return exc


def job_return(ref: Any, cfg: DictConfig, detached: bool) -> JobReturn:
    """The JobReturn of one job, from its run directory."""
    from runner.results.status import read_run

    task_cfg = OmegaConf.masked_copy(cfg, [str(k) for k in cfg if k != "hydra"])
    hydra_cfg = OmegaConf.create({})  # {"hydra": ...}, as run_job gives it: the composed
    with flag_override(hydra_cfg, "no_deepcopy_set_nodes", True):  # node itself, not a copy
        hydra_cfg["hydra"] = cfg._get_node("hydra")
    ret = JobReturn(overrides=[str(o) for o in cfg.hydra.overrides.task], cfg=task_cfg,
                    hydra_cfg=hydra_cfg)
    ret.task_name = str(cfg.hydra.job.name)
    path = Path(ref.dir) / RETURN_FILE
    row = read_run(ref)
    record = None
    if path.is_file():
        try:
            record = json.loads(path.read_text())
            record["value"] = returns.decode(record["value"])
        except Exception:  # (torn by hand, or not ours: the summary stands in)
            record = None
    ended = row.record.attempt if row.record is not None else None
    if record is not None and record.get("attempt") == ended and row.state in (
            "COMPLETED", "CRASHED"):
        ret.status = JobStatus[record["status"]]
        ret._return_value = record["value"]
        if ret.status is JobStatus.FAILED and isinstance(ret._return_value, BaseException):
            ret._return_value = _as_raised_in_job(ret._return_value, Path(ref.dir))
        ret.working_dir = record["working_dir"]
        if record.get("output_dir"):
            with open_dict(hydra_cfg):
                hydra_cfg.hydra.runtime.output_dir = record["output_dir"]
        return ret
    if row.state == "COMPLETED":  # (completed without its record: a job of an older runner)
        ret.status, ret._return_value = JobStatus.COMPLETED, row.summary
    elif detached and row.state in ("RUNNING", "UNHATCHED"):
        ret.status, ret._return_value = JobStatus.COMPLETED, None  # handed to the cluster
    else:
        ret.status = JobStatus.FAILED
        ret._return_value = JobFailed(f"job #{cfg.hydra.job.num} ({' '.join(ret.overrides or [])}) "
                                      f"ended {row.state}: {row.reason or 'no reason recorded'}; "
                                      f"its run directory: {ref.dir}")
    ret.working_dir = os.getcwd()
    return ret
