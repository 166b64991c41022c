"""``python -m runner export-study outputs/<sweep>``: the study as an optuna database, for
optuna-dashboard (``optuna-dashboard sqlite:///outputs/<sweep>/optuna.db``) or optuna's own
analysis. A snapshot of the run store (each trial in the state its FLAG file says, with its
parameters, value, reports and the pruner's attributes), written whole to a temporary file
and renamed over the last one; runner never reads it back.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

from runner.errors import SweepError
from runner.storage.store import SweepStore
from runner.study.config import STUDY_FILE
from runner.study.history import add, load
from runner.study.objectives import optuna_directions

EXPORT_FILE = "optuna.db"


def export_study(sweep_dir: Path, out: Path | None = None) -> tuple[Path, int]:
    """Write the study of ``sweep_dir`` to ``out`` (default: ``<sweep>/optuna.db``); the path
    and the number of trials."""
    from runner.study.config import _optuna
    from runner.study.source import StudyDefinition

    optuna = _optuna()  # (a clear message without runner[optuna])
    store = SweepStore(sweep_dir)
    if not (store.root / STUDY_FILE).is_file():
        raise SweepError(f"{sweep_dir} is not a study (no {STUDY_FILE}: made by +sweep=optuna)")
    definition = StudyDefinition(store)
    trials = load(store, definition.metric)
    target = (out or store.root / EXPORT_FILE).resolve()
    if not target.parent.is_dir():
        raise SweepError(f"--out {out}: the folder {target.parent} does not exist")
    tmp = target.with_name(f".{target.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        study = optuna.create_study(
            storage=f"sqlite:///{tmp}", study_name=definition.name,
            directions=optuna_directions(definition.direction))
        study.set_user_attr("metric", definition.metric)
        study.set_user_attr("sweep", str(store.root))
        for trial in trials:
            add(study, trial, definition.dists)
        del study
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target, len(trials)
