"""runner: a declarative, Hydra-config-driven experiment runner.

Tasks use ``runner.log(...)`` and ``runner.current_run()``; everything else is driven by
``python -m runner``. Importing this package is cheap (no Hydra, no torch).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from runner.errors import ConfigError as ConfigError
from runner.errors import CorruptStateError as CorruptStateError
from runner.errors import RunInterrupted as RunInterrupted
from runner.errors import RunnerError as RunnerError
from runner.errors import StateError as StateError
from runner.errors import SweepError as SweepError
from runner.errors import TrialPruned as TrialPruned
from runner.execution.context import RunContext as RunContext
from runner.execution.context import current_run as current_run
from runner.execution.context import log as log
from runner.execution.seeding import seed_everything as seed_everything

if TYPE_CHECKING:
    from runner.results.frames import SweepResults

# Python started in a source checkout imports runner from runner/ itself: its integrations/ and
# examples/ folders are then runner.integrations and runner.examples, as in an installed copy
_checkout = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if os.path.isfile(os.path.join(_checkout, "pyproject.toml")) and os.path.isdir(
        os.path.join(_checkout, "integrations")):
    __path__.append(_checkout)  # (a package's __path__ is a list)

__version__ = "0.1.0"


def distributed(backend: str | None = None) -> Any:
    """In a run of ``launcher.nproc_per_run=N`` ranks: the default process group initialised
    (gloo on CPU, NCCL on GPUs); returns ``torch.distributed`` (see ``runner.execution.ranks``)."""
    from runner.execution.ranks import init

    return init(backend)


def load(sweep_dir: str | os.PathLike[str]) -> SweepResults:
    """A sweep's results as pandas DataFrames: ``.runs()``, ``.metrics()``, ``.groups(metric)``
    (see ``runner.results.frames``; needs pandas: the project's [pandas] extra)."""
    from runner.results.frames import load as _load

    return _load(sweep_dir)

__all__ = ["RunContext", "current_run", "log", "ConfigError", "CorruptStateError", "RunnerError",
           "RunInterrupted", "StateError", "TrialPruned", "SweepError", "seed_everything", "load",
           "__version__"]
