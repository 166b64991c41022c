"""What ``hydra/sweeper=runner`` does: expand the command line with runner's sweep kinds and
hand the jobs to the app's launcher in batches, as Hydra's basic sweeper does."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from hydra.core.utils import JobReturn
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf

from runner.config_schema import SweepConf, validate
from runner.errors import RunnerError

log = logging.getLogger(__name__)


def jobs_of(settings: dict[str, Any], arguments: list[str]) -> list[list[str]]:
    """Every job's overrides (checked: a bad setting names its key)."""
    from runner.sweep import sweep_values

    fields = {k: v for k, v in settings.items() if k not in ("_target_", "max_batch_size")}
    try:
        spec = validate(fields, SweepConf, "hydra.sweeper")
        jobs, notes = sweep_values(spec, arguments, where="hydra.sweeper")
    except RunnerError as exc:
        raise HydraException(str(exc)) from None
    for note in notes:
        log.info(f"runner: {note}")
    return jobs


def sweep(settings: dict[str, Any], config: DictConfig, launcher: Any,
          arguments: list[str]) -> list[list[JobReturn]]:
    jobs = jobs_of(settings, arguments)
    sweep_dir = Path(str(config.hydra.sweep.dir))
    sweep_dir.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(config, sweep_dir / "multirun.yaml")
    size = settings.get("max_batch_size") or len(jobs)
    returns = []
    for start in range(0, len(jobs), size):
        batch = jobs[start:start + size]
        results = launcher.launch(batch, initial_job_idx=start)
        for result in results:
            _ = result.return_value  # a failed job raises its exception, as Hydra's sweepers do
        returns.append(list(results))
    return returns
