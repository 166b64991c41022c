"""The plugins' config nodes in Hydra's ConfigStore, and the resolver of the default sweep
directory.

``hydra/launcher=runner`` selects a node packaged at ``hydra``: ``hydra.launcher`` holds the
settings below, and ``hydra.sweep.dir`` gets a default that is the same for the same command
(``multirun/<job name>-<fingerprint of the overrides>``) instead of the time of day, so running
the command again resumes the sweep. A ``hydra.sweep.dir`` of the app's own config or of the
command line still wins. Importing this module is cheap: Hydra imports it in every app.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional  # noqa: UP035 (OmegaConf reads these annotations)

from runner.storage.failures import MACHINE

RESOLVER = "runner_sweep_id"
DEFAULT_SWEEP_DIR = (f"multirun/${{hydra.job.name}}-${{{RESOLVER}:${{hydra.overrides.task}},"
                     "${hydra.job.config_name}}")
BACKENDS = {"local": "runner.launchers.local.LocalLauncher",
            "pinned": "runner.launchers.pinned.PinnedLauncher",
            "slurm": "runner.launchers.slurm.SlurmLauncher"}


@dataclass
class RunnerLauncherConf:
    """``hydra.launcher.*``. Unset (null) settings take the backend's own defaults
    (``conf/launcher/<backend>.yaml``); a setting the backend does not have is refused."""

    _target_: str = "hydra_plugins.runner_launcher.runner_launcher.RunnerLauncher"
    backend: str = "local"  # local, pinned (CPU/GPU slots) or slurm
    max_parallel: Optional[int] = None  # noqa: UP045
    timeout_min: Optional[float] = None  # noqa: UP045
    kill_grace_s: Optional[float] = None  # noqa: UP045
    # ranks per job (per node on slurm), started by torch's elastic launcher (torchrun's)
    nproc_per_run: Optional[int] = None  # noqa: UP045
    # pinned and slurm
    cpus_per_run: Optional[int] = None  # noqa: UP045
    gpus_per_run: Optional[int] = None  # noqa: UP045
    # pinned
    runs_per_gpu: Optional[int] = None  # noqa: UP045
    gpus: Optional[List[Any]] = None  # noqa: UP006,UP045
    cpus: Optional[List[int]] = None  # noqa: UP006,UP045
    threads_per_run: Optional[int] = None  # noqa: UP045
    # slurm
    mem_gb: Optional[float] = None  # noqa: UP045
    partition: Optional[str] = None  # noqa: UP045
    account: Optional[str] = None  # noqa: UP045
    qos: Optional[str] = None  # noqa: UP045
    constraint: Optional[str] = None  # noqa: UP045
    sbatch_extra: Optional[List[str]] = None  # noqa: UP006,UP045
    setup: Optional[List[str]] = None  # noqa: UP006,UP045
    python: Optional[str] = None  # noqa: UP045
    wait: Optional[bool] = None  # noqa: UP045
    poll_s: Optional[float] = None  # noqa: UP045
    max_requeue: Optional[int] = None  # noqa: UP045
    signal_delay_s: Optional[int] = None  # noqa: UP045
    job_name: Optional[str] = None  # noqa: UP045
    nodes: Optional[int] = None  # noqa: UP045 (a job's ranks on this many nodes)
    max_queued: Optional[int] = None  # noqa: UP045
    bad_node_after: Optional[int] = None  # noqa: UP045
    runs_per_job: Optional[int] = None  # noqa: UP045 (jobs packed into allocations: pools)
    # runner's own settings (conf/config.yaml's runner.*)
    retry_crashed: bool = False  # run CRASHED jobs again
    on_config_change: str = "warn"  # a frozen job's config differs from today's: warn or error
    on_code_change: str = "warn"  # the code changed: warn, error or rerun (COMPLETED jobs too)
    heartbeat_s: Optional[float] = None  # noqa: UP045
    stale_after_s: Optional[float] = None  # noqa: UP045
    progress: bool = True
    echo: bool = True  # the jobs' output on the terminal as it comes ([#num] when several run)
    secret_env: List[str] = field(default_factory=list)  # noqa: UP006
    metric: Optional[str] = None  # noqa: UP045 (the end of the sweep shows its best jobs by it)
    mode: Optional[str] = None  # noqa: UP045
    max_failures: Optional[int] = None  # noqa: UP045 (a failure budget, as runner.max_failures)
    failure_streak: Optional[int] = 20  # noqa: UP045
    max_failure_rate: Optional[float] = None  # noqa: UP045
    min_free_gb: Optional[float] = None  # noqa: UP045 (as runner.min_free_gb)
    retries: int = 0  # retry a crashed job up to this many times if its failure is of a class in
    retry_on: List[str] = field(default_factory=lambda: list(MACHINE))  # noqa: UP006
    notifier: Dict[str, Any] = field(default_factory=dict)  # noqa: UP006 (as runner's notifier)
    tracker: Dict[str, Any] = field(default_factory=dict)  # noqa: UP006 (as runner's tracker)


RUNNER_KEYS = ("retry_crashed", "on_config_change", "on_code_change", "heartbeat_s",
               "stale_after_s", "progress", "secret_env", "metric", "mode", "max_failures",
               "failure_streak", "max_failure_rate", "min_free_gb", "retries", "retry_on")


def sweep_id(overrides: Any, config_name: Any) -> str:
    """A fingerprint of a multirun command: its task overrides (in any order) and config."""
    items = sorted(str(o) for o in (overrides or []))
    return hashlib.sha1(json.dumps([str(config_name), items]).encode()).hexdigest()[:8]


def register() -> None:
    from hydra.core.config_store import ConfigStore
    from omegaconf import OmegaConf

    if not OmegaConf.has_resolver(RESOLVER):
        OmegaConf.register_new_resolver(RESOLVER, sweep_id)
    ConfigStore.instance().store(
        group="hydra/launcher", name="runner", package="hydra", provider="runner",
        node={"launcher": RunnerLauncherConf, "sweep": {"dir": DEFAULT_SWEEP_DIR}})


@dataclass
class RunnerSweeperConf:
    """``hydra.sweeper.*``: runner's sweep settings (conf/sweep/*.yaml's ``sweep.*``)."""

    _target_: str = "hydra_plugins.runner_sweeper.runner_sweeper.RunnerSweeper"
    kind: str = "grid"  # grid, random or list
    params: Dict[str, Any] = field(default_factory=dict)  # noqa: UP006 (key: sweep, as Hydra's)
    runs: List[Any] = field(default_factory=list)  # noqa: UP006 (kind=list: the settings)
    num_samples: int = 10  # kind=random
    seed: int = 0
    seeds: Any = None  # 3 (seeds 0, 1, 2) or [1, 5, 9]: every setting with each seed
    seed_key: str = "seed"
    filter: Optional[str] = None  # noqa: UP045 (e.g. "not (model == 'large' and lr > 0.05)")
    subset: Optional[int] = None  # noqa: UP045 (a random subset of this many jobs)
    subset_seed: int = 0
    max_batch_size: Optional[int] = None  # noqa: UP045 (jobs per launch; default: all)


def register_sweeper() -> None:
    from hydra.core.config_store import ConfigStore

    ConfigStore.instance().store(group="hydra/sweeper", name="runner", node=RunnerSweeperConf,
                                 provider="runner")


HYDRA_SWEEP_DIR = "multirun/${now:%Y-%m-%d}/${now:%H-%M-%S}"  # hydra/output=default's


def honour_output_choice(config: Any, config_loader: Any) -> None:
    """An app's ``hydra/output=<option>`` with a ``sweep.dir`` of its own: that folder, as
    under Hydra's launchers. Hydra composes the launcher's settings after the output's, so
    runner's default folder would hide it; set here, before the sweeper makes the folder (a
    ``hydra:`` node of the app or a command-line ``hydra.sweep.dir`` already won)."""
    from omegaconf import OmegaConf, read_write

    choice = (config.hydra.runtime.get("choices") or {}).get("hydra/output")
    node = config.hydra.sweep._get_node("dir")
    if choice in (None, "default") or node is None or node._value() != DEFAULT_SWEEP_DIR:
        return
    try:
        loaded = config_loader.repository.load_config(f"hydra/output/{choice}")
    except Exception:  # (an option the plain search path cannot see: runner's folder)
        return
    if loaded is None:
        return
    option = OmegaConf.to_container(loaded.config, resolve=False)
    if isinstance(option, dict) and isinstance(option.get("hydra"), dict):
        option = option["hydra"]  # (an option in the global package)
    wanted = ((option or {}).get("sweep") or {}).get("dir") if isinstance(option, dict) else None
    if isinstance(wanted, str) and wanted != HYDRA_SWEEP_DIR:
        with read_write(config.hydra):
            config.hydra.sweep.dir = wanted
