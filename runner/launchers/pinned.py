"""Pinned local launcher: every run gets its own CPU cores and GPU(s).

Slots are built once per sweep from the machine's topology (hyperthread siblings stay together)
and the visible GPUs: a slot is ``cpus_per_run`` logical CPUs plus ``gpus_per_run`` GPUs, and with
``runs_per_gpu=k`` k slots share each GPU. A run is pinned to its slot's CPUs
(``sched_setaffinity``), sees only its GPUs (``CUDA_VISIBLE_DEVICES``) and has its thread pools
capped to its cores (``OMP_NUM_THREADS``, ``MKL_NUM_THREADS``, ...; torch too) unless the
variable is already set in the runner's environment. A slot is handed to the next run the moment
its run exits. The slot a run got is recorded in its RUNNING lease and shown by ``status``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runner.config.schema import PinnedLauncherConf
from runner.errors import ConfigError
from runner.launchers.base import RunHandle
from runner.launchers.local import LocalLauncher

if TYPE_CHECKING:
    from collections.abc import Sequence

    from runner.storage.store import RunRef, SweepStore

THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                    "NUMEXPR_NUM_THREADS", "VECLIB_MAXIMUM_THREADS")
_SYS_CPU = Path("/sys/devices/system/cpu")


@dataclass(frozen=True)
class Slot:
    index: int
    cpus: tuple[int, ...]
    gpus: tuple[str, ...]

    def describe(self) -> dict[str, Any]:
        return {"slot": self.index, "cpus": list(self.cpus), "gpus": list(self.gpus)}


def _parse_cpu_list(text: str) -> list[int]:
    """'0-3,8,10-11' -> [0, 1, 2, 3, 8, 10, 11] (the kernel's list format)."""
    out: list[int] = []
    for part in text.strip().split(","):
        if "-" in part:
            lo, hi = part.split("-")
            out.extend(range(int(lo), int(hi) + 1))
        elif part:
            out.append(int(part))
    return out


def physical_cores(allowed: Sequence[int], sys_cpu: Path = _SYS_CPU) -> list[tuple[int, ...]]:
    """Logical CPUs grouped by physical core (hyperthread siblings together), allowed ones only."""
    seen: set[int] = set()
    cores = []
    for cpu in sorted(allowed):
        if cpu in seen:
            continue
        try:
            siblings = _parse_cpu_list(
                (sys_cpu / f"cpu{cpu}" / "topology" / "thread_siblings_list").read_text())
        except (OSError, ValueError):
            siblings = [cpu]
        group = tuple(c for c in siblings if c in allowed) or (cpu,)
        seen.update(group)
        cores.append(group)
    return cores


def visible_gpus() -> list[str]:
    """GPU ids this process may use: CUDA_VISIBLE_DEVICES, else what nvidia-smi lists."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        return [g.strip() for g in env.split(",") if g.strip() and g.strip() != "-1"]
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=index", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=30, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in out.splitlines() if line.strip()]


def build_slots(conf: Any, cores: list[tuple[int, ...]], gpus: list[str]) -> list[Slot]:
    """Cut cores and GPUs into slots; refuse requests no slot can satisfy, naming the key."""
    cpus_per_run, gpus_per_run, share = conf.cpus_per_run, conf.gpus_per_run, conf.runs_per_gpu
    n_cpus = sum(len(c) for c in cores)
    if cpus_per_run < 0 or gpus_per_run < 0 or share < 1:
        raise ConfigError("launcher.cpus_per_run and launcher.gpus_per_run must be >= 0 and "
                          "launcher.runs_per_gpu >= 1")
    if cpus_per_run > n_cpus:
        raise ConfigError(f"launcher.cpus_per_run={cpus_per_run} but only {n_cpus} CPU(s) are "
                          "available to this process: no run could be placed")
    if gpus_per_run and not gpus:
        raise ConfigError(f"launcher.gpus_per_run={gpus_per_run} but no GPU is visible "
                          "(CUDA_VISIBLE_DEVICES is unset or empty and nvidia-smi lists none); "
                          "runs would silently use the CPU. Set launcher.gpus=[...] or "
                          "launcher.gpus_per_run=0")
    if gpus_per_run > len(gpus):
        raise ConfigError(f"launcher.gpus_per_run={gpus_per_run} but only {len(gpus)} GPU(s) "
                          f"are visible ({', '.join(gpus)})")
    if gpus_per_run > 1 and share > 1:
        raise ConfigError("launcher.runs_per_gpu > 1 needs launcher.gpus_per_run <= 1")
    cpu_groups = _cpu_groups(cores, cpus_per_run)
    if gpus_per_run:
        per_gpu = [tuple(gpus[i:i + gpus_per_run])
                   for i in range(0, len(gpus) - gpus_per_run + 1, gpus_per_run)]
        # round-robin over GPUs, so that 4 runs on 2 GPUs with runs_per_gpu=2 spread 2+2
        gpu_groups = [g for _ in range(share) for g in per_gpu]
    else:
        gpu_groups = []
    limits = [len(groups) for groups, wanted in ((cpu_groups, cpus_per_run),
                                                 (gpu_groups, gpus_per_run)) if wanted]
    count = min(limits) if limits else (os.cpu_count() or 1)
    return [Slot(i, cpu_groups[i] if cpus_per_run else (),
                 gpu_groups[i] if gpus_per_run else ()) for i in range(count)]


def _cpu_groups(cores: list[tuple[int, ...]], per_run: int) -> list[tuple[int, ...]]:
    """Disjoint groups of ``per_run`` CPUs, whole physical cores first."""
    if per_run == 0:
        return []
    flat = [cpu for core in cores for cpu in core]  # siblings adjacent
    return [tuple(flat[i:i + per_run]) for i in range(0, len(flat) - per_run + 1, per_run)]


class PinnedLauncher(LocalLauncher):
    """Local processes pinned to their own CPU cores and GPUs."""

    config_class = PinnedLauncherConf
    ranks = True  # a run's ranks share its slot's cores and GPUs

    def __init__(self, store: SweepStore, conf: Any, runner_conf: Any) -> None:
        super().__init__(store, conf, runner_conf)
        self.slots, self.gpus = self._slots(conf)
        self.free = list(self.slots)
        self.reserved: dict[str, Slot] = {}

    @staticmethod
    def _slots(conf: Any) -> tuple[list[Slot], list[str]]:
        mine = os.sched_getaffinity(0)
        missing = sorted(set(conf.cpus or ()) - mine)
        if missing:
            raise ConfigError(f"launcher.cpus: CPU(s) {', '.join(map(str, missing[:10]))} are not "
                              f"available to this process (it may use {_ranges(sorted(mine))})")
        allowed = list(conf.cpus) if conf.cpus else sorted(mine)
        gpus = [str(g) for g in conf.gpus] if conf.gpus is not None else visible_gpus()
        return build_slots(conf, physical_cores(allowed), gpus), gpus

    @classmethod
    def check(cls, conf: Any) -> None:
        cls._slots(conf)

    @property
    def max_parallel(self) -> int:
        limit = int(self.conf.max_parallel) if self.conf.max_parallel else len(self.slots)
        return min(limit, len(self.slots))

    def launcher_info(self, run: RunRef) -> dict[str, Any]:
        slot = self.free.pop(0)
        self.reserved[run.id] = slot
        return slot.describe()

    def release(self, run: RunRef) -> None:
        slot = self.reserved.pop(run.id, None)
        if slot is not None:
            self.free.insert(0, slot)

    def env_for(self, run: RunRef) -> dict[str, str]:
        env = super().env_for(run)
        slot = self.reserved[run.id]
        if slot.cpus:
            env["RUNNER_CPUS"] = ",".join(map(str, slot.cpus))
            # the slot's cores shared by the run's ranks (launcher.nproc_per_run)
            threads = str(self.conf.threads_per_run
                          or max(1, len(slot.cpus) // int(self.conf.nproc_per_run)))
            for name in THREAD_VARIABLES:
                if name not in os.environ:
                    env[name] = threads
        if slot.gpus or self.gpus:
            env["CUDA_VISIBLE_DEVICES"] = ",".join(slot.gpus)  # "" hides GPUs from CPU runs
        env["RUNNER_SLOT"] = str(slot.index)
        return env

    def wait(self, handles: Sequence[RunHandle], timeout: float) -> list[RunHandle]:
        ended = super().wait(handles, timeout)
        for handle in ended:
            self.release(handle.run)
        return ended


def _ranges(cpus: list[int]) -> str:
    """[0, 1, 2, 5] -> '0-2,5'."""
    runs: list[list[int]] = []
    for cpu in cpus:
        if runs and runs[-1][-1] == cpu - 1:
            runs[-1].append(cpu)
        else:
            runs.append([cpu])
    return ",".join(f"{r[0]}-{r[-1]}" if len(r) > 1 else str(r[0]) for r in runs)
