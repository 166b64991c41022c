"""A study's settings (``sweep.*`` with ``kind: optuna``), its sampler and its pruner."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from runner.errors import ConfigError

SAMPLERS = ("tpe", "random", "gp", "cmaes", "qmc", "nsga2", "nsga3")
PRUNERS = ("none", "median", "asha", "hyperband")
STUDY_FILE = "study.json"  # in the sweep directory: the trial template and the space


@dataclass
class StudyConf:
    kind: str = "optuna"
    n_trials: int = field(default=20, metadata={"min": 1})  # every trial ever proposed counts
    # the objective (default: runner.metric), or a list of them (runner.study.objectives)
    metric: Any = None
    mode: Any = None  # max or min (a list: one per objective); default: from the metric's name
    sampler: str = field(default="tpe", metadata={"choices": SAMPLERS})
    pruner: str = field(default="none", metadata={"choices": PRUNERS})
    # a report's resource: this logged key's value (e.g. epoch), else runner.log's step
    resource: str | None = None
    min_resource: int = field(default=3, metadata={"min": 1})
    max_resource: int | None = field(default=None, metadata={"min": 1})  # hyperband
    reduction_factor: int = field(default=3, metadata={"min": 2})
    startup_trials: int = field(default=5, metadata={"min": 0})  # median, tpe: before judging
    warmup_steps: int = field(default=0, metadata={"min": 0})  # median: never before
    # what tpe/gp learn from under asha/hyperband: "rung" (BOHB's rule: the highest rung that
    # `rung_min_trials` ended trials reached, each trial by its value there) or "all" (optuna's
    # own view: completed trials first, pruned ones by how far they got)
    learn_from: str = field(default="rung", metadata={"choices": ("rung", "all")})
    rung_min_trials: int | None = field(default=None, metadata={"min": 1})  # default: params + 3
    # the share of trials proposed at random whatever the sampler (default: 1/3 when learning
    # from rungs, BOHB's; else 0)
    random_fraction: float | None = field(default=None, metadata={"min": 0, "max": 1})
    seed: int = 0
    # nsga2/nsga3: trials per generation (default: optuna's 50)
    population: int | None = field(default=None, metadata={"min": 2})
    params: dict[str, Any] = field(default_factory=dict)
    # proposals that do not depend on finish order: trial n is asked from the results of
    # trials 0 .. n-ahead-1 (waiting for them to end) with the `ahead` trials before it pending,
    # and judged against those same trials only
    deterministic: bool = False
    ahead: int | None = field(default=None, metadata={"min": 0})  # default: max_parallel
    # settings to try first, in order (e.g. a paper's defaults): trial i is enqueue[i]; each a
    # mapping of searched keys to values inside the space (keys left out are sampled)
    enqueue: list[dict[str, Any]] = field(default_factory=list)
    # ended trials of other sweeps (a folder or a list) as history: runner.study.warm
    warm_start: Any = None
    # stopping rules (runner.study.stopping): how far the study goes, like n_trials
    target: float | None = None  # stop proposing once the objective reaches this
    patience: int | None = field(default=None, metadata={"min": 1})  # trials without a better
    timeout: float | None = field(default=None, metadata={"min": 0})  # seconds of trials running


def _optuna() -> Any:
    try:
        import optuna
    except ImportError:
        raise ConfigError("sweep=optuna needs optuna: pip install optuna (or the project's "
                          "[optuna] extra)") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def trial_seed(seed: int, number: int) -> int:
    """The sampler's seed for trial ``number`` of a study seeded ``seed``: a mix of both, so
    studies with seeds 0 and 1 do not share their trials shifted by one (seed + number would)."""
    import hashlib

    digest = hashlib.blake2b(f"{seed}:{number}".encode(), digest_size=4).digest()
    return int.from_bytes(digest, "little")


def make_sampler(conf: StudyConf, seed: int) -> Any:
    import warnings

    optuna = _optuna()
    with warnings.catch_warnings():  # (qmc and nsga3 are "experimental": said once, here)
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return _sampler(optuna, conf, seed)


def _sampler(optuna: Any, conf: StudyConf, seed: int) -> Any:
    samplers = optuna.samplers
    try:
        if conf.sampler == "tpe":  # running trials count as pending (constant liar)
            return samplers.TPESampler(seed=seed, constant_liar=True,
                                       n_startup_trials=conf.startup_trials)
        if conf.sampler == "random":
            return samplers.RandomSampler(seed=seed)
        if conf.sampler == "nsga2":
            return samplers.NSGAIISampler(seed=seed, population_size=conf.population or 50)
        if conf.sampler == "nsga3":
            return samplers.NSGAIIISampler(seed=seed, population_size=conf.population or 50)
        if conf.sampler == "qmc":
            return samplers.QMCSampler(seed=seed, warn_independent_sampling=False)
        if conf.sampler == "cmaes":
            import cmaes  # noqa: F401

            return samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False)
        import scipy  # noqa: F401
        import torch  # noqa: F401

        return samplers.GPSampler(seed=seed)
    except ImportError as exc:
        needs = {"cmaes": "cmaes", "gp": "torch and scipy"}.get(conf.sampler, exc.name)
        raise ConfigError(f"sweep.sampler={conf.sampler} needs {needs} (pip install "
                          f"{'cmaes' if conf.sampler == 'cmaes' else 'torch scipy'})") from None


def make_pruner(conf: StudyConf) -> Any:
    pruners = _optuna().pruners
    if conf.pruner == "median":
        return pruners.MedianPruner(n_startup_trials=conf.startup_trials,
                                    n_warmup_steps=conf.warmup_steps)
    if conf.pruner == "asha":
        return pruners.SuccessiveHalvingPruner(min_resource=conf.min_resource,
                                               reduction_factor=conf.reduction_factor)
    if conf.pruner == "hyperband":
        if conf.max_resource is None:
            raise ConfigError("sweep.pruner=hyperband needs sweep.max_resource (a trial's full "
                              "length in the resource's unit, e.g. its epochs)")
        return pruners.HyperbandPruner(min_resource=conf.min_resource,
                                       max_resource=conf.max_resource,
                                       reduction_factor=conf.reduction_factor)
    return pruners.NopPruner()
