"""What a model-based sampler learns from while a pruner stops trials early.

optuna's own view, given ASHA's or Hyperband's trials, ranks every completed trial above every
pruned one and the pruned ones by how far they got. Early in a study few trials have run to the
end, so TPE's "good" group is mostly trials that looked best after the first epochs, and it
proposes more of those: a short-horizon bias that made TPE + ASHA slower than random + ASHA on
LCBench (``benchmarks/bench_lcbench.py``).

BOHB's rule (Falkner et al., 2018) instead: the sampler models the **highest rung that enough
ended trials reached**, each trial by its value there; a trial still running is pending. Once
enough trials ran to the end, the rung is the final value. A trial the pruner stopped at the
first rung, worse there than every trial that went on to the modelled rung, is not left out as
BOHB leaves it but seen as pending for good (``BELOW_RUNG``): TPE's constant liar counts a
pending trial among the bad ones without making the good group larger, so the sampler learns
where the pruner clearly said no instead of proposing there again and again
(``benchmarks/bench_pruned_regions.py``). Any other trial stopped below the modelled rung is
left out as BOHB leaves it (counting every stopped trial as bad crowded the good regions out
late in a study: 0.7 points lower at the budget on LCBench); so is a crashed trial. With
``sweep.learn_from=all`` the sampler sees optuna's own view. The view changes rung only a few
times in a study (3, 9, 27, ... epochs), and a trial's value at a rung never changes once
reached, so a proposal keeps its study up to date instead of rebuilding it
(``runner.study.source``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from runner.study.history import BELOW_RUNG, FINAL, NOT_SEEN, Trial

FINAL_RUNG = math.inf  # the rung of a trial's final value (its objective)


def applies(conf: Any) -> bool:
    """Whether a study's sampler learns from rungs: a model-based sampler, a rung pruner."""
    return (conf.learn_from == "rung" and conf.pruner in ("asha", "hyperband")
            and conf.sampler in ("tpe", "gp"))


def min_trials(conf: Any, n_params: int) -> int:
    """Ended trials a rung needs before it is modelled (BOHB: the parameters + 3)."""
    return int(conf.rung_min_trials) if conf.rung_min_trials else n_params + 3


def random_fraction(conf: Any) -> float:
    """The share of trials proposed at random (BOHB: a third, so that the model's mistakes
    are found out)."""
    if conf.random_fraction is not None:
        return float(conf.random_fraction)
    return 1 / 3 if applies(conf) else 0.0


def rung_values(trial: Trial, conf: Any) -> dict[float, float]:
    """The trial's value at each rung it reached: at rung r (min_resource x factor^k), its
    report at the first resource >= r (the one the pruner judged it at), none from a NaN on;
    its objective at FINAL_RUNG if it completed."""
    out: dict[float, float] = {}
    steps = sorted(trial.intermediate)
    if steps:
        rung, i = float(conf.min_resource), 0
        top = conf.max_resource if conf.max_resource else math.inf
        while rung < top and rung <= steps[-1]:
            while steps[i] < rung:
                i += 1
            value = trial.intermediate[steps[i]]
            if math.isnan(value):  # (a diverged trial: the pruner stopped it there)
                break
            out[rung] = value
            rung *= conf.reduction_factor
    if trial.state == "COMPLETED" and trial.value is not None:
        out[FINAL_RUNG] = trial.value
    return out


def modelled_rung(reached: list[dict[float, float]], need: int) -> float | None:
    """The highest rung at least ``need`` of the ended trials' ``reached`` hold (None: none)."""
    counts: dict[float, int] = {}
    for values in reached:
        for rung in values:
            counts[rung] = counts.get(rung, 0) + 1
    return max((r for r, n in counts.items() if n >= need), default=None)


def seen_at(trial: Trial, values: dict[float, float], rung: float,
            bad: Callable[[dict[float, float]], bool]) -> Trial:
    """How the sampler sees ``trial`` when it models ``rung`` (``bad``: whether a trial the
    pruner stopped is to be counted among the bad ones)."""
    if trial.state not in FINAL:
        return Trial(trial.number, trial.params, "RUNNING")
    if rung in values:
        return Trial(trial.number, trial.params, "COMPLETED", values[rung])
    if trial.state == "PRUNED" and bad(values):
        return Trial(trial.number, trial.params, BELOW_RUNG)  # pending for good: a bad one
    return Trial(trial.number, trial.params, NOT_SEEN)


def clearly_bad(values: dict[int, dict[float, float]], conf: Any, direction: str,
                rung: float) -> Callable[[dict[float, float]], bool]:
    """Which stopped trials the sampler counts among the bad ones: those stopped at the first
    rung worse there than every trial that went on to reach the modelled ``rung`` (or with no
    value there: diverged). The rest of the stopped trials are left out, as BOHB leaves them:
    counting every trial stopped early as bad crowds the good regions out (on LCBench that cost
    0.7 points at the budget), while a trial worse at the first rung than anything that
    went on to do well says its region is poor."""
    first = float(conf.min_resource)
    went_on = [v[first] for v in values.values() if rung in v and first in v]
    if not went_on or rung <= first:
        return lambda _: False
    if direction.startswith("min"):
        cut = max(went_on)
        return lambda v: all(r <= first for r in v) and (first not in v or v[first] > cut)
    cut = min(went_on)
    return lambda v: all(r <= first for r in v) and (first not in v or v[first] < cut)


def view(trials: list[Trial], conf: Any, n_params: int,
         reached: dict[int, dict[float, float]] | None = None,
         direction: str = "max") -> tuple[list[Trial], float | None]:
    """The trials as the sampler sees them and the rung it models (None: optuna's own view,
    while no rung has enough trials). ``reached``: a cache of ended trials' rung values."""
    if not applies(conf):
        return trials, None
    memo = reached if reached is not None else {}
    values = {}
    for trial in trials:
        if trial.state in FINAL:
            if trial.number not in memo:
                memo[trial.number] = rung_values(trial, conf)
            values[trial.number] = memo[trial.number]
    rung = modelled_rung(list(values.values()), min_trials(conf, n_params))
    if rung is None:
        return trials, None
    bad = clearly_bad(values, conf, direction, rung)
    return [seen_at(t, values.get(t.number, {}), rung, bad) for t in trials], rung
