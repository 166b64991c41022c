"""What ``hydra/launcher=runner`` does with one batch of a Hydra sweeper's jobs.

1. Compose every job's config as Hydra's basic launcher does (``load_sweep_config``), with the
   sweep directory the parent resolved pinned into it.
2. Freeze the jobs into runner's run store at ``hydra.sweep.dir``: one run per job (its id from
   its overrides, its ``hydra.job.num`` kept for good as the run's index), ``config.yaml`` the
   job's config and ``hydra.json`` its Hydra settings. A sweep directory that already holds them
   (the same command again) keeps them; a frozen job whose config differs from what the command
   composes now follows ``on_config_change`` (warn and keep the frozen one, or refuse).
3. Run the batch with runner's sweep loop and backend (local, pinned, slurm): FLAG files,
   leases, recovery, notifiers and trackers are runner's own. Each run process calls
   ``runner.hydra_plugin.job.run``, which runs the job with Hydra's ``run_job`` (``HydraConfig``,
   ``.hydra/``, job logging, ``chdir``, ``env_set``, ``on_job_*`` callbacks).
4. Return one ``JobReturn`` per job, read back from the run directory, so a job that completed
   in an earlier invocation returns its value without running again.
"""

from __future__ import annotations

import contextlib
import copy
import inspect
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.core.utils import JobReturn, JobStatus, configure_log, filter_overrides, setup_globals
from hydra.errors import CompactHydraException, HydraException
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf, open_dict

from runner.config import secrets
from runner.hydra_plugin import collector, job
from runner.hydra_plugin.compose import parse
from runner.hydra_plugin.config import BACKENDS, RUNNER_KEYS
from runner.hydra_plugin.job import JobFailed  # noqa: F401  (where it was first defined)
from runner.hydra_plugin.terminal import JobEcho
from runner.planning.run_id import run_dirname, run_id
from runner.planning.sweep import Plan, RunSpec, axes_of, override_key, plain

log = logging.getLogger(__name__)

ENTRY = "runner.hydra_plugin.job:run"


class SettingError(CompactHydraException):
    """A bad ``hydra.launcher.*`` setting: one line naming it as the user wrote it."""


def _as_written(message: str) -> str:
    """runner's names of the launcher's settings as a Hydra user writes them."""
    import re

    message = re.sub(r"(?<![\w.])launcher\.", "hydra.launcher.", message)
    return re.sub(r"(?<![\w.])runner\.(?=" + "|".join(RUNNER_KEYS) + r")", "hydra.launcher.",
                  message)


def execution_of(settings: dict[str, Any]) -> dict[str, Any]:
    """runner's execution sections from ``hydra.launcher.*`` (unset settings left out; lists
    and mappings as plain ones, so that ``sweep.json`` holds them as such, not as text)."""
    settings = {k: (OmegaConf.to_container(v, resolve=True) if OmegaConf.is_config(v) else v)
                for k, v in settings.items() if k not in ("_target_", "echo")}
    backend = str(settings.pop("backend", "local"))
    if backend not in BACKENDS:
        raise HydraException(f"hydra.launcher.backend={backend!r} is not one of "
                             f"{', '.join(BACKENDS)}")
    runner_section = {k: settings.pop(k) for k in RUNNER_KEYS if k in settings}
    notifier = settings.pop("notifier", None) or {}
    tracker = settings.pop("tracker", None) or {}
    launcher = {"_target_": BACKENDS[backend],
                **{k: v for k, v in settings.items() if v is not None}}
    if backend != "slurm":  # runs fork from this process: a task in __main__ works
        launcher.setdefault("start_method", "fork")
    if backend == "local" and launcher.get("max_parallel") is None and visible_gpus():
        # a script that ran one job at a time under Hydra's basic launcher had the GPU alone:
        # never one job per core on it unless asked
        launcher["max_parallel"] = 1
        log.info("runner: a GPU is visible and hydra.launcher.max_parallel is not set: one "
                 "job at a time (set it, or backend=pinned with gpus_per_run, to run more)")
    return {"runner": {k: v for k, v in runner_section.items() if v is not None},
            "launcher": launcher, "notifier": notifier, "tracker": tracker}


