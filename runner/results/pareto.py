"""Several objectives: the Pareto front (the settings that no other beats on every objective at
once) and a choice from it (``retrain-best --pick``).

A setting is one group of runs, as ``report`` groups them (keyed by every varying value but the
seed), and its point is the mean of each objective over its runs; a setting without a value of
every objective is not on the front. ``--pick`` narrows the front with constraints
(``cost<=2``) and takes the setting with the highest weighted score (``val/acc=1,cost=0.5``):
each objective scaled to [0, 1] over the remaining settings, 1 the best, times its weight. With
no weight, the first objective decides.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from runner.errors import RunnerError

T = TypeVar("T")


@dataclass(frozen=True)
class Point(Generic[T]):
    item: T  # a group of runs, a run, ...
    values: tuple[float, ...]  # one per objective


def _signed(values: Sequence[float], modes: Sequence[str]) -> tuple[float, ...]:
    """Values with max objectives negated: smaller is better on every axis."""
    return tuple(-v if m == "max" else v for v, m in zip(values, modes, strict=True))


def front(points: Sequence[Point[T]], modes: Sequence[str]) -> list[Point[T]]:
    """The points no other point dominates (at least as good on every objective and better on
    one), best first by the first objective. Points with a NaN are never on it. Equal points
    are all kept. O(n log n + n * front size)."""
    clean = [p for p in points if not any(math.isnan(v) for v in p.values)]
    order = sorted(clean, key=lambda p: _signed(p.values, modes))
    kept: list[tuple[tuple[float, ...], Point[T]]] = []
    for point in order:
        mine = _signed(point.values, modes)
        # sorted lexicographically: only a point before this one can dominate it
        if not any(_dominates(theirs, mine) for theirs, _ in kept):
            kept.append((mine, point))
    return [p for _, p in kept]


def _dominates(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    return all(x <= y for x, y in zip(a, b, strict=True)) and a != b


# ------------------------------------------------------------------------------ --pick

_OPS: dict[str, Callable[[float, float], bool]] = {
    "<=": operator.le, ">=": operator.ge, "<": operator.lt, ">": operator.gt}
_ITEM = re.compile(r"^\s*(?P<key>[^<>=]+?)\s*(?P<op><=|>=|<|>|=)\s*(?P<num>[^<>=]+?)\s*$")


@dataclass
class Pick:
    constraints: list[tuple[str, str, float]] = field(default_factory=list)
    weights: dict[str, float] = field(default_factory=dict)


def parse_pick(text: str, metrics: Sequence[str]) -> Pick:
    """``--pick 'cost<=2,val/acc=1,cost=0.5'``: constraints (``<=``, ``>=``, ``<``, ``>``) and
    weights (``=``, at least 0) on the objectives, comma separated."""
    pick = Pick()
    for item in (i for i in text.split(",") if i.strip()):
        match = _ITEM.match(item)
        if match is None:
            raise RunnerError(f"--pick '{item.strip()}': give METRIC<=X, METRIC>=X (a constraint) "
                              f"or METRIC=W (a weight), e.g. --pick '{metrics[-1]}<=1,"
                              f"{metrics[0]}=1'")
        key, op, number = match["key"], match["op"], match["num"]
        if key not in metrics:
            raise RunnerError(f"--pick '{item.strip()}': {key} is not one of the objectives "
                              f"({', '.join(metrics)})")
        try:
            value = float(number)
        except ValueError:
            raise RunnerError(f"--pick '{item.strip()}': {number!r} is not a number") from None
        if math.isnan(value):
            raise RunnerError(f"--pick '{item.strip()}': {number!r} is not a number")
        if op == "=":
            if value < 0 or math.isinf(value):
                raise RunnerError(f"--pick '{item.strip()}': a weight is a number >= 0 (how "
                                  "much the objective counts; its direction is the study's)")
            pick.weights[key] = value
        else:
            pick.constraints.append((key, op, value))
    if not pick.constraints and not pick.weights:
        raise RunnerError("--pick is empty: give constraints (cost<=2) and/or weights "
                          "(val/acc=1,cost=0.5)")
    if pick.weights and not any(pick.weights.values()):
        raise RunnerError("--pick: every weight is 0; give one objective a weight above 0")
    return pick


def choose(members: Sequence[Point[T]], metrics: Sequence[str], modes: Sequence[str],
           pick: Pick) -> tuple[Point[T], str]:
    """The member ``pick`` chooses, and a line that says why."""
    kept = list(members)
    for key, op, bound in pick.constraints:
        i = metrics.index(key)
        inside = [p for p in kept if _OPS[op](p.values[i], bound)]
        if not inside:
            lo = min(p.values[i] for p in kept) if kept else math.nan
            hi = max(p.values[i] for p in kept) if kept else math.nan
            raise RunnerError(f"--pick: no setting of the front has {key}{op}{bound:g} (with "
                              f"the constraints before it, the front's {key} spans "
                              f"{lo:.4g} .. {hi:.4g})")
        kept = inside
    weights = pick.weights or {metrics[0]: 1.0}
    spans = {}
    for key in weights:
        i = metrics.index(key)
        column = [p.values[i] for p in kept]
        spans[key] = (i, min(column), max(column))

    def score(point: Point[T]) -> float:
        total = 0.0
        for key, weight in weights.items():
            i, lo, hi = spans[key]
            scaled = 1.0 if hi == lo else (point.values[i] - lo) / (hi - lo)
            total += weight * (scaled if modes[i] == "max" else 1.0 - scaled)
        return total

    # the highest score; a tie goes to the better first objective, then to the earlier setting
    best = min(kept, key=lambda p: (-score(p), _signed(p.values, modes)[0]))
    said = (", ".join(f"{k}{op}{b:g}" for k, op, b in pick.constraints) or "no constraint") + \
        f": {len(kept)} of {len(members)} setting(s) of the front; " + (
            "weights " + ", ".join(f"{k}={w:g}" for k, w in weights.items())
            if pick.weights else f"the best {metrics[0]}")
    return best, said


# ------------------------------------------------------------------------------ a sweep's

def group_points(store: Any, metrics: Sequence[str], modes: Sequence[str], how: str = "final"
                 ) -> tuple[list[Point[Any]], int]:
    """Every setting of ``store`` with a value of each objective, as a point of the means over
    its runs (the group is ``report``'s), and how many settings there are in all."""
    from runner.results.aggregate import group_runs, results_of
    from runner.results.status import scan

    rows = scan(store)
    per_metric = [group_runs(store, results_of(rows, m, how, mode))
                  for m, mode in zip(metrics, modes, strict=True)]
    points = []
    for groups in zip(*per_metric, strict=True):  # (one grouping of the same runs per metric)
        means = [g.values.mean() if len(g.values) else math.nan for g in groups]
        if not any(math.isnan(v) for v in means):
            points.append(Point(groups[0], tuple(float(v) for v in means)))
    return points, len(per_metric[0])


def study_objectives(manifest: dict[str, Any]) -> tuple[list[str], list[str]] | None:
    """A study's objectives and their directions when it has several, else None."""
    if manifest.get("kind") != "optuna":
        return None
    sweep = (manifest.get("execution") or {}).get("sweep") or {}
    metric, mode = sweep.get("metric"), sweep.get("mode")
    if not isinstance(metric, list) or len(metric) < 2:
        return None
    from runner.results.modes import mode_for

    modes = mode if isinstance(mode, list) else [None] * len(metric)
    return [str(m) for m in metric], [mode_for(str(m), d) for m, d in
                                      zip(metric, modes, strict=True)]


def run_front(store: Any, metrics: Sequence[str], modes: Sequence[str]) -> tuple[list[Any], int]:
    """The completed runs on the Pareto front of ``metrics`` (status rows, best first by the
    first objective) and how many completed runs have a value of every objective."""
    from runner.results.queries import metric_of, select_runs

    points = []
    for row in select_runs(store, "COMPLETED"):
        values = [metric_of(row, m) for m in metrics]
        if all(v is not None for v in values):
            points.append(Point(row, tuple(float(v) for v in values if v is not None)))
    return [p.item for p in front(points, modes)], len(points)
