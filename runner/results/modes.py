"""Which way a metric is better, from its name (numpy-free: the end of every sweep asks)."""

from __future__ import annotations

import re

from runner.errors import RunnerError

_LOWER_IS_BETTER = {"loss", "error", "err", "mse", "mae", "rmse", "nll", "perplexity", "ppl",
                    "wer", "cer", "regret"}
_HIGHER_IS_BETTER = {"acc", "accuracy", "f1", "auc", "precision", "recall", "bleu", "reward",
                     "return", "iou", "map"}


def mode_for(metric: str, mode: str | None = None) -> str:
    """``mode`` if given, else what the metric's name says unambiguously (``val/loss`` -> min,
    ``val/acc`` -> max); otherwise an error asking for it."""
    if mode is not None:
        if mode not in ("max", "min"):
            raise RunnerError(f"--mode '{mode}' is not one of: max, min")
        return mode
    words = {w for w in re.split(r"[^a-z0-9]+", metric.lower()) if w}
    lower, higher = words & _LOWER_IS_BETTER, words & _HIGHER_IS_BETTER
    if lower and not higher:
        return "min"
    if higher and not lower:
        return "max"
    raise RunnerError(f"is a higher or a lower '{metric}' better? give --mode max or --mode min "
                      "(only names such as loss/error or acc say it themselves)")
