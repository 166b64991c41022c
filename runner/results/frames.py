"""A sweep's results as pandas DataFrames, for notebooks: ``runner.load(sweep_dir)``.

The same data ``status`` and ``report`` read, from the same run store (pandas is an optional
extra: ``pip install pandas, or the project's [pandas] extra``)::

    sweep = runner.load("outputs/mnist-grid-6730eba8")
    sweep.runs()                      # one row per run: values, state, attempt, duration, summary
    sweep.metrics(["val/acc"])        # every logged step, the latest attempt's row per step
    sweep.groups("val/acc")           # per setting (seeds pooled): n, mean, std, 95% t interval
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runner.errors import RunnerError
from runner.results.status import scan
from runner.storage.metrics import flatten, read_metrics
from runner.storage.store import RunRef, SweepStore

if TYPE_CHECKING:
    import pandas as pd


def _pandas() -> Any:
    try:
        import pandas as pd
    except ImportError:
        raise RunnerError("runner.load needs pandas: pip install pandas (or the project's "
                          "[pandas] extra)") from None
    return pd


class SweepResults:
    """One sweep directory, read on demand (nothing is cached: call again to see new runs)."""

    def __init__(self, sweep_dir: str | os.PathLike[str]) -> None:
        self.store = SweepStore(os.fspath(sweep_dir))

    @property
    def root(self) -> Path:
        return self.store.root

    @property
    def name(self) -> str:
        return str(self.store.manifest.get("name", self.root.name))

    def __repr__(self) -> str:
        return f"<SweepResults {self.name}: {len(self.store.manifest['runs'])} runs>"

    def runs(self) -> pd.DataFrame:
        """One row per run: ``id``, ``dir``, ``state``, ``attempt``, ``duration_s``, ``reason``,
        a column per swept value, and ``summary.<key>`` for what the run returned."""
        now = time.time()
        records = []
        for row in scan(self.store):
            record: dict[str, Any] = {
                "id": row.ref.id, "dir": row.ref.dir, "state": row.state,
                "attempt": row.record.attempt if row.record else 0,
                "duration_s": row.duration(now), "reason": row.reason or None}
            record.update(row.ref.values)
            record.update({f"summary.{k}": v for k, v in flatten(row.summary).items()})
            records.append(record)
        return _pandas().DataFrame.from_records(records)

    def metrics(self, keys: Sequence[str] | None = None, latest: bool = True) -> pd.DataFrame:
        """Every logged record: ``id``, ``attempt``, ``step``, ``time``, the swept values and the
        metrics (only ``keys`` if given). ``latest``: one row per (run, step) holding each
        metric's latest value at that step (so the latest attempt's), as ``report`` and the plots
        read them, also when one step was logged in several calls; ``latest=False``: every
        attempt's rows as logged."""
        pd = _pandas()
        records: list[dict[str, Any]] = []
        owners: list[int] = []  # each record's run, as an index into ``logged``
        logged: list[RunRef] = []
        for ref in self.store.runs():
            before = len(records)
            records.extend(read_metrics(ref.paths.metrics))
            if len(records) > before:
                owners.extend([len(logged)] * (len(records) - before))
                logged.append(ref)
        if not records:
            return pd.DataFrame(columns=["id", "step", "time", "attempt"])
        # one frame for the whole sweep (a frame per run cost a millisecond of pandas per run)
        frame = pd.DataFrame.from_records(records)
        if keys is not None:
            frame = frame[[c for c in ("step", "time", "attempt", *keys) if c in frame]]
        frame.insert(0, "_run", owners)
        if latest:  # (last(): per column, the last value logged, skipping the gaps)
            frame = frame.groupby(["_run", "step"], as_index=False, sort=True).last()
        run = frame.pop("_run").to_numpy()
        frame.insert(0, "id", pd.Series([r.id for r in logged], dtype=object).to_numpy()[run])
        swept = list(dict.fromkeys(k for r in logged for k in r.values))
        for i, key in enumerate(swept):  # each run's value on each of its rows
            column = pd.Series([r.values.get(key, float("nan")) for r in logged])
            frame.insert(1 + i, key, column.iloc[run].to_numpy())
        return frame

    def groups(self, metric: str, mode: str | None = None, how: str = "final") -> pd.DataFrame:
        """Per setting (every varying value but the seed), best first: what ``report`` tables."""
        from runner.results.aggregate import collect, group_runs, mode_for, rank

        mode = mode_for(metric, mode)
        ranked = rank(group_runs(self.store, collect(self.store, metric, how, mode)), mode)
        return _pandas().DataFrame.from_records([g.stats() for g in ranked])


def load(sweep_dir: str | os.PathLike[str]) -> SweepResults:
    """The results of the sweep in ``sweep_dir`` (see ``SweepResults``)."""
    return SweepResults(sweep_dir)
