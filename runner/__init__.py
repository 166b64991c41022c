"""runner: a declarative, Hydra-config-driven experiment runner.

Tasks use ``runner.log(...)`` and ``runner.current_run()``; everything else is driven by
``python -m runner``. Importing this package is cheap (no Hydra, no torch).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from runner.context import RunContext as RunContext
from runner.context import current_run as current_run
from runner.context import log as log
from runner.errors import ConfigError as ConfigError
from runner.errors import CorruptStateError as CorruptStateError
from runner.errors import RunInterrupted as RunInterrupted
from runner.errors import RunnerError as RunnerError
from runner.errors import StateError as StateError
from runner.errors import SweepError as SweepError
from runner.seeding import seed_everything as seed_everything

if TYPE_CHECKING:
    from runner.frames import SweepResults

__version__ = "0.1.0"


def load(sweep_dir: str | os.PathLike[str]) -> SweepResults:
    """A sweep's results as pandas DataFrames: ``.runs()``, ``.metrics()``, ``.groups(metric)``
    (see ``runner.frames``; needs ``pip install 'runner[pandas]'``)."""
    from runner.frames import load as _load

    return _load(sweep_dir)

__all__ = ["RunContext", "current_run", "log", "ConfigError", "CorruptStateError", "RunnerError",
           "RunInterrupted", "StateError", "SweepError", "seed_everything", "load", "__version__"]
