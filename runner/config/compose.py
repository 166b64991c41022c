"""The only module that talks to Hydra: config search path, override parsing, composition.

The config search path is the user's config directories first (``--config-dir``, then ``./conf``
when it exists), then runner's built-in ``conf/``. So a user's ``conf/task/mine.yaml`` is found
next to the built-in launchers, notifiers and sweeps, and a user file of the same name wins.
"""

from __future__ import annotations

import importlib.util
import os
import re
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
    source = Path(__file__).resolve().parents[2] / "conf"
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
            what = "is a file, not a directory" if path.exists() else "does not exist"
            raise ConfigError(f"config directory '{config_dir}' (--config-dir) {what}")
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
            raise ConfigError(one_line(f"cannot parse override '{arg}': {exc}")) from None
        except RecursionError:
            raise ConfigError(f"cannot parse override '{arg[:60]}...': nested too deeply"
                              ) from None
    return parsed


# mappings whose keys are the user's (dotted config keys): given whole on the command line,
# the given mapping replaces the sweep file's (Hydra would merge it into a struct node and
# refuse every new key)
OPEN_MAPPINGS = ("sweep.params",)


def _open_mappings(overrides: Sequence[str]) -> list[str]:
    out = []
    for text in overrides:
        key = text.split("=", 1)[0]
        out.append(f"++{text}" if key in OPEN_MAPPINGS and "=" in text else text)
    return out


class Composer:
    """Composes configs over one search path. Use as a context manager (see ``composer()``)."""

    def __init__(self, dirs: list[Path]) -> None:
        self.dirs = dirs
        self.choices: dict[str, Any] = {}  # group -> option of the last composition

    def compose(self, overrides: Sequence[str], config_name: str = CONFIG_NAME) -> DictConfig:
        from hydra import compose
        from omegaconf import open_dict

        try:
            cfg = compose(config_name=config_name, overrides=_open_mappings(overrides),
                          return_hydra_config=True)
            choices = OmegaConf.to_container(cfg.hydra.runtime.choices)
        except Exception as exc:  # Hydra, OmegaConf and YAML errors: all reported the same way
            bad = self._not_a_mapping(_plain_choices(overrides))
            if bad is not None:
                raise ConfigError(bad) from None
            first, sep, rest = _explain(exc, self.dirs).partition("\n")
            hint = self._nested_hint(first, overrides, config_name)
            other = "" if hint else self._other_option_hint(first, overrides, config_name)
            if hint:  # the likely fix first; adding a top-level key second
                first = re.sub(r"\(to add it, write (\S+)\)", r"\1 would add a new top-level "
                               r"key instead", first.replace("no such key", "no such key" + hint))
            elif other:  # another option of the group has it: the chosen one cannot do it
                first = re.sub(r" \(to add it, write \S+\)", "", first) + other
            raise ConfigError(first + sep + rest) from None
        with open_dict(cfg):
            del cfg["hydra"]
        assert isinstance(choices, dict)
        self.choices = {str(k): v for k, v in choices.items() if not str(k).startswith("hydra")}
        for group, option in self.choices.items():
            node = cfg.get(group.split("/")[0]) if isinstance(option, str) else None
            if node is not None and not isinstance(node, DictConfig):
                raise ConfigError(self._not_a_mapping({group: option})
                                  or f"config group '{group}': '{option}' is not a mapping")
        return cfg

    def _nested_hint(self, message: str, overrides: Sequence[str], config_name: str) -> str:
        """``lr=0.1`` where the config has ``task.lr``: "did you mean task.lr=0.1?" (rather
        than Hydra's advice to add a new top-level key)."""
        from hydra import compose

        found = re.search(r"Could not override '([^'.]+)'", message)
        if not found:
            return ""
        key = found.group(1)
        mine = [o for o in overrides if o.lstrip("+~").split("=")[0] == key]
        rest = [o for o in overrides if o not in mine]
        try:
            cfg = compose(config_name=config_name, overrides=_open_mappings(rest))
        except Exception:
            return ""
        homes = [str(section) for section, node in cfg.items()
                 if isinstance(node, DictConfig) and key in node]
        if not homes or not mine:
            return ""
        value = mine[0].split("=", 1)[1] if "=" in mine[0] else "..."
        return ": did you mean " + " or ".join(f"{h}.{key}={value}" for h in homes[:3]) + "?"

    def _other_option_hint(self, message: str, overrides: Sequence[str],
                           config_name: str) -> str:
        """``launcher.nodes=2`` under ``launcher=local``: the key is another option's of the
        same group (``launcher=slurm``), which says what the chosen one cannot do. Or the
        chosen option keeps its keys under another package (``# @package notifier.console``):
        the key to write is there."""
        found = re.search(r"Could not override '([^'.]+)\.([^'.]+)'", message)
        if not found:
            return ""
        group, key = found.groups()
        chosen = next((o.split("=", 1)[1] for o in overrides
                       if o.lstrip("+~").split("=")[0] == group and "=" in o), None)
        if chosen is None:  # the config's own choice
            from hydra import compose

            rest = [o for o in overrides if o.lstrip("+~").split("=")[0] != f"{group}.{key}"]
            try:
                cfg = compose(config_name=config_name, overrides=_open_mappings(rest),
                              return_hydra_config=True)
                chosen = str(cfg.hydra.runtime.choices.get(group))
            except Exception:
                return ""
        owners: list[str] = []
        for d in self.dirs:
            for path in sorted((d / group).glob("*.yaml")) if (d / group).is_dir() else ():
                try:
                    text = path.read_text()
                    node = OmegaConf.load(path)
                except Exception:  # (a file that does not parse says nothing here)
                    continue
                if not isinstance(node, DictConfig) or key not in node or path.stem in owners:
                    continue
                package = re.search(r"^#\s*@package\s+(\S+)", text, re.M)
                if package and package.group(1) not in (group, "_group_"):
                    if path.stem == chosen:
                        return (f": {group}={chosen} keeps its keys under {package.group(1)} "
                                f"(write {package.group(1)}.{key})")
                    continue  # (its keys live elsewhere)
                owners.append(path.stem)
        if not owners or chosen in owners:
            return ""
        return (f": a setting of {' and '.join(f'{group}={o}' for o in owners[:3])}, not of "
                f"{group}={chosen}")

    def source(self, group: str, option: Any = None) -> Path | None:
        """The file that option ``option`` (default: the last composition's) of ``group`` is."""
        option = self.choices.get(group) if option is None else option
        if not isinstance(option, str):
            return None
        for d in self.dirs:
            for ext in (".yaml", ".yml"):
                path = d / group / f"{option}{ext}"
                if path.is_file():
                    return path
        return None

    def _not_a_mapping(self, choices: dict[str, Any]) -> str | None:
        """A message naming the first chosen file whose top level is not a mapping."""
        import yaml

        for group, option in choices.items():
            path = self.source(group, option)
            if path is None:
                continue
            try:
                data = yaml.safe_load(path.read_text())
            except (OSError, yaml.YAMLError):
                continue
            if data is not None and not isinstance(data, dict):
                return (f"{path}: the top level of a config file must be a mapping (key: "
                        f"value lines), not a {type(data).__name__}")
        return None

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


