"""Does the sampler keep proposing where the pruner already said no? A toy study: one
hyperparameter, lr on a log scale in [1e-4, 1e-1], the best at 0.03 and the worst at the 1e-4
edge; a trial's accuracy climbs toward its ceiling over 9 epochs; ASHA with the defaults a user
gets (first rung 3 epochs, reduction factor 3) unless ``--set key=value`` changes a ``sweep.*``
setting (``--set min_resource=1``), P=2 slots, 30 trials. Trials with lr < 1e-3 are stopped at
the first rung, so a sampler that learns from that proposes fewer of them than random search (a
third of a log-uniform draw lands there).

    python benchmarks/bench_pruned_regions.py [--seeds 10] [--set min_resource=1]

Printed per method: how many of trials 10-29 (after the model has had trials to learn from) it
proposed with lr < 1e-3, mean [95% t interval] over seeds. The study's proposals and pruning
decisions are runner's own (``runner.study.sampler_study``, optuna's pruner judging every
report), in memory on a simulated clock, as ``bench_lcbench.py`` runs them.
"""

from __future__ import annotations

import argparse
import heapq
import math
import random
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]

EPOCHS = 9
P = 2
TRIALS = 30
LOW = 1e-3  # below this, a trial is stopped at the first rung
METHODS = ("random+asha", "tpe+asha", "tpe+asha (optuna's view)")


def accuracy(lr: float, epoch: int) -> float:
    ceiling = 1.0 - abs(math.log10(lr) - math.log10(0.03)) / 4.0
    return ceiling * (1 - 0.5 ** epoch)


def study(method: str, seed: int, trials: int = TRIALS, **settings: Any) -> list[float]:
    """The lr of every trial the method proposed, in trial order."""
    import optuna
    from optuna.distributions import FloatDistribution

    from runner.study.config import StudyConf, make_pruner
    from runner.study.history import Trial
    from runner.study.sampler_study import SamplerStudy

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    conf = StudyConf(sampler="random" if method.startswith("random") else "tpe", pruner="asha",
                     learn_from="all" if "optuna's view" in method else "rung", seed=seed,
                     n_trials=trials, **settings)
    dists = {"lr": FloatDistribution(1e-4, 1e-1, log=True)}
    sampling = SamplerStudy(conf, dists, "max", "toy")
    judged = optuna.create_study(direction="maximize", pruner=make_pruner(conf),
                                 sampler=optuna.samplers.RandomSampler(seed=seed))
    jitter = random.Random(seed)  # epochs take 1 +- 0.2 time units: any finish order
    known: dict[int, Trial] = {}
    live: dict[int, Any] = {}
    events: list[tuple[float, int, int]] = []

    def start(now: float) -> None:
        number = len(known)
        asked = sampling.sync(lambda _: list(known.values()), number).ask(dists)
        sampling.asked(number)
        judged.enqueue_trial(asked.params)
        live[number] = judged.ask(dists)
        known[number] = Trial(number, dict(asked.params), "RUNNING")
        heapq.heappush(events, (now + 1 + jitter.uniform(-0.2, 0.2), number, 1))

    for _ in range(P):
        start(0.0)
    while events:
        now, number, epoch = heapq.heappop(events)
        trial, record = live[number], known[number]
        acc = accuracy(record.params["lr"], epoch)
        trial.report(acc, epoch)
        record.intermediate[epoch] = acc
        if epoch == EPOCHS:
            judged.tell(trial, acc)
            record.state, record.value = "COMPLETED", acc
        elif trial.should_prune():
            judged.tell(trial, state=optuna.trial.TrialState.PRUNED)
            record.state = "PRUNED"
        else:
            heapq.heappush(events, (now + 1 + jitter.uniform(-0.2, 0.2), number, epoch + 1))
            continue
        del live[number]
        if len(known) < trials:
            start(now)
    return [known[n].params["lr"] for n in sorted(known)]


def low_share(lrs: list[float], first: int = 10) -> int:
    """How many of the trials from ``first`` on have lr < 1e-3."""
    return sum(1 for lr in lrs[first:] if lr < LOW)


def main() -> None:
    from runner.results.aggregate import t_interval

    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a sweep.* setting other than its default, e.g. min_resource=1")
    args = parser.parse_args()
    import numpy as np
    from bench_lcbench import settings as parse_settings

    from runner.study.config import StudyConf

    settings = parse_settings(args.set)
    first = settings.get("min_resource", StudyConf().min_resource)
    print(f"toy study: lr log-uniform in [1e-4, 1e-1], best 0.03; ASHA from epoch {first} of "
          f"{EPOCHS}, P={P}, {TRIALS} trials; trials 10-29 with lr < 1e-3 (random: 1/3 of 20 "
          f"expected), {args.seeds} seeds, sweep.* "
          + (", ".join(f"{k}={v}" for k, v in settings.items()) or "defaults"))
    for method in args.methods.split(","):
        counts = [low_share(study(method, seed, **settings)) for seed in range(args.seeds)]
        lo, hi = t_interval(np.array(counts, dtype=float))
        print(f"{method:28s} {np.mean(counts):5.2f} [{lo:.2f}, {hi:.2f}]   per seed: {counts}")


if __name__ == "__main__":
    main()
