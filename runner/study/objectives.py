"""A study's objectives: ``sweep.metric`` (one key, or a list of them) and ``sweep.mode`` (one
direction, or one per objective), checked when the study is planned.

With several objectives (``sweep.metric=[val/acc,cost] sweep.mode=[max,min]``) optuna searches
for the Pareto front (the settings no other beats on every objective at once) with a sampler
that can (tpe, nsga2, nsga3, gp, random, qmc). What needs one objective is refused here, before
anything is written: a pruner (optuna judges one objective's reports), ``sweep.target`` and
``sweep.patience`` (which compare one value), and the cmaes sampler.
"""

from __future__ import annotations

from typing import Any

from runner.errors import RunnerError, SweepError

# samplers that search several objectives at once (cmaes optimises one)
SEVERAL = ("tpe", "nsga2", "nsga3", "gp", "random", "qmc")


def objectives(conf: Any, runner_cfg: Any) -> tuple[list[str], list[str]]:
    """The study's metrics and their directions (max/min), checked; a single-objective study
    gives lists of one."""
    raw = conf.metric if conf.metric not in (None, "", []) else runner_cfg.get("metric")
    if not raw:
        raise SweepError("sweep=optuna needs the objective: sweep.metric=<a key the task logs "
                         "or returns, e.g. val/acc> (or several: sweep.metric=[val/acc,cost])")
    metrics = list(raw) if isinstance(raw, list | tuple) else [raw]
    for metric in metrics:
        if not isinstance(metric, str) or not metric.strip():
            raise SweepError(f"sweep.metric: {metric!r} is not a metric's name (a key the task "
                             "logs or returns, e.g. val/acc)")
    twice = sorted({m for m in metrics if metrics.count(m) > 1})
    if twice:
        raise SweepError(f"sweep.metric names {', '.join(twice)} twice: each objective once")
    mode = conf.mode if conf.mode is not None else (
        runner_cfg.get("mode") if len(metrics) == 1 else None)
    if isinstance(mode, list | tuple):
        modes = list(mode)
        if len(modes) != len(metrics):
            raise SweepError(f"sweep.mode gives {len(modes)} direction(s) for {len(metrics)} "
                             f"objective(s) ({', '.join(metrics)}): one per objective, e.g. "
                             f"sweep.mode=[{','.join(['max'] * len(metrics))}]")
    elif mode is not None and len(metrics) > 1:
        raise SweepError(f"sweep.mode={mode} with {len(metrics)} objectives: give one direction "
                         f"per objective, e.g. sweep.mode=[{','.join([mode] * len(metrics))}]")
    else:
        modes = [mode] * len(metrics)
    directions = []
    for metric, direction in zip(metrics, modes, strict=True):
        if direction not in (None, "max", "min"):
            raise SweepError(f"sweep.mode: '{direction}' (for {metric}) is not one of: max, min")
        try:
            from runner.results.modes import mode_for

            directions.append(mode_for(metric, direction))
        except RunnerError:
            raise SweepError(f"is a higher or a lower '{metric}' better? give sweep.mode="
                             + ("max or min" if len(metrics) == 1 else
                                f"[...] with one of max, min per objective ({', '.join(metrics)})")
                             ) from None
    if len(metrics) > 1:
        _refuse_single_only(conf, metrics)
    return metrics, directions


def _refuse_single_only(conf: Any, metrics: list[str]) -> None:
    several = f"a study of {len(metrics)} objectives ({', '.join(metrics)})"
    if conf.pruner != "none":
        raise SweepError(f"sweep.pruner={conf.pruner}: optuna cannot prune {several} (its "
                         "pruners judge one objective's reports); use sweep.pruner=none")
    if conf.sampler not in SEVERAL:
        raise SweepError(f"sweep.sampler={conf.sampler} optimises one objective; {several} "
                         f"takes one of: {', '.join(SEVERAL)}")
    for rule in ("target", "patience"):
        if getattr(conf, rule) is not None:
            raise SweepError(f"sweep.{rule} compares one objective's values; {several} stops "
                             "at sweep.n_trials or sweep.timeout")


def as_stored(metrics: list[str], directions: list[str]) -> tuple[Any, Any]:
    """How ``study.json`` keeps them: a name and a direction for one objective (as studies have
    always kept them), lists for several."""
    if len(metrics) == 1:
        return metrics[0], directions[0]
    return list(metrics), list(directions)


def optuna_directions(direction: str | list[str]) -> list[Any]:
    """``max``/``min`` (or a list of them) as optuna names them."""
    items = direction if isinstance(direction, list) else [direction]
    return ["maximize" if d in ("max", "maximize") else "minimize" for d in items]
