"""Results of a sweep: metric series per run, one number per run, groups across seeds.

A *group* is a setting: the runs that share every varying value except the seed. Per group this
computes count, mean, standard deviation, median and a 95% confidence interval of the mean of
the runs' final (or best, or last-k mean) metric: Student's t interval, mean +- t(0.975, n-1) *
s / sqrt(n), the one method the table and the band of ``curves.png`` share; with n < 2 there is no
interval (n/a), never a zero-width one. Crashed runs and runs without the metric are counted per
group and never silently dropped.
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from runner.errors import RunnerError
from runner.results.modes import mode_for  # noqa: F401 (its home before; kept importable)
from runner.results.status import RunStatus, scan
from runner.storage.store import SweepStore

CI_METHOD = ("95% CI: Student's t interval of the mean over seeds, mean ± t(0.975, n−1)·s/√n; "
             "n/a where n < 2")
# t(0.975, df) for small df (exact to 7 digits); beyond, the Cornish-Fisher expansion (< 1e-4)
_T975 = {1: 12.7062047, 2: 4.3026527, 3: 3.1824463, 4: 2.7764451, 5: 2.5705818, 6: 2.4469119,
         7: 2.3646243, 8: 2.3060041, 9: 2.2621572, 10: 2.2281389}


@dataclass
class RunResult:
    """One run: its values, state, and the metric's series and reduced value."""

    id: str
    dir: str
    state: str
    values: dict[str, Any]
    summary: dict[str, Any]
    steps: np.ndarray
    series: np.ndarray
    value: float | None  # the reduced metric (None: crashed, unfinished or never logged)


@dataclass
class Group:
    key: tuple[tuple[str, Any], ...]
    runs: list[RunResult] = field(default_factory=list)

    @property
    def label(self) -> str:
        return ", ".join(f"{k}={_fmt(v)}" for k, v in self.key) or "all runs"

    @property
    def values(self) -> np.ndarray:
        return np.array([r.value for r in self.runs if r.value is not None], dtype=float)

    @property
    def crashed(self) -> int:
        return sum(r.state == "CRASHED" for r in self.runs)

    @property
    def pruned(self) -> int:
        """Runs a study's pruner stopped early (by design: not missing)."""
        return sum(r.state == "PRUNED" for r in self.runs)

    @property
    def missing(self) -> int:
        """Runs that neither crashed nor were pruned but give no value (not finished, metric
        never logged)."""
        return sum(r.value is None and r.state not in ("CRASHED", "PRUNED") for r in self.runs)

    def stats(self) -> dict[str, Any]:
        v = self.values
        lo, hi = t_interval(v)
        return {"group": self.label, "runs": len(self.runs), "n": len(v),
                "crashed": self.crashed, "pruned": self.pruned, "missing": self.missing,
                "mean": float(v.mean()) if len(v) else math.nan,
                "std": float(v.std(ddof=1)) if len(v) > 1 else math.nan,  # n/a, not 0, for n=1
                "median": float(np.median(v)) if len(v) else math.nan,
                "ci_low": lo, "ci_high": hi}


