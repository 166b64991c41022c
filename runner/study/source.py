"""The sweep loop's door for a study: ``propose`` freezes the next trial when a slot frees.

Under an exclusive lock on the sweep's ``.study.lock`` (so two runner processes on one study
take turns), a proposal rebuilds the study from the run store, asks the sampler for trial
``n`` (``n``: the number of trials the sweep lists; running trials are pending, so the sampler
lies about them instead of proposing them again) and freezes it with ``add_runs`` as run index
``n``. A kill before that leaves nothing (the same trial is proposed again), after it the trial
is an ordinary UNHATCHED run: numbers stay contiguous, none is lost or proposed twice, and
``n_trials`` counts every trial ever proposed.
"""

from __future__ import annotations

import copy
import fcntl
import gc
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from runner.config.schema import validate
from runner.planning.run_id import run_dirname, run_id
from runner.results.status import LiveScan
from runner.storage.store import RunRef, SweepStore
from runner.study.config import STUDY_FILE, StudyConf
from runner.study.history import PROPOSAL, TRIAL_KEY, as_of, load
from runner.study.sampler_study import SamplerStudy
from runner.study.space import from_json, inside
from runner.study.warm import load_warm


@contextmanager
def study_lock(store: SweepStore) -> Iterator[None]:
    fd = os.open(store.root / ".study.lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


class StudyDefinition:
    """What ``study.json`` holds: the settings, the space, the objective, the trial template."""

    def __init__(self, store: SweepStore) -> None:
        data = json.loads((store.root / STUDY_FILE).read_text())
        self.conf = validate(data["settings"], StudyConf, "sweep")
        self.dists = from_json(data["space"])
        # the objective and its direction, or lists of them (runner.study.objectives)
        self.metric: str | list[str] = data["metric"]
        self.direction: str | list[str] = data["direction"]
        self.template: dict[str, Any] = data["template"]
        self.interpolated: bool = bool(data.get("interpolated"))
        self.name = f"runner-{store.root.name}"
        self.warm = load_warm(store.root)  # other sweeps' ended trials (sweep.warm_start)

    def check(self, params: dict[str, Any]) -> None:
        """A proposal sets exactly the searched keys, each inside its distribution: anything
        else (a sampler's fault, a study file changed by hand) is refused, not run."""
        from runner.errors import SweepError

        if set(params) != set(self.dists):
            odd = sorted(set(params) ^ set(self.dists))
            raise SweepError(f"a proposal sets {', '.join(odd)} outside the study's space "
                             f"({', '.join(self.dists)}): refused")
        for key, value in params.items():
            if not inside(self.dists[key], value):
                raise SweepError(f"a proposal's {key} is outside its distribution "
                                 f"{self.dists[key]}: refused")

    def config(self, params: dict[str, Any]) -> dict[str, Any]:
        """A trial's config: the template with its parameters set (checked first)."""
        from runner.planning.sweep import set_dotted

        self.check(params)

        if not self.interpolated:
            out = copy.deepcopy(self.template)
            for key, value in params.items():
                set_dotted(out, key, value)
            return out
        from omegaconf import OmegaConf

        node = OmegaConf.create(self.template)
        for key, value in params.items():
            OmegaConf.update(node, key, value, merge=False, force_add=True)
        resolved = OmegaConf.to_container(node, resolve=True)
        assert isinstance(resolved, dict)
        return {str(k): v for k, v in resolved.items()}


FULL_COLLECT_EVERY = 256


def proposal_files(study: Any, trial: Any) -> dict[str, str]:
    """The sampler's attributes of the trial it just asked (e.g. NSGA-II's generation), to be
    frozen with the trial's run (``history.PROPOSAL``); none for samplers that keep none."""
    attrs = {k: v for k, v in study._storage.get_trial(trial._trial_id).system_attrs.items()
             if k != "fixed_params"}  # (sweep.enqueue's, in study.json already)
    return {PROPOSAL: json.dumps(attrs, sort_keys=True, default=str)} if attrs else {}


class StudySource:
    def __init__(self, store: SweepStore) -> None:
        self.store = store
        self.study = definition = StudyDefinition(self.store)
        self.sampling = SamplerStudy(definition.conf, definition.dists, definition.direction,
                                     definition.name, definition.warm)
        self.stopped: str | None = None  # a stopping rule that ended the proposals, if one did
        self.proposals = 0
        # the runs' states: ended trials read once, not at every proposal
        self.live = LiveScan(store)
        self.memo: dict[str, Any] = {}  # (history.load's)

    def _synced(self, number: int, rows: list[Any]) -> Any:
        metric = self.study.metric
        fresh = self.live.changes()  # (what the looks read afresh since the last sync)
        return self.sampling.sync(
            lambda known: load(self.store, metric, known, rows, self.memo), number,
            None if fresh is None else lambda known: load(self.store, metric, known, fresh,
                                                          self.memo))

    def remaining(self) -> int:
        """Trials not proposed yet (none once a stopping rule has ended the study)."""
        left = max(0, self.study.conf.n_trials - len(self.store.manifest["runs"]))
        if left:
            from runner.study.stopping import stop_reason

            definition = self.study
            if stop_reason(definition.conf, self.live.rows, definition.metric,
                           definition.direction):
                return 0
        return left

    def _as_of(self, number: int, rows: list[Any]) -> Any:
        """Deterministic mode: a study of what trial ``number`` may see, or None (wait)."""
        definition = self.study
        seen = as_of(load(self.store, definition.metric, rows=rows), number,
                     int(definition.conf.ahead or 0))
        if seen is None:
            return None
        fresh = SamplerStudy(definition.conf, definition.dists, definition.direction,
                             definition.name, definition.warm)  # (not what later trials see)
        return fresh.sync(lambda known: seen, number)

    def propose(self) -> RunRef | None | bool:
        """Freeze the next trial (None once the study has ``n_trials``; False: not yet, in
        deterministic mode, while an earlier trial it must see has not ended)."""
        from runner.planning.sweep import RunSpec

        definition = self.study
        with study_lock(self.store):
            self.store.refresh()  # other runners may have added trials
            number = len(self.store.manifest["runs"])
            if number >= definition.conf.n_trials:
                return None
            from runner.study.stopping import stop_reason

            rows = self.live.rows()
            self.stopped = stop_reason(definition.conf, lambda: rows, definition.metric,
                                       definition.direction)
            if self.stopped:
                return None
            if definition.conf.deterministic:
                study = self._as_of(number, rows)
                if study is None:
                    return False
            else:
                study = self._synced(number, rows)
            if number < len(definition.conf.enqueue):  # settings to try first, as given
                study.enqueue_trial(dict(definition.conf.enqueue[number]),
                                    skip_if_exists=False)
            trial = study.ask(definition.dists)
            assert trial.number == number + len(definition.warm), (trial.number, number)
            values = {TRIAL_KEY: number, **trial.params}
            spec = RunSpec(run_id(values), run_dirname(values), values,
                           definition.config(dict(trial.params)), index=number,
                           files=proposal_files(study, trial))
            try:
                (ref,) = self.store.add_runs([spec])
            except BaseException:
                self.sampling.forget()  # (the asked trial was never frozen)
                raise
            if not definition.conf.deterministic:
                self.sampling.asked(number)  # the asked trial is that run from now on
        # what the study holds now lives as long as the study: out of the collector's sight,
        # so that a full collection (which walks every tracked object) does not grow with the
        # study and land, tens of ms long, in some later proposal; what is freed later by
        # reference counting is freed as before, and cyclic garbage kept by a freeze is
        # collected once every FULL_COLLECT_EVERY proposals (one proposal in 256 pays it)
        self.proposals += 1
        if self.proposals % FULL_COLLECT_EVERY == 0:
            gc.unfreeze()
            gc.collect()
        gc.freeze()
        return ref
