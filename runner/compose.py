"""The only module that talks to Hydra: config search path, override parsing, composition.

The config search path is the user's config directories first (``--config-dir``, then ``./conf``
when it exists), then runner's built-in ``conf/``. So a user's ``conf/task/mine.yaml`` is found
next to the built-in launchers, notifiers and sweeps, and a user file of the same name wins.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override
from omegaconf import DictConfig, OmegaConf

from runner.errors import ConfigError

CONFIG_NAME = "config"


def builtin_conf_dir() -> Path:
    """runner's own conf/: the source tree's, or the installed copy (package ``runner._conf``)."""
    source = Path(__file__).resolve().parents[1] / "conf"
    if (source / "config.yaml").is_file():
        return source
    spec = importlib.util.find_spec("runner._conf")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError("runner's built-in conf/ directory is missing: reinstall runner")
    return Path(list(spec.submodule_search_locations)[0])


def search_dirs(config_dir: str | os.PathLike[str] | None = None) -> list[Path]:
    """Config directories, highest priority first."""
    builtin = builtin_conf_dir()
    dirs: list[Path] = []
    if config_dir is not None:
        path = Path(config_dir).resolve()
        if not path.is_dir():
            raise ConfigError(f"config directory '{config_dir}' (--config-dir) does not exist")
        dirs.append(path)
    local = Path.cwd() / "conf"
    if local.is_dir():
        dirs.append(local.resolve())
    dirs.append(builtin)
    unique: list[Path] = []
    for d in dirs:
        if d not in unique:
            unique.append(d)
    return unique


def parse_overrides(args: Sequence[str]) -> list[Override]:
    """Parse command-line overrides with Hydra's grammar; errors name the bad override."""
    from hydra.errors import OverrideParseException

    parser = OverridesParser.create()
    parsed = []
    for arg in args:
        try:
            parsed.extend(parser.parse_overrides([arg]))
        except OverrideParseException as exc:
            raise ConfigError(f"cannot parse override '{arg}': {exc}") from None
    return parsed


class Composer:
    """Composes configs over one search path. Use as a context manager (see ``composer()``)."""

    def __init__(self, dirs: list[Path]) -> None:
        self.dirs = dirs

    def compose(self, overrides: Sequence[str], config_name: str = CONFIG_NAME) -> DictConfig:
        from hydra import compose

        try:
            cfg = compose(config_name=config_name, overrides=list(overrides))
        except Exception as exc:  # Hydra, OmegaConf and YAML errors: all reported the same way
            raise ConfigError(_explain(exc, self.dirs)) from None
        return cfg

    def is_group(self, name: str) -> bool:
        """True if ``name`` is a config group (``task``, ``launcher``, ...), not a value key."""
        from hydra.core.global_hydra import GlobalHydra

        loader = GlobalHydra.instance().config_loader()
        return bool(loader.get_group_options(name.lstrip("+~")))


@contextmanager
def composer(config_dir: str | os.PathLike[str] | None = None) -> Iterator[Composer]:
    """Initialise Hydra once over runner's search path; restores Hydra's globals on exit."""
    from hydra._internal.hydra import Hydra
    from hydra._internal.utils import create_config_search_path
    from hydra.core.global_hydra import GlobalHydra

    dirs = search_dirs(config_dir)
    search_path = create_config_search_path(str(dirs[-1]))
    for d in reversed(dirs[:-1]):
        search_path.prepend(provider="runner-user", path=f"file://{d}")
    was_initialised = GlobalHydra.instance().is_initialized()
    if was_initialised:
        GlobalHydra.instance().clear()
    Hydra.create_main_hydra2(task_name="runner", config_search_path=search_path)
    try:
        yield Composer(dirs)
    finally:
        GlobalHydra.instance().clear()


def _explain(exc: BaseException, dirs: list[Path]) -> str:
    """Turn a Hydra/OmegaConf/YAML exception into one message that names the key and the file."""
    msg = str(exc).strip()
    cause = exc.__cause__ or exc.__context__
    if cause is not None and str(cause).strip() and str(cause).strip() not in msg:
        msg = f"{msg}\n{str(cause).strip()}"
    where = ", ".join(str(d) for d in dirs)
    return f"{msg}\n(config search path: {where})"


def to_container(cfg: DictConfig, resolve: bool = True) -> dict[str, Any]:
    """A plain, resolved dict of ``cfg``; an interpolation error names the key."""
    try:
        out = OmegaConf.to_container(cfg, resolve=resolve, throw_on_missing=True)
    except Exception as exc:
        raise ConfigError(f"cannot resolve the config: {exc}") from None
    assert isinstance(out, dict)
    return out  # type: ignore[return-value]