def t975(df: int) -> float:
    """The 97.5% quantile of Student's t with ``df`` degrees of freedom (df >= 1)."""
    if df < 1:
        return math.nan
    if df in _T975:
        return _T975[df]
    z, v = 1.959963984540054, float(df)
    g1 = (z**3 + z) / 4
    g2 = (5 * z**5 + 16 * z**3 + 3 * z) / 96
    g3 = (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / 384
    g4 = (79 * z**9 + 776 * z**7 + 1482 * z**5 - 1920 * z**3 - 945 * z) / 92160
    return z + g1 / v + g2 / v**2 + g3 / v**3 + g4 / v**4


def t_interval(values: np.ndarray) -> tuple[float, float]:
    """95% t interval of the mean; (nan, nan) with fewer than two values."""
    n = len(values)
    if n < 2:
        return math.nan, math.nan
    mean = float(np.mean(values))
    half = t975(n - 1) * float(np.std(values, ddof=1)) / math.sqrt(n)
    return mean - half, mean + half


def read_series(metrics_path: str, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """(steps, values) of one metric; a step logged twice (resumed attempt) keeps the latest."""
    by_step: dict[int, float] = {}
    needle = json.dumps(metric)
    try:
        with open(metrics_path, encoding="utf-8") as f:
            for line in f:
                if needle not in line:  # most lines never name the metric: skip the parse
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a torn last line of a killed run
                value = record.get(metric)
                if isinstance(value, int | float) and not isinstance(value, bool):
                    by_step[int(record["step"])] = float(value)
    except FileNotFoundError:
        pass
    steps = np.array(sorted(by_step), dtype=float)
    return steps, np.array([by_step[int(s)] for s in steps], dtype=float)


def reduce(series: np.ndarray, how: str, mode: str) -> float | None:
    """final | best | last:K -> one number (None for an empty series)."""
    if len(series) == 0:
        return None
    if how == "final":
        return float(series[-1])
    if how == "best":
        return float(series.max() if mode == "max" else series.min())
    if how.startswith("last:"):
        text = how.split(":", 1)[1]
        if not text.isdigit() or int(text) < 1:
            raise RunnerError(f"--reduce '{how}': K in last:K must be a whole number >= 1")
        return float(series[-int(text):].mean())
    raise RunnerError(f"--reduce '{how}' is not one of: final, best, last:K")


def seed_key(store: SweepStore) -> str:
    sweep = store.manifest.get("execution", {}).get("sweep") or {}
    return str(sweep.get("seed_key") or "seed")


def _run_result(row: RunStatus, metric: str, how: str, mode: str) -> RunResult:
    steps, series = read_series(f"{row.ref.dir}/metrics.jsonl", metric)
    value = None
    if row.state == "COMPLETED":
        summary_value = row.summary.get(metric)
        if how == "final" and isinstance(summary_value, int | float):
            value = float(summary_value)  # the task's own final word
        else:
            value = reduce(series, how, mode)
    return RunResult(row.ref.id, row.ref.dir, row.state, row.ref.values, row.summary, steps,
                     series, value)


def collect(store: SweepStore, metric: str, how: str = "final", mode: str = "max"
            ) -> list[RunResult]:
    if mode not in ("max", "min"):
        raise RunnerError(f"--mode '{mode}' is not one of: max, min")
    reduce(np.array([0.0]), how, mode)  # validate --reduce before reading anything
    results = results_of(scan(store), metric, how, mode)
    if not any(r.value is not None or len(r.steps) for r in results):
        known = sorted({k for r in results for k in r.summary})
        raise RunnerError(f"no run of {store.root} logged the metric '{metric}'"
                          + (f"; summaries have: {', '.join(known)}" if known else ""))
    return results


def results_of(rows: list[RunStatus], metric: str, how: str = "final", mode: str = "max"
               ) -> list[RunResult]:
    """Each run's series of ``metric`` and its reduced value (rows read by the caller)."""
    return [_run_result(row, metric, how, mode) for row in rows]


def group_runs(store: SweepStore, results: list[RunResult]) -> list[Group]:
    """Groups in manifest order of their first run; the seed never splits a group. Keyed by
    every key that differs between runs: a key a run leaves out (a list sweep's entry) takes
    the value of its resolved config, so settings are never merged."""
    skip = seed_key(store)
    varying = [k for k in store.manifest.get("varying", []) if k != skip]
    groups: dict[tuple[tuple[str, Any], ...], Group] = {}
    for result in results:
        values = result.values
        if any(k not in values for k in varying):
            values = {**_config_values(result.dir, [k for k in varying if k not in values]),
                      **values}
        key = tuple((k, values.get(k)) for k in varying)
        groups.setdefault(key, Group(key)).runs.append(result)
    return list(groups.values())


def used_seeds(store: SweepStore, key: str) -> set[int]:
    """Every seed a run of ``store`` was frozen with: its swept value, else its resolved
    config's (a study, a random search or one run has no seed axis, yet each run has a seed)."""
    seeds = set()
    for ref in store.runs():
        value = ref.values[key] if key in ref.values else _config_values(ref.dir, [key])[key]
        if isinstance(value, int) and not isinstance(value, bool):
            seeds.add(value)
    return seeds


def _config_values(run_dir: str, keys: list[str]) -> dict[str, Any]:
    """``keys`` as the run's resolved config has them (a mapping, e.g. a config group's node,
    as "(default)")."""
    from runner.config.configfile import load_run_config
    from runner.storage.paths import RunPaths

    config: Any = load_run_config(RunPaths(Path(run_dir)))
    out: dict[str, Any] = {}
    for key in keys:
        node = config
        for part in key.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        out[key] = "(default)" if isinstance(node, dict | list) else node
    return out


def rank(groups: list[Group], mode: str) -> list[Group]:
    """Best first; groups without any value last."""
    def score(g: Group) -> float:
        v = g.values
        if not len(v):
            return math.inf
        return -float(v.mean()) if mode == "max" else float(v.mean())
    return sorted(groups, key=score)


def runs_csv(results: list[RunResult], metric: str,
             tags: dict[str, tuple[str, ...]] | None = None) -> str:
    """A tidy table: one row per run, its values, state, the metric, every summary key and
    (``tags``: run id -> its tags) its tags."""
    value_keys = list(dict.fromkeys(k for r in results for k in r.values))
    summary_keys = list(dict.fromkeys(k for r in results for k in r.summary))
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["run_id", "state", *value_keys, metric,
                     *(f"summary.{k}" for k in summary_keys), *(["tags"] if tags else []),
                     "dir"])
    for r in results:
        writer.writerow([r.id, r.state, *(r.values.get(k, "") for k in value_keys),
                         "" if r.value is None else r.value,
                         *(r.summary.get(k, "") for k in summary_keys),
                         *([" ".join(tags.get(r.id, ()))] if tags else []), r.dir])
    return buf.getvalue()


def groups_csv(groups: list[Group]) -> str:
    buf = io.StringIO()
    stats = [g.stats() for g in groups]
    writer = csv.DictWriter(buf, fieldnames=list(stats[0]))
    writer.writeheader()
    writer.writerows(stats)
    return buf.getvalue()


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def write(path: Path, text: str) -> Path:
    from runner.config.secrets import redact

    path.parent.mkdir(parents=True, exist_ok=True)
    text = redact(text)
    path.write_text(text if text.endswith("\n") or not text else text + "\n")  # POSIX lines
    return path
