"""When a study stops proposing before ``n_trials``: ``sweep.target`` (the objective reached a
value), ``sweep.patience`` (that many completed trials in a row, by trial number, without a
better objective) and ``sweep.timeout`` (seconds during which some trial of the study ran,
counted across launches, so a study resumed a week later has what it had left). Each is read
from the run store when a proposal is asked, like everything else a study knows; the reason is
what the study's end says."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def stop_reason(conf: Any, runs: Callable[[], list[Any]], metric: Any, direction: Any
                ) -> str | None:
    """Why no more trials may be proposed, or None (``runs``: gives the runs' statuses, asked
    only if a rule is set)."""
    if conf.target is None and conf.patience is None and conf.timeout is None:
        return None
    from runner.study.history import TRIAL_KEY, objective

    rows = runs()
    if conf.target is None and conf.patience is None:  # (one objective's rules)
        done = []
    else:
        done = sorted((int(r.ref.values[TRIAL_KEY]), v) for r in rows if r.state == "COMPLETED"
                      and isinstance(r.ref.values.get(TRIAL_KEY), int)
                      and (v := objective(r, metric)) is not None)
    better = (lambda a, b: a > b) if direction in ("max", "maximize") else (lambda a, b: a < b)
    if conf.target is not None:
        hit = next(((n, v) for n, v in done if v == conf.target or better(v, conf.target)), None)
        if hit is not None:
            return (f"sweep.target={conf.target:g} reached by trial {hit[0]} "
                    f"({metric}={hit[1]:.6g})")
    if conf.patience is not None and done:
        best_n, best, since = done[0][0], done[0][1], 0
        for n, v in done[1:]:
            if better(v, best):
                best_n, best, since = n, v, 0
            else:
                since += 1
        if since >= conf.patience:
            return (f"sweep.patience={conf.patience}: the last {since} completed trials found "
                    f"no better {metric} than trial {best_n}'s {best:.6g}")
    if conf.timeout is not None:
        spent = busy_seconds(rows, time.time())
        if spent >= conf.timeout:
            return f"sweep.timeout={conf.timeout:g}s spent running trials ({spent:.0f}s)"
    return None


# (run directory, its current attempt) -> the spans of its earlier attempts, which never change
_EARLIER: dict[tuple[str, int], list[tuple[float, float]]] = {}


def _earlier_spans(row: Any) -> list[tuple[float, float]]:
    """The spans of a run's earlier attempts (an interrupted trial resumed, a retry), as their
    records in ``attempts/`` say; read once per attempt."""
    attempt = row.record.attempt
    key = (row.ref.dir, attempt)
    if key not in _EARLIER:
        from runner.results.show import attempts_of

        _EARLIER[key] = [(a["start"], max(a["start"], a["end"]))
                         for a in attempts_of(row.ref.paths)
                         if a.get("attempt", attempt) < attempt and a.get("start") is not None
                         and a.get("end") is not None]
    return _EARLIER[key]


def busy_seconds(rows: list[Any], now: float) -> float:
    """Seconds during which at least one of the runs ran (the union of their attempts' spans,
    earlier attempts included, as their records say)."""
    spans = []
    for row in rows:
        data = row.record.data if row.record is not None else {}
        if row.record is not None and row.record.attempt > 1:
            spans.extend(_earlier_spans(row))
        try:
            start = float(data["started"])
        except (KeyError, TypeError, ValueError):
            continue
        end = now if row.state == "RUNNING" else float(data.get("time") or start)
        spans.append((start, max(start, end)))
    total, reach = 0.0, float("-inf")
    for start, end in sorted(spans):
        if end <= reach:
            continue
        total += end - max(start, reach)
        reach = end
    return total