def visible_gpus() -> int:
    """How many NVIDIA GPUs this process may use (``CUDA_VISIBLE_DEVICES``, else the device
    files), without starting CUDA."""
    import glob
    import re

    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return len([d for d in visible.split(",") if d.strip() and d.strip() != "-1"])
    return len([p for p in glob.glob("/dev/nvidia*") if re.fullmatch(r"/dev/nvidia\d+", p)])


def values_of(overrides: Sequence[str]) -> dict[str, Any]:
    """A job's overrides as runner's values (``db=mysql model.lr=0.1`` -> two keys; a package
    override keeps its package: ``db@source=mysql`` and ``db@destination=mysql`` are two)."""
    values: dict[str, Any] = {}
    for override in parse(overrides):
        values[override_key(override)] = (None if override.is_delete()
                                          else plain(override.value()))
    return values


def distinct(values: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A job listed again in one batch (``db=mysql,postgresql,mysql``) runs again, as under
    Hydra's basic launcher: its k-th repeat gets ``repeat: k`` (stable from run to run)."""
    from runner.planning.run_id import canonical_values

    seen: dict[str, int] = {}
    out = []
    for v in values:
        canon = canonical_values(v)
        k = seen.get(canon, 0)
        seen[canon] = k + 1
        out.append({**v, "repeat": k} if k else v)
    return out


def task_reference(task_function: TaskFunction) -> dict[str, Any]:
    """How a fresh process finds the task function again (a SLURM node, a spawned worker)."""
    fn: Any = inspect.unwrap(task_function)
    if not inspect.isfunction(fn) and not inspect.isclass(fn):
        fn = type(fn)  # a callable object: its class (found by a fresh process if top level)
        qualname = f"{fn.__qualname__}.<instance>"
    else:
        qualname = fn.__qualname__
    try:
        path = inspect.getsourcefile(fn) or inspect.getfile(fn)
    except TypeError:
        path = None
    return {"module": fn.__module__, "qualname": qualname,
            "file": os.path.abspath(path) if path else None,
            "sys_path": [p for p in sys.path if p and os.path.isdir(p)][:8]}


def _compose(config: DictConfig, hydra_context: HydraContext, overrides: Sequence[str],
             sweep_dir: str) -> DictConfig:
    assert hydra_context.config_loader is not None
    cfg = hydra_context.config_loader.load_sweep_config(config, list(overrides))
    with open_dict(cfg):
        cfg.hydra.sweep.dir = sweep_dir  # as the parent resolved it, once for every job
    return cfg


def _numbers(runs: list[tuple[str, DictConfig]], known: dict[str, int | None],
             first: int) -> list[int]:
    """``hydra.job.num`` of each job: a frozen job keeps its own; a new one takes its place in
    this batch unless another job has that number, then the next free one."""
    taken = {n for n in known.values() if n is not None}
    nums = []
    for i, (rid, _) in enumerate(runs):
        num = known.get(rid)
        if num is None:
            num = first + i if first + i not in taken else max(taken) + 1
            taken.add(num)
        nums.append(num)
    return nums


def launch(settings: dict[str, Any], config: DictConfig, hydra_context: HydraContext,
           task_function: TaskFunction, job_overrides: Sequence[Sequence[str]],
           initial_job_idx: int) -> list[JobReturn]:
    """A batch of Hydra's jobs as runs of a runner sweep; their JobReturns (what the batch
    made is kept out of the garbage collector's sight until the next: ``collector``)."""
    ours = collector.launch_starts()
    try:
        return _launch(settings, config, hydra_context, task_function, job_overrides,
                       initial_job_idx)
    finally:
        collector.launch_ends(ours)


def _launch(settings: dict[str, Any], config: DictConfig, hydra_context: HydraContext,
            task_function: TaskFunction, job_overrides: Sequence[Sequence[str]],
            initial_job_idx: int) -> list[JobReturn]:
    from runner.scheduling.scheduler import check_execution

    setup_globals()
    configure_log(config.hydra.hydra_logging, config.hydra.verbose)
    from runner.errors import RunnerError

    try:
        execution = execution_of(dict(settings))
        check_execution(execution)
    except RunnerError as exc:
        raise SettingError(_as_written(str(exc))) from None
    secrets.add_env_names(execution["runner"].get("secret_env") or [])
    sweep_dir = Path(str(config.hydra.sweep.dir)).absolute()
    reference = task_reference(task_function)
    if execution["launcher"]["_target_"] == BACKENDS["slurm"] and "<" in str(
            reference["qualname"]):
        raise HydraException(f"hydra.launcher.backend=slurm runs jobs in fresh processes, which "
                             f"cannot find the task {reference['qualname']}: make it a function "
                             "at the top level of its module")
    log.info(f"runner: {len(job_overrides)} job(s) in {sweep_dir}")
    values = distinct([values_of(overrides) for overrides in job_overrides])
    # each job sees the sweep directory as the app gave it (relative stays relative, as under
    # Hydra's basic launcher), resolved once for all of them; runner's store uses it absolute
    as_given = str(config.hydra.sweep.dir)
    composed = [(run_id(v), _compose(config, hydra_context, overrides, as_given))
                for v, overrides in zip(values, job_overrides, strict=True)]
    seen: set[int] = set()
    for i, (rid, cfg) in enumerate(composed):  # a job listed twice: its own config object
        if id(cfg) in seen:
            composed[i] = (rid, copy.deepcopy(cfg))
        seen.add(id(composed[i][1]))
    from runner.storage.store import SweepStore

    store = SweepStore(sweep_dir)
    known: dict[str, int | None] = ({r["id"]: r.get("index") for r in store.manifest["runs"]}
                                    if store.exists() else {})
    nums = _numbers(composed, known, initial_job_idx)
    specs = []
    for (rid, cfg), overrides, job_values, num in zip(composed, job_overrides, values, nums,
                                                      strict=True):
        with open_dict(cfg):
            cfg.hydra.job.id = num
            cfg.hydra.job.num = num
        log.info(f"\t#{num} : {' '.join(filter_overrides(overrides))}")
        container = OmegaConf.to_container(cfg, resolve=False)
        assert isinstance(container, dict)
        task_cfg = {str(k): v for k, v in container.items()}
        hydra_node = task_cfg.pop("hydra")
        specs.append(RunSpec(rid, run_dirname(job_values), job_values, task_cfg, index=num,
                             files={job.HYDRA_FILE: json.dumps({"hydra": hydra_node},
                                                               default=str)}))
    store, new = _freeze(store, specs, config, execution, reference)
    frozen_as_composed = new | _check_frozen(store, [s for s in specs if s.id not in new],
                                             execution)
    job.STATE.update(task=task_function, context=hydra_context,
                     configs={rid: cfg for (rid, cfg) in composed if rid in frozen_as_composed})
    return _run(store, specs, execution, composed, echo=bool(settings.get("echo", True)))


def _freeze(store: Any, specs: list[RunSpec], config: DictConfig, execution: dict[str, Any],
            reference: dict[str, Any]) -> tuple[Any, set[str]]:
    """Freeze the jobs the sweep does not hold yet; (the store, the ids frozen now)."""
    from runner.storage.store import create_here

    if not store.exists():
        overrides = [str(o) for o in config.hydra.overrides.task]
        axes, varying = axes_of(s.values for s in specs)
        plan = Plan(
            name=store.root.name, kind="hydra", runs=specs, axes=axes, varying=varying,
            execution=execution, overrides=overrides, fingerprint="",
            entry=ENTRY,
            origin={"by": "hydra", "command": [sys.executable, *sys.argv],
                    "cwd": os.getcwd(), "task": reference,
                    "job_name": str(config.hydra.job.name),
                    "code_files": [reference["file"]] if reference["file"] else []})
        store, created = create_here(plan, store.root, str(config.hydra.job.config_name))
        if created:
            return store, {s.id for s in specs}
    listed = {r["id"] for r in store.manifest["runs"]}
    store.add_runs(specs)
    return store, {s.id for s in specs} - listed


def _check_frozen(store: Any, specs: list[RunSpec], execution: dict[str, Any]) -> set[str]:
    """The ids of the jobs whose frozen config is what the command composes now; the others
    keep their frozen config (warned), or nothing runs (``on_config_change=error``)."""
    from runner.config.configfile import config_changes, load_run_config

    refs = {r.id: r for r in store.runs()}
    same, changed = set(), []
    for spec in specs:
        try:
            frozen = load_run_config(refs[spec.id].paths)
        except Exception:
            continue
        diff = config_changes(frozen, spec.config)
        if diff:
            changed.append((spec, diff))
        else:
            same.add(spec.id)
    if changed:
        key, old, new = changed[0][1][0]
        message = (f"the config of {len(changed)} job(s) changed since {store.root} was frozen "
                   f"(e.g. job #{changed[0][0].index}: {key}: {old!r} -> {new!r}); they run "
                   "with their frozen config. A new sweep: hydra.sweep.dir=<another folder>")
        if execution["runner"].get("on_config_change") == "error":
            raise HydraException(message.replace("they run with", "nothing was launched; "
                                                 "they would run with")
                                 + " (hydra.launcher.on_config_change=error)")
        log.warning(message)
    return same


def _run(store: Any, specs: list[RunSpec], execution: dict[str, Any],
         composed: list[tuple[str, DictConfig]], echo: bool = True) -> list[JobReturn]:
    from runner.config.trust import check_trusted
    from runner.scheduling import launch as launching
    from runner.scheduling.scheduler import run_sweep

    console = secrets.console(stderr=True, highlight=False, soft_wrap=True)
    check_trusted(store.root)  # its files name the code that runs next
    store.update_execution(execution, launching.launch_code(store, execution, console))
    refs = {r.id: r for r in store.runs()}
    jobs = {refs[s.id].dir: int(s.index or 0) for s in specs}
    several = int(execution["launcher"].get("max_parallel") or os.cpu_count() or 1) > 1 \
        and len(specs) > 1
    with JobEcho(jobs, prefix=several) if echo else contextlib.nullcontext() as watch:
        result = run_sweep(store, execution, console, only={s.id for s in specs}, watch=watch)
    if result.interrupted:
        console.print(f"interrupted: the same command resumes {store.root}")
        raise KeyboardInterrupt
    returns = [job.job_return(refs[spec.id], cfg, result.detached)
               for spec, (_, cfg) in zip(specs, composed, strict=True)]
    if not result.detached:
        launching.print_best(store, execution, console, setting="hydra.launcher.metric")
    if not result.launched and not result.detached and not result.running_elsewhere:
        console.print(launching.nothing_ran(result.counts, "hydra.launcher.",
                                            "hydra.sweep.dir=<new folder>"))
    failed = sum(1 for r in returns if r.status is JobStatus.FAILED)
    for spec, ret in zip(specs, returns, strict=True):
        if ret.status is JobStatus.FAILED:  # where the app's own traceback is
            log.error(f"job #{spec.index} failed: its traceback is in "
                      f"{Path(refs[spec.id].dir) / 'stderr.log'}")
    log.info(f"runner: {len(returns) - failed} of {len(returns)} job(s) completed"
             + (f", {failed} failed" if failed else "")
             + f"; `python -m runner status {store.root}` shows them, the same command resumes")
    return returns
