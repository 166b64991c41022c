"""Early stopping inside the running task.

Installed into every run of a study with a pruner (a run hook, see ``runner.execution.worker``),
the judge watches ``runner.log``: each report of the objective at a new resource value (the
``resource`` key's value, else the step) is judged by optuna's pruner against the study rebuilt
from the run store, and the decision is appended to the run's ``pruning.jsonl`` (with the pruner's
rung attributes) before it takes effect. A report judged before (an earlier attempt of this trial,
resumed) gets the recorded decision again. A stop raises ``runner.TrialPruned`` in the task (after
its metrics line is written), so ``try/finally`` can save, and the run ends PRUNED.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

try:  # imported once by the fork server that preloads this hook, not by every trial
    import optuna  # noqa: F401
except ImportError:  # (refused with a clear message when a study is planned)
    pass

from runner.errors import TrialPruned
from runner.study.config import STUDY_FILE
from runner.study.history import (
    DECISIONS,
    TRIAL_KEY,
    Trial,
    load,
    read_decisions,
    study_of,
)


class Judge:
    def __init__(self, ctx: Any) -> None:
        from runner.storage.store import SweepStore
        from runner.study.source import StudyDefinition

        self.ctx = ctx
        self.store = SweepStore(ctx.sweep_dir)
        self.study = StudyDefinition(self.store)
        values = json.loads(ctx.paths.values.read_text())
        self.number = values.get(TRIAL_KEY)
        self.recorded = {int(d["step"]): d for d in read_decisions(ctx.run_dir)}

    @property
    def active(self) -> bool:
        return self.study.conf.pruner != "none" and isinstance(self.number, int)

    def report(self, record: dict[str, Any]) -> None:
        """A metrics sink: ``record`` is the flattened line runner.log wrote (with its step)."""
        metric = self.study.metric
        assert isinstance(metric, str)  # (a study of several objectives has no pruner)
        value = record.get(metric)
        if isinstance(value, bool) or not isinstance(value, int | float):
            return
        resource_key = self.study.conf.resource
        resource = record.get(resource_key) if resource_key else record.get("step")
        if isinstance(resource, bool) or not isinstance(resource, int | float):
            return
        at = int(resource)
        decision = self.recorded.get(at)
        if decision is None:
            decision = self._judge(at, float(value))
        if decision["prune"]:
            raise TrialPruned(metric, float(decision["value"]), at, resource_key or "step")

    def _judge(self, at: int, value: float) -> dict[str, Any]:
        trials = load(self.store, self.study.metric)
        mine = next((t for t in trials if t.number == self.number), None)
        if mine is None:  # (not listed: not a trial of this study)
            return {"step": at, "value": value, "prune": False}
        mine.state = "RUNNING"
        mine.intermediate = {s: float(d["value"]) for s, d in self.recorded.items()}
        mine.intermediate[at] = value
        for record in self.recorded.values():
            mine.attrs.update(record.get("attrs") or {})
        if self.study.conf.deterministic:  # judged against the trials it was asked from
            cutoff = mine.number - int(self.study.conf.ahead or 0)  # (all ended by then)
            trials = [t if t.number < cutoff or t is mine else Trial(t.number, t.params,
                                                                     "RUNNING")
                      for t in trials]
        study = study_of(trials, self.study.conf, self.study.dists, self.study.direction,
                         self.study.name)
        frozen = study.get_trials(deepcopy=False)[mine.number]
        prune = bool(study.pruner.prune(study, frozen))
        attrs = study._storage.get_trial(frozen._trial_id).system_attrs
        decision = {"step": at, "value": value, "prune": prune, "attrs": attrs,
                    "attempt": self.ctx.attempt}
        _append(Path(self.ctx.run_dir) / DECISIONS, decision)
        self.recorded[at] = decision
        return decision


def _append(path: Path, record: dict[str, Any]) -> None:
    """One line, flushed to disk before the decision takes effect."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o644)
    try:
        size = os.fstat(fd).st_size
        torn = size > 0 and os.pread(fd, 1, size - 1) != b"\n"  # a kill mid-line before us
        os.write(fd, (("\n" if torn else "") + json.dumps(record, default=str) + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)


def install(ctx: Any) -> None:
    """The run hook: judge this run's reports if it is a trial of a study with a pruner."""
    settings = json.loads((Path(ctx.sweep_dir) / STUDY_FILE).read_text()).get("settings", {})
    if settings.get("pruner", "none") == "none":
        return  # nothing to judge: no study to rebuild in this run
    judge = Judge(ctx)
    if judge.active:
        ctx.writer.sinks.append(judge.report)

