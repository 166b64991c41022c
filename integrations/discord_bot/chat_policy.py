"""What chat may change: chat text is data, judged by its effect on the composed sweep.

Text from chat is split like a command line (``shlex``; no shell ever sees it) and parsed with
Hydra's override grammar. Before Hydra composes anything, text holding an interpolation
(``${...}``), an option, a package override (``group@pkg``), a ``hydra`` key or a known secret is
refused. Then the sweep is composed twice, with and without the chat overrides, and every leaf of
every run's config and of the sweep's own settings that differs must be a key the admin allows
(``bot.chat_keys``: fnmatch patterns, ``!pattern`` excludes, the last match wins). A few keys can
never be changed from chat whatever the patterns say: ``task.fn``, every ``_target_``-like key
(a component starting with ``_``), and the sections that run code or write files elsewhere.

So a parent assignment (``task={fn: ...}``), a sweep axis over a forbidden key, a list sweep that
sets one, a group swap that changes ``task.fn`` or a package override that writes into
``runner`` are all refused by what they would do, however they are spelled.
"""

from __future__ import annotations

import fnmatch
import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from runner.config.configfile import config_changes
from runner.config.secrets import redact
from runner.errors import ConfigError

MAX_TEXT = 2000  # characters of one /launch text
DEFAULT_CHAT_KEYS = ["task.*", "!task.fn", "!task.name", "seed", "sweep.*",
                     "launcher.max_parallel", "runner.name"]
# never from chat, whatever bot.chat_keys says: they run code, or read or write elsewhere
NEVER = ("hydra", "task.fn", "runner.output_dir", "runner.preload", "runner.preload_trackers",
         "runner.debug", "runner.secret_env", "runner.dry_run", "launcher._target_",
         "launcher.setup", "launcher.python", "launcher.sbatch_extra", "notifier", "tracker")
_SECRETISH = re.compile(r"token|secret|passw|api_?key|webhook|(^|[._])key($|[._])", re.I)


def _under(path: str, prefix: str) -> bool:
    return path == prefix or path.startswith(prefix + ".") or path.startswith(prefix + "/")


def parse_chat_overrides(text: str) -> list[str]:
    """Overrides from a chat message, checked by spelling; raises ConfigError naming what is
    refused. (The effect is checked by ``ChatPolicy.check`` once the sweep is composed.)"""
    from runner.config.compose import parse_overrides

    if len(text) > MAX_TEXT:
        raise ConfigError(f"the overrides are {len(text)} characters long; at most {MAX_TEXT}")
    if redact(text) != text:
        raise ConfigError("that text contains a secret this host knows: tokens and keys are "
                          "never accepted in chat (the message was not stored)")
    if "${" in text:
        raise ConfigError("interpolations (${...}) are not accepted from chat: give plain "
                          "values")
    try:
        args = shlex.split(text)
    except ValueError as exc:
        raise ConfigError(f"cannot split the overrides: {exc}") from None
    if not args:
        raise ConfigError("no overrides given, e.g. `+sweep=grid task.lr=0.1,0.01`")
    options = [a for a in args if a.startswith("-")]
    if options:
        raise ConfigError(f"options are not taken from chat: {', '.join(options)}")
    for override in parse_overrides(args):
        key = override.key_or_group.lstrip("+~")
        if override.package is not None:
            raise ConfigError(f"'{override.input_line}': package overrides (group@package) are "
                              "not accepted from chat")
        if any(_under(key, f) for f in NEVER):
            raise ConfigError(f"'{key}' cannot be set from chat (it could run code or write "
                              "elsewhere); set it in the config files instead")
        if _SECRETISH.search(key):
            raise ConfigError(f"'{key}' looks like a token or key: those are never accepted in "
                              "chat; the host reads them from its environment or a file")
    return args


