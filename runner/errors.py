"""Exceptions raised by runner.

Every message names what is wrong (the key, the value, the file) and, where there is one, the fix.
The CLI prints ``RunnerError`` messages without a traceback and exits with ``exit_code``.
"""

from __future__ import annotations

import signal
from pathlib import Path


class TrialPruned(BaseException):  # noqa: N818 (optuna's name, which users know)
    """Raised inside a study's trial (from ``runner.log``) when the study's pruner stops it
    early. Not an error: catch it (or use ``try/finally``) to save, then let it propagate; the
    run ends PRUNED. A BaseException, so ``except Exception`` in the task does not swallow it."""

    def __init__(self, metric: str, value: float, at: int, resource: str = "step") -> None:
        super().__init__(f"pruned at {resource} {at} ({metric}={value:.4g})")
        self.metric, self.value, self.at = metric, value, at


class RunInterrupted(BaseException):
    """Raised inside the task when its run is asked to stop: SIGTERM (Ctrl-C of the runner,
    ``cancel``, scancel) or SLURM's time-limit warning (SIGUSR1). Not an error of the task: catch
    it (or use ``try/finally``) to save a checkpoint, then let it propagate."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class RunnerError(Exception):
    """Base class of every error runner reports to the user."""

    exit_code = 2


class ConfigError(RunnerError):
    """A config cannot be composed or does not validate: unknown key, bad type, broken YAML."""


class SweepError(RunnerError):
    """A sweep cannot be expanded: bad axis, bad filter, duplicate runs."""


class StateError(RunnerError):
    """A run or sweep directory is not in the state an operation needs."""


class CorruptStateError(StateError):
    """A FLAG or manifest file on disk cannot be parsed.

    Nothing is rewritten: the file is left as it is for inspection, and the run is skipped.
    """

    def __init__(self, path: Path | str, content: str | bytes, reason: str) -> None:
        self.path = Path(path)
        self.content = content
        self.reason = reason
        shown = content if isinstance(content, str) else content.decode("utf-8", "replace")
        if len(shown) > 200:
            shown = shown[:200] + "..."
        super().__init__(
            f"corrupt state file {self.path}: {reason}; content: {shown!r}. "
            "The run is skipped and nothing else is changed; inspect the file, then delete it "
            "(the run becomes UNHATCHED if no other FLAG file is left) or fix it."
        )


class EnvironmentFault(RunnerError, OSError):
    """The machine refused an operation (disk full, permission denied, a file gone): the message
    says what runner was doing and what to do; nothing written before is lost."""

    exit_code = 1

    def __init__(self, message: str, errno: int | None = None) -> None:
        super().__init__(message)
        self.errno = errno


def describe_os_error(exc: OSError, path: Path | str | None = None,
                      doing: str = "writing") -> str:
    """One line for an OSError: what happened, to which file, and what to do."""
    import errno as codes

    where = str(path or exc.filename or "a file")
    if exc.errno in (codes.ENOSPC, codes.EDQUOT):
        return (f"no space left on the device (or quota) holding {where} while {doing} it; "
                "free some space, then resume: nothing written before is lost")
    if exc.errno == codes.EROFS:
        return f"{where} is on a read-only file system ({doing} it)"
    if exc.errno in (codes.EACCES, codes.EPERM):
        return (f"permission denied while {doing} {where} (check its owner, mode and attributes, "
                "e.g. `lsattr`/`chattr -i`)")
    if exc.errno == codes.ENOENT:
        return f"{where} does not exist (or vanished) while {doing} it"
    return f"{exc.strerror or exc} while {doing} {where}"


class LaunchError(RunnerError):
    """A launcher could not start runs."""


class SlurmError(LaunchError):
    """A SLURM command failed; the message carries SLURM's own words and the command."""


class TaskImportError(ConfigError):
    """``task.fn`` does not name an importable callable."""
