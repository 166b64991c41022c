"""The optuna study a sampler asks from, kept up to date instead of rebuilt per proposal.

``sync(load)`` brings it to what ``load(known)`` lists (``known``: trial number -> how a trial
had ended when it was read, so an ended trial is read once): a new trial is added, a pending one
updated with its reports and its end; a finished trial that runs again (a retry, a rerun) or a
change of the rung the sampler models (``runner.study.fidelity``) rebuilds it. Given the trials
that changed since the last sync (``changed``), it applies those alone. The sweep loop's
proposals (``runner.study.source``) and the LCBench benchmark ask through this one class.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from runner.study.config import StudyConf, make_sampler, trial_seed
from runner.study.fidelity import applies, random_fraction, view
from runner.study.history import BELOW_RUNG, FINAL, NOT_SEEN, Trial, add, study_of, update

SEEN_FINAL = (*FINAL, NOT_SEEN, BELOW_RUNG)  # states a trial the sampler holds never leaves


def sampler_for(conf: StudyConf, number: int, rung: float | None) -> Any:
    """The sampler that proposes trial ``number`` (``rung``: the one the sampler models),
    seeded by the trial number: a proposal does not depend on which process (or how many
    earlier proposals in it) asks. A random one for ``random_fraction`` of the trials (drawn
    from the same seed), and while a sampler that learns from rungs has none modelled yet."""
    import random

    seed = trial_seed(conf.seed, number)
    if (applies(conf) and rung is None) or random.Random(seed).random() < random_fraction(conf):
        return make_sampler(StudyConf(sampler="random"), seed)
    return make_sampler(conf, seed)


def study_for(conf: StudyConf, dists: dict[str, Any], direction: str | list[str], name: str,
              rung: float | None) -> Any:
    """An empty optuna study for the trials as the sampler sees them. Learning from a rung, it
    has no pruner: with optuna's Hyperband the sampler would see only the trials of the new
    trial's bracket, while a value at a rung is one at that budget whatever the bracket (BOHB
    models them together)."""
    if rung is not None:
        conf = dataclasses.replace(conf, pruner="none")
    return study_of([], conf, dists, direction, name)


class SamplerStudy:
    def __init__(self, conf: StudyConf, dists: dict[str, Any], direction: str | list[str],
                 name: str, warm: list[Trial] | None = None) -> None:
        self.conf, self.dists, self.direction, self.name = conf, dists, direction, name
        self.warm = list(warm or [])  # other sweeps' ended trials, before the study's own
        self.forget()

    def forget(self) -> None:
        self.optuna: Any = None
        self._held: dict[int, str] = {}  # trial number -> the state the sampler sees it in
        self._ended: dict[int, str] = {}  # trial number -> how it had ended when read (.end)
        self._reached: dict[int, dict[float, float]] = {}  # ended trials' rung values
        self._rung: float | None = None  # the rung the sampler models
        self._spaces: dict[tuple[str, bool], Any] = {}  # the study's search spaces, so far

    def sync(self, load: Callable[[dict[int, str]], list[Trial]], number: int,
             changed: Callable[[dict[int, str]], list[Trial]] | None = None) -> Any:
        """The study, up to date, with a sampler seeded for trial ``number``. ``changed``: the
        trials changed since the last sync (None: not known); with them, a study that does not
        learn from rungs is brought forward from those alone, not from every trial."""
        if changed is not None and self.optuna is not None and not applies(self.conf):
            if self._advance(changed(self._ended)):
                study = self.optuna
                study.sampler = self._carried(sampler_for(self.conf, number, None))
                return study
        trials = [*self.warm, *load(self._ended)]
        if len(trials) < len(self._held) or any(
                t.number in self._ended and self._ended[t.number] != t.end for t in trials):
            self.forget()  # a finished trial runs again (retry, rerun): start afresh
            trials = [*self.warm, *load({})]
        self._ended.update((t.number, t.end) for t in trials if t.state in FINAL)
        seen, rung = view(trials, self.conf, len(self.dists), self._reached,
                          str(self.direction))
        study = self.optuna
        if study is None or rung != self._rung or self._seen_otherwise(seen):
            self._held, self._rung = {}, rung  # (the sampler models another view now)
            self._spaces = {}
            study = study_for(self.conf, self.dists, self.direction, self.name, rung)
        for trial in seen:
            held = self._held.get(trial.number)
            if held is None:
                add(study, trial, self.dists)
            elif held not in SEEN_FINAL and not update(study, trial, len(self.warm)):
                self.forget()
                return self.sync(load, number)
            self._held[trial.number] = trial.state
        study.sampler = self._carried(sampler_for(self.conf, number, rung))
        self.optuna = study
        return study

    def _advance(self, trials: list[Trial]) -> bool:
        """Bring the study forward by the trials that changed: a new trial (the next number)
        added, a pending one updated with its reports and its end. False where that is not
        enough (a finished trial seen otherwise, a trial out of turn): what was applied is
        consistent, and the full sync goes on from there."""
        study, held, ended = self.optuna, self._held, self._ended
        for trial in sorted(trials, key=lambda t: t.number):
            if ended.get(trial.number, trial.end) != trial.end:
                return False  # (ended before, and again or not yet: rebuilt)
            before = held.get(trial.number)
            if before is None:
                if trial.number != len(held) - len(self.warm):
                    return False
                add(study, trial, self.dists)
            elif before in SEEN_FINAL:
                if before != trial.state:
                    return False
                continue
            elif not update(study, trial, len(self.warm)):
                return False
            held[trial.number] = trial.state
            if trial.state in FINAL:
                ended[trial.number] = trial.end
        return True

    def _carried(self, sampler: Any) -> Any:
        """``sampler`` with the search space the study's trials share handed on from the
        samplers before it. optuna's samplers work that intersection out incrementally, trial
        by trial, for the one study they sample; runner seeds a fresh sampler per trial, which
        would work it out again over every trial of the study at each proposal (about 90 ms
        at 10,000 trials). It is the same study as long as ``self.optuna`` is (a rebuilt study
        starts afresh), so the result is the one a fresh sampler computes."""
        from optuna.search_space import IntersectionSearchSpace

        for attr, value in vars(sampler).items():
            if isinstance(value, IntersectionSearchSpace):
                key = (attr, bool(getattr(value, "_include_pruned", False)))
                setattr(sampler, attr, self._spaces.setdefault(key, value))
        return sampler

    def _seen_otherwise(self, seen: list[Trial]) -> bool:
        """Whether an ended trial the study holds is seen otherwise now, in the same rung (which
        stopped trials count as bad depends on the trials that went on): the study is rebuilt,
        so it is always the one a fresh runner would build."""
        held = self._held
        return any(held.get(t.number, t.state) != t.state for t in seen
                   if held.get(t.number) in SEEN_FINAL)

    def asked(self, number: int) -> None:
        """The trial just asked is pending from now on (it is in the study already)."""
        self._held[number] = "UNHATCHED"
