"""What mattered in a search: each swept hyperparameter's importance for the reported metric,
by optuna's PED-ANOVA (it needs no model to be fitted, and no scikit-learn), over the runs that
have a value. Spaces are rebuilt from the values seen: numbers as a range (log where the search
space is log), anything else as categories."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

MIN_RUNS = 5  # fewer runs with a value: no importance is claimed


def importances(results: Sequence[Any], keys: Sequence[str], log_keys: set[str],
                mode: str) -> dict[str, float] | None:
    """key -> importance (they sum to 1), most important first; None without optuna, with
    fewer than ``MIN_RUNS`` valued runs, or with no key that varies."""
    try:
        import optuna
        from optuna.distributions import CategoricalDistribution, FloatDistribution
        from optuna.importance import PedAnovaImportanceEvaluator, get_param_importances
    except ImportError:
        return None
    valued = [r for r in results if r.value is not None and math.isfinite(r.value)]
    if len(valued) < MIN_RUNS:
        return None
    dists: dict[str, Any] = {}
    for key in keys:
        seen = [r.values.get(key) for r in valued]
        numbers = [v for v in seen if isinstance(v, int | float) and not isinstance(v, bool)]
        if len(numbers) == len(seen):
            lo, hi = float(min(numbers)), float(max(numbers))
            if lo < hi:
                dists[key] = FloatDistribution(lo, hi, log=key in log_keys and lo > 0)
        elif len({str(v) for v in seen}) > 1:
            dists[key] = CategoricalDistribution(sorted({str(v) for v in seen}))
    if not dists:
        return None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize" if mode == "max" else "minimize")
    for r in valued:
        params = {k: (float(r.values[k]) if isinstance(d, FloatDistribution)
                      else str(r.values.get(k))) for k, d in dists.items()}
        study.add_trial(optuna.trial.create_trial(params=params, distributions=dists,
                                                  value=float(r.value)))
    try:
        found = get_param_importances(study, evaluator=PedAnovaImportanceEvaluator())
    except Exception:  # (too few distinct values for its estimate, say): nothing claimed
        return None
    return {str(k): float(v) for k, v in found.items()}