def _plain_choices(overrides: Sequence[str]) -> dict[str, str]:
    """``group=option`` overrides (no dots, no sweeps) as a dict, for finding their files."""
    out = {}
    for text in overrides:
        key, sep, value = text.lstrip("+~").partition("=")
        if sep and "." not in key and "@" not in key and "," not in value:
            out[key] = value
    return out


_NOISE = re.compile(r"^\s*(full_key:|object_type=|reference_type=|See https://hydra\.cc|"
                    r"provider=|Config search path:)")


def one_line(message: str) -> str:
    """Hydra's and OmegaConf's multi-line messages as one line, without their bookkeeping
    (``full_key: ...``, ``object_type=...``, links, the provider list)."""
    options = re.search(r"Available options in '([^']+)':\n((?:[ \t]+\S+\n?)+)", message)
    if options:  # a missing group option: list the ones there are on the same line
        names = ", ".join(options.group(2).split())
        message = message.replace(options.group(0), f"; {options.group(1)} has: {names}\n")
    message = re.sub(r"\s+(full_key|object_type|reference_type)[:=] ?\S+", "", message)
    lines = [line.strip() for line in message.splitlines()
             if line.strip() and not _NOISE.match(line)]
    text = " ".join(lines)
    text = re.sub(r"Could not override '([^']+)'\. To append to your config use (\S+) "
                  r"Key '[^']+' is not in struct", r"Could not override '\1': no such key "
                  r"(to add it, write \2)", text)
    return text.replace(" ;", ";")


def _explain(exc: BaseException, dirs: list[Path]) -> str:
    """Turn a Hydra/OmegaConf/YAML exception into a message that names the key and the file:
    one line, then the config search path."""
    msg = str(exc).strip()
    cause = exc.__cause__ or exc.__context__
    if cause is not None and str(cause).strip() and str(cause).strip() not in msg:
        msg = f"{msg}\n{str(cause).strip()}"
    where = ", ".join(str(d) for d in dirs)
    return f"{one_line(msg)}\n(config search path: {where})"


def to_container(cfg: DictConfig, resolve: bool = True) -> dict[str, Any]:
    """A plain, resolved dict of ``cfg``; an interpolation error names the key."""
    try:
        out = OmegaConf.to_container(cfg, resolve=resolve, throw_on_missing=True)
    except Exception as exc:
        raise ConfigError(f"cannot resolve the config: {exc}") from None
    assert isinstance(out, dict)
    return out  # type: ignore[return-value]
