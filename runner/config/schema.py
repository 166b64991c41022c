"""Schemas of runner's own config sections, and their validation.

Each dataclass is the single source of truth for its section: the YAML in ``conf/`` mirrors its
defaults (a test checks that), and ``validate()`` reports an unknown key with the list of valid ones
and a wrong type with the key and the expected type.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, TypeVar

from omegaconf import DictConfig, OmegaConf

from runner.errors import ConfigError
from runner.storage.failures import MACHINE


@dataclass
class RunnerConf:
    output_dir: str = "outputs"
    name: str | None = None
    dry_run: bool = False
    retry_crashed: bool = False
    debug: Any = None
    heartbeat_s: float = field(default=10.0, metadata={"min": 0.0})
    stale_after_s: float = field(default=120.0, metadata={"min": 0.0})
    preload: list[str] = field(default_factory=list)
    preload_trackers: bool = True
    on_config_change: str = field(default="warn", metadata={"choices": ("warn", "error")})
    # rerun: a COMPLETED run whose recorded code differs from this launch's runs again
    on_code_change: str = field(default="warn", metadata={"choices": ("warn", "error", "rerun")})
    progress: bool = True
    secret_env: list[str] = field(default_factory=list)
    metric: str | None = None  # the end of a sweep shows its best runs by this metric
    mode: str | None = field(default=None, metadata={"choices": (None, "max", "min")})
    # a failure budget: after this many crashed runs in one launch no new run starts (null: no
    # count), and after this many crashes in a row before any run completed (a broken node,
    # a full disk, a bad config: null, no limit); the next launch goes on where it stopped
    max_failures: int | None = field(default=None, metadata={"min": 1})
    failure_streak: int | None = field(default=20, metadata={"min": 1})
    # ... and once more than this share of the runs that ended in one launch crashed, judged
    # from the 10th ended run on (null: no rate)
    max_failure_rate: float | None = field(default=None, metadata={"min": 0.0, "max": 1.0})
    # bounded automatic retries of a crashed run, by the class of its failure
    # (runner.storage.failures: task, timeout, signal, oom, node); by default the machine's only
    retries: int = field(default=0, metadata={"min": 0})
    # below this much free space (GB) on the output folder's disk no new run starts: the sweep
    # ends saying so and the next launch goes on (null: no check)
    min_free_gb: float | None = field(default=None, metadata={"min": 0.0})
    retry_on: list[str] = field(default_factory=lambda: list(MACHINE))


# the sections that say how a sweep runs (not what its runs are): a resume, retrain-best or rerun
# may override them
LAUNCH_SECTIONS = ("runner", "launcher", "notifier", "tracker")


def split_launch_overrides(overrides: list[str]) -> tuple[list[str], list[str]]:
    """(overrides of the runs' config, overrides of the launch sections)."""
    run: list[str] = []
    launch: list[str] = []
    for text in overrides:
        top = text.lstrip("+~").split("=")[0].split(".")[0]
        (launch if top in LAUNCH_SECTIONS else run).append(text)
    return run, launch


# settings that belong to one invocation: never carried over to a later resume (a resume after
# launcher.wait=false is how one waits for the sweep again)
ONE_SHOT = {"dry_run": False, "debug": None, "retry_crashed": False}
LAUNCHER_ONE_SHOT = {"wait": True}


def without_one_shot(execution: dict[str, Any]) -> dict[str, Any]:
    launcher = dict(execution.get("launcher") or {})
    launcher.update({k: v for k, v in LAUNCHER_ONE_SHOT.items() if k in launcher})
    return {**execution, "runner": {**(execution.get("runner") or {}), **ONE_SHOT},
            "launcher": launcher}


@dataclass
class LauncherConf:
    """Settings every launcher understands (shared resource names)."""

    _target_: str = ""
    max_parallel: int | None = field(default=None, metadata={"min": 1})
    timeout_min: float | None = field(default=None, metadata={"min": 0.0})
    # processes (ranks) per run, started by torch's elastic launcher (runner.execution.ranks)
    nproc_per_run: int = field(default=1, metadata={"min": 1})


@dataclass
class LocalLauncherConf(LauncherConf):
    _target_: str = "runner.launchers.local.LocalLauncher"
    kill_grace_s: float = field(default=5.0, metadata={"min": 0})
    # fork: the fork server is forked from this process (tasks defined in ``__main__`` work)
    start_method: str = field(default="forkserver",
                              metadata={"choices": ("forkserver", "spawn", "fork")})


@dataclass
class PinnedLauncherConf(LocalLauncherConf):
    _target_: str = "runner.launchers.pinned.PinnedLauncher"
    cpus_per_run: int = field(default=1, metadata={"min": 0})
    gpus_per_run: int = field(default=0, metadata={"min": 0})
    runs_per_gpu: int = field(default=1, metadata={"min": 1})
    gpus: list[Any] | None = None
    cpus: list[int] | None = None
    threads_per_run: int | None = field(default=None, metadata={"min": 1})


@dataclass
class SlurmLauncherConf(LauncherConf):
    """``launcher=slurm``: one sbatch job array per submission; see conf/launcher/slurm.yaml."""

    _target_: str = "runner.launchers.slurm.SlurmLauncher"
    # a run's ranks on this many nodes (nproc_per_run on each; cpus/gpus/mem per node)
    nodes: int = field(default=1, metadata={"min": 1})
    cpus_per_run: int = field(default=1, metadata={"min": 1})
    gpus_per_run: int = field(default=0, metadata={"min": 0})
    mem_gb: float | None = field(default=None, metadata={"min": 0.0})
    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    constraint: str | None = None
    sbatch_extra: list[str] = field(default_factory=list)
    setup: list[str] = field(default_factory=list)
    python: str | None = None
    wait: bool = True
    poll_s: float = field(default=5.0, metadata={"min": 0.0})
    max_requeue: int = field(default=3, metadata={"min": 0})
    # at most this many of the sweep's runs queued or running at once (a QOS's MaxSubmitJobs);
    # more are submitted as runs end, one sbatch per poll at most
    max_queued: int | None = field(default=None, metadata={"min": 1})
    signal_delay_s: int = field(default=90, metadata={"min": 0})
    job_name: str | None = None
    # a node where this many of the sweep's runs in a row fail for the machine is left out of
    # later submissions (--exclude) and named in status; 0: never
    bad_node_after: int = field(default=3, metadata={"min": 0})
    # > 1: runs packed into allocations (pools) of this many runs each (runner.slurm.pool)
    runs_per_job: int = field(default=1, metadata={"min": 1})


@dataclass
class SweepConf:
    kind: str = "grid"
    params: dict[str, Any] = field(default_factory=dict)
    runs: list[Any] = field(default_factory=list)
    num_samples: int = field(default=10, metadata={"min": 1})
    seed: int = 0
    seeds: Any = None
    seed_key: str = "seed"
    filter: str | None = None
    subset: int | None = field(default=None, metadata={"min": 1})
    subset_seed: int = 0


@dataclass
class NotifierConf:
    _target_: str = ""
    events: list[str] = field(default_factory=lambda: ["all"])
    # a progress digest this often while a sweep runs
    digest_every_min: float | None = field(default=None, metadata={"min": 0.0})


SWEEP_KINDS = ("grid", "random", "list")
T = TypeVar("T")


def load_target(cfg: Any, where: str, base: type | None = None) -> tuple[Any, Any]:
    """The class named by ``cfg['_target_']`` and ``cfg`` validated by its ``config_class``.

    Launchers, notifiers and trackers are all built this way from their config sections.
    """
    group = where.split(".")[0]
    if not isinstance(cfg, dict) or not cfg.get("_target_"):
        raise ConfigError(f"{where} needs a _target_ (choose one in conf/{group}/)")
    target = str(cfg["_target_"])
    module, _, name = target.rpartition(".")
    from runner.execution.tasks import import_module

    try:
        cls = getattr(import_module(module), name)
    except (ImportError, AttributeError, ValueError):
        raise ConfigError(f"{where}._target_='{target}' is not importable (choose one in "
                          f"conf/{group}/)") from None
    if base is not None and not (isinstance(cls, type) and issubclass(cls, base)):
        raise ConfigError(f"{where}._target_='{target}' is not a runner {base.__name__}")
    return cls, validate(cfg, cls.config_class, where)


def field_names(schema: type) -> list[str]:
    return [f.name for f in dataclasses.fields(schema)]


def validate(node: Any, schema: type[T], where: str) -> T:
    """Check ``node`` (a DictConfig or dict) against ``schema``; return a schema instance.

    Args:
        node: the config section.
        schema: the dataclass describing it.
        where: the section's key in the full config, for messages (e.g. ``launcher``).
    """
    if node is None:
        node = {}
    if isinstance(node, DictConfig):
        node = OmegaConf.to_container(node, resolve=True)
    if not isinstance(node, dict):
        raise ConfigError(f"'{where}' must be a mapping, got {type(node).__name__}: {node!r}")
    valid = field_names(schema)
    unknown = sorted(set(node) - set(valid))
    if unknown:
        raise ConfigError(
            f"unknown key(s) {', '.join(f'{where}.{k}' for k in unknown)} for {schema.__name__}; "
            f"valid keys are: {', '.join(valid)}"
        )
    try:
        merged = OmegaConf.merge(OmegaConf.structured(schema), node)
        obj = OmegaConf.to_object(merged)
    except Exception as exc:
        key = getattr(exc, "full_key", "") or getattr(exc, "key", "")
        from runner.config.compose import one_line

        raise ConfigError(one_line(f"invalid value for '{where}.{key}': {exc}")) from None
    assert isinstance(obj, schema)
    for f in dataclasses.fields(schema):  # type: ignore[arg-type]
        low = f.metadata.get("min")
        value = getattr(obj, f.name)
        if low is not None and value is not None and (
                value < low or (isinstance(low, float) and value == low)):
            bound = f"> {low:g}" if isinstance(low, float) else f">= {low}"
            raise ConfigError(f"{where}.{f.name}={value} must be {bound}"
                              + (" (or null for the default)" if f.default is None else ""))
        high = f.metadata.get("max")
        if high is not None and value is not None and value > high:
            raise ConfigError(f"{where}.{f.name}={value} must be <= {high:g}")
        choices = f.metadata.get("choices")
        if choices and getattr(obj, f.name) not in choices:
            raise ConfigError(f"{where}.{f.name}='{getattr(obj, f.name)}' is not one of: "
                              f"{', '.join(choices)}")
    return obj
