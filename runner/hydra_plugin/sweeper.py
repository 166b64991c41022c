"""What ``hydra/sweeper=runner`` does: expand the command line with runner's sweep kinds and
hand the jobs to the app's launcher in batches, as Hydra's basic sweeper does."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hydra.core.utils import JobReturn
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf

from runner.config.schema import SweepConf, validate
from runner.errors import RunnerError

log = logging.getLogger(__name__)


def expand_globs(arguments: list[str], config_loader: Any) -> list[str]:
    """``db=glob(*)``, ``db=glob([m*, p*], exclude=x)`` as the list of the group's options it
    names (Hydra's basic sweeper asks the config loader the same way)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import Glob

    if config_loader is None:
        return arguments
    parser = OverridesParser.create(config_loader=config_loader)
    out = []
    for text in arguments:
        try:
            (override,) = parser.parse_overrides([text])
        except Exception:
            out.append(text)  # (reported by the expansion, naming the override)
            continue
        if isinstance(override.value(), Glob):
            options = list(override.sweep_string_iterator())
            if not options:
                raise HydraException(f"'{text}' matches no option of the group "
                                     f"'{override.key_or_group}'")
            out.append(f"{override.get_key_element()}={','.join(options)}")
        else:
            out.append(text)
    return out


def jobs_of(settings: dict[str, Any], arguments: list[str],
            config_loader: Any = None) -> list[list[str]]:
    """Every job's overrides (checked: a bad setting names its key)."""
    from runner.planning.sweep import sweep_values

    arguments = expand_globs(arguments, config_loader)
    fields = {k: v for k, v in settings.items() if k not in ("_target_", "max_batch_size")}
    params = fields.get("params") or {}
    if isinstance(params, Mapping):  # hydra.sweeper.params: {db: glob(*)} as Hydra expands it
        fields["params"] = {key: (expand_globs([f"{key}={value}"], config_loader)[0]
                                  .split("=", 1)[1] if isinstance(value, str) else value)
                            for key, value in params.items()}
    try:
        spec = validate(fields, SweepConf, "hydra.sweeper")
        jobs, notes = sweep_values(spec, arguments, where="hydra.sweeper")
    except RunnerError as exc:
        from hydra.errors import CompactHydraException

        raise CompactHydraException(str(exc)) from None
    for note in notes:
        log.info(f"runner: {note}")
    return jobs


def sweep(settings: dict[str, Any], config: DictConfig, launcher: Any,
          arguments: list[str], config_loader: Any = None) -> list[list[JobReturn]]:
    jobs = jobs_of(settings, arguments, config_loader)
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
