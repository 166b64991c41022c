"""A Hydra job's config at the cost of a copy instead of a composition.

Hydra composes every job of a multirun from scratch (``load_sweep_config``: the defaults tree of
the app and of Hydra's own config groups, about 70 ms a job here), and its basic sweeper does so
twice per job (once to validate the batch, once in the launcher). Yet the composition before
the job's value overrides depends only on its *config group* overrides: Hydra builds the
defaults list from those, composes, turns struct mode on and only then applies the other
overrides (``ConfigLoaderImpl._apply_overrides_to_config``). So ``SweepConfigs`` composes once
per distinct set of group overrides, with Hydra itself, and builds each job from a copy of that
by the same steps Hydra takes after composing: the value overrides in command-line order, the
job's ``hydra.overrides.task`` and ``override_dirname``, the master config's resolver cache.
Anything else (a hydra override, a dict value, a failure) goes to Hydra's own loader, so errors
are Hydra's own words.
"""

from __future__ import annotations

import copy
import functools
import pickle
from collections.abc import Sequence
from typing import Any

from hydra._internal.config_loader_impl import ConfigLoaderImpl, get_overrides_dirname
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override
from omegaconf import DictConfig, OmegaConf, open_dict

from runner.hydra_plugin import collector


def parse(overrides: Sequence[str]) -> list[Override]:
    """A job's overrides parsed by Hydra's grammar, once per batch (the composing and the run
    ids both need them; the parsed overrides are only read)."""
    return _parsed(tuple(overrides))


@functools.lru_cache(maxsize=20_000)
def _parsed(overrides: tuple[str, ...]) -> list[Override]:
    return _parser().parse_overrides(list(overrides))


@functools.cache
def _parser() -> OverridesParser:
    return OverridesParser.create()


class SweepConfigs:
    """Hydra's config loader, with ``load_sweep_config`` served from per-group templates."""

    def __init__(self, loader: Any) -> None:
        self.loader = loader
        self._templates: dict[tuple[int, tuple[str, ...]], bytes | DictConfig] = {}
        # each job composed once: the sweeper's batch check (``validate_batch_is_legal``)
        # composes it first and drops it; the launcher's call then gets that same object
        self._checked: dict[tuple[int, tuple[str, ...]], DictConfig] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self.loader, name)

    def load_sweep_config(self, master_config: DictConfig,
                          sweep_overrides: list[str]) -> DictConfig:
        cfg = self._checked.pop((id(master_config), tuple(sweep_overrides)), None)
        if cfg is not None:
            return cfg
        try:
            cfg = self._from_template(master_config, list(sweep_overrides))
        except Exception:
            cfg = None
        if cfg is None:  # (Hydra's own path also raises Hydra's own error)
            cfg = self.loader.load_sweep_config(master_config, list(sweep_overrides))
        if len(self._checked) >= 10_000:
            self._checked.clear()
        self._checked[(id(master_config), tuple(sweep_overrides))] = cfg
        collector.composed()
        return cfg

    def _from_template(self, master: DictConfig, overrides: list[str]) -> DictConfig | None:
        parsed = parse(overrides)
        repo = getattr(self.loader, "repository", None)
        if repo is None or any(o.is_hydra_override() or o.is_sweep_override() for o in parsed):
            return None
        groups: list[Any] = []
        values: list[Any] = []
        for o in parsed:
            if isinstance(o.value(), dict):
                return None  # (a dict merged into a group's node: left to Hydra)
            (groups if repo.group_exists(o.key_or_group) else values).append(o)
        key = (id(master), tuple(str(o.input_line) for o in groups))
        template = self._templates.get(key)
        if template is None:
            composed = self.loader.load_sweep_config(master, list(key[1]))
            try:  # a copy is a pickle round trip: a third of deepcopy's time
                template = pickle.dumps(composed)
            except Exception:
                template = composed
            self._templates[key] = template
        cfg = pickle.loads(template) if isinstance(template, bytes) else copy.deepcopy(template)
        ConfigLoaderImpl._apply_overrides_to_config(values, cfg)
        job = cfg.hydra.job
        with open_dict(cfg.hydra):
            cfg.hydra.overrides.task = [str(o.input_line) for o in parsed]
            job.override_dirname = get_overrides_dirname(
                overrides=parsed, kv_sep=job.config.override_dirname.kv_sep,
                item_sep=job.config.override_dirname.item_sep,
                exclude_keys=job.config.override_dirname.exclude_keys)
        OmegaConf.copy_cache(from_config=master, to_config=cfg)
        return cfg


def install(hydra_context: Any) -> None:
    """Serve the sweeper's and the launcher's compositions from templates (once per context)."""
    loader = hydra_context.config_loader
    if loader is not None and not isinstance(loader, SweepConfigs):
        hydra_context.config_loader = SweepConfigs(loader)
