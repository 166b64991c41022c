"""A study's search space: ``sweep.params`` and the command line's swept keys, in the grammar
``random.yaml`` uses, as optuna distributions (``interval(a, b)``: uniform float,
``tag(log, interval(a, b))``: log-uniform, ``int(interval(a, b))``: integers, ``choice(...)`` or
``a,b,c``: categorical)."""

from __future__ import annotations

from typing import Any

from runner.errors import SweepError
from runner.planning.sweep import Axis


def distribution(axis: Axis) -> Any:
    from optuna.distributions import (
        CategoricalDistribution,
        FloatDistribution,
        IntDistribution,
    )

    if axis.choices is not None:
        if len(axis.choices) == 1:
            raise SweepError(f"sweep: '{axis.key}' has one value: set it as key=value instead")
        for value in axis.choices:
            if not (value is None or isinstance(value, bool | int | float | str)):
                raise SweepError(f"sweep: '{axis.key}' choice {value!r} is not a number, a "
                                 "string, a bool or null")
        return CategoricalDistribution(list(axis.choices))
    assert axis.interval is not None
    lo, hi = axis.interval.start, axis.interval.end
    assert lo is not None and hi is not None
    log = "log" in axis.interval.tags
    if log and lo <= 0:
        raise SweepError(f"sweep: '{axis.key}': a log interval needs a start > 0, got {lo}")
    if isinstance(lo, int) and isinstance(hi, int):
        return IntDistribution(int(lo), int(hi), log=log)
    return FloatDistribution(float(lo), float(hi), log=log)


def to_json(dists: dict[str, Any]) -> dict[str, str]:
    from optuna.distributions import distribution_to_json

    return {k: distribution_to_json(d) for k, d in dists.items()}


def from_json(data: dict[str, str]) -> dict[str, Any]:
    from optuna.distributions import json_to_distribution

    return {k: json_to_distribution(v) for k, v in data.items()}


def inside(dist: Any, value: Any) -> bool:
    """Whether ``value`` is a value of the optuna distribution ``dist``."""
    try:
        return bool(dist._contains(dist.to_internal_repr(value)))
    except (TypeError, ValueError):
        return False