@dataclass
class ChatPolicy:
    """``bot.chat_keys`` (what chat may change) and ``bot.tasks`` (task configs it may pick)."""

    keys: list[str] = field(default_factory=lambda: list(DEFAULT_CHAT_KEYS))
    tasks: list[str] = field(default_factory=list)

    def allows(self, path: str) -> bool:
        parts = re.split(r"[.\[]", path)
        if any(p.startswith("_") for p in parts) or any(_under(path, f) for f in NEVER):
            return False
        verdict = False
        for pattern in self.keys:
            negate = pattern.startswith("!")
            bare = pattern[1:] if negate else pattern
            if fnmatch.fnmatchcase(path, bare) or _under(path, bare):
                verdict = not negate
        return verdict

    @staticmethod
    def _plain_task(args: Sequence[str]) -> str | None:
        from runner.config.compose import parse_overrides

        chosen = None
        for o in parse_overrides(args):
            if (o.key_or_group.lstrip("+~") == "task" and not o.is_sweep_override()
                    and isinstance(o.value(), str)):
                chosen = str(o.value())
        return chosen

    def check(self, composer: Any, args: Sequence[str], plan: Any,
              config_name: str = "config") -> None:
        """Refuse ``plan`` if it changes anything chat may not change (ConfigError).

        Judged on everything that can vary, whatever the sweep kind: the sweep's own settings,
        every listed run's config, the template every later run is built from (a study's
        trials) and every key a later run may set, each compared with the admin's config
        composed without chat's overrides (with the run's task config when that is one of
        ``bot.tasks``). A plan with no run and no template cannot be judged: refused.
        """
        if not plan.runs and plan.template is None:
            raise ConfigError(f"a {plan.kind} sweep lists no runs and no template to judge: it "
                              "cannot be started from chat")
        plain = self._plain_task(args)
        cache: dict[str | None, tuple[dict[str, Any], dict[str, Any]]] = {}

        def baseline(choice: str | None) -> tuple[dict[str, Any], dict[str, Any]]:
            if choice not in cache:
                overrides = [f"task={choice}"] if choice in self.tasks else []
                cache[choice] = self._baseline(composer, overrides, config_name)
            return cache[choice]

        execution = {k: v for k, v in plan.execution.items() if v is not None}
        config, base_exec = baseline(plain)
        self._refuse(config_changes(base_exec, execution), plain)
        if plan.template is not None:
            self._refuse(config_changes(config, plan.template), plain)
        for key in plan.searched:  # set later by a proposal: allowed whatever value it takes
            self._refuse([(key, None, None)], plain)
        for run in plan.runs:
            choice = str(run.values["task"]) if "task" in run.values else plain
            self._refuse(config_changes(baseline(choice)[0], run.config), choice)

    def _baseline(self, composer: Any, overrides: list[str], config_name: str
                  ) -> tuple[dict[str, Any], dict[str, Any]]:
        from runner.config.compose import to_container
        from runner.planning.sweep import EXEC_SECTIONS

        full = to_container(composer.compose(overrides, config_name))  # (no hydra section)
        config = {k: v for k, v in full.items() if k not in EXEC_SECTIONS}
        execution = {k: v for k, v in full.items() if k in EXEC_SECTIONS and v is not None}
        return config, execution

    def _refuse(self, changes: list[tuple[str, Any, Any]], choice: str | None) -> None:
        """Refuse the first change (key, old, new) chat may not make."""
        from runner.planning.sweep import has_interpolation

        for path, _, new in changes:
            if not self.allows(path):
                hint = ""
                if choice is not None and choice not in self.tasks:
                    hint = (f"; task={choice} is not one of the task configs chat may choose "
                            f"(bot.tasks: {', '.join(self.tasks) or 'none'})")
                raise ConfigError(f"'{path}' cannot be changed from chat (bot.chat_keys allows "
                                  f"{', '.join(self.keys)}){hint}")
            if has_interpolation(new):
                raise ConfigError(f"'{path}': interpolations are not accepted from chat")
