"""Adaptive search on LCBench (YAHPO Gym's surrogate of real learning curves), on a simulated
clock: random search (full curves), random + ASHA, TPE, TPE + ASHA (TPE learning from rungs,
BOHB's rule, runner's default), TPE + ASHA with optuna's own view of pruned trials
(``sweep.learn_from=all``), and the batch mode of Hydra's Optuna sweeper (TPE, ``n_jobs`` trials
asked together, the next batch only when the slowest has finished, no pruning), in one run:

    pip install yahpo-gym onnxruntime
    python benchmarks/bench_lcbench.py [--seeds 10] [--tasks 3945,7593,34539,126025,126026]

Each method gets P=4 slots and a budget of 200 full-length trials' worth of epochs. runner's
methods use the settings a user gets (``sweep.*`` defaults: ASHA from 3 epochs,
reduction factor 3, ...) unless ``--set key=value`` changes one (``--set min_resource=1``).
The defaults were chosen on the five tasks above; ``--held-apart`` runs the ten tasks they were
never tuned on (``lcbench.HELD_APART``), where the README's headline table comes from. runner's
methods ask and judge exactly as a study does (through ``runner.study.sampler_study``: the
sampler's view of the trials, seeded by the trial number, running trials pending; a trial's
report judged by the pruner when its epoch ends) but in memory, each epoch taking LCBench's
simulated seconds on its slot, so the comparison of quality and compute runs in minutes; the
cost of runner's proposals and of real processes is measured by ``bench_study.py`` and
``bench_utilisation.py``.

Printed per method, with 95% t intervals over tasks x seeds: the compute (epochs, simulated
hours) it needed to reach random search's final best (as a share of random search's own: the
mean over the cases that got there, and the geometric mean over all cases with a case that
never got there counted at the whole budget), how often it got there, the best val_accuracy
at the common budget, and slot utilisation. A figure (``--out``, default
``benchmarks/lcbench.png``): best-so-far against epochs, mean per method.
"""

from __future__ import annotations

import argparse
import heapq
import json
import math
import os
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]

from lcbench import EPOCHS, HELD_APART, SPACE, TASKS, LazyCurve, curve  # noqa: E402

P = 4
SETTINGS: dict[str, Any] = {}  # sweep.* settings other than the defaults (--set)
BUDGET_TRIALS = 200
STARTUP_TRIALS = 10  # Hydra's sweeper: optuna's TPE default, random trials before it models
METHODS = ("random", "random+asha", "tpe", "tpe+asha", "tpe+asha (optuna's view)",
           "hydra-optuna batch (tpe)")
MORE = ("random+hyperband", "tpe+hyperband")  # with --methods only


@dataclass
class Trace:
    """Best final val_accuracy so far against compute."""

    epochs: list[int] = field(default_factory=list)
    hours: list[float] = field(default_factory=list)
    best: list[float] = field(default_factory=list)
    busy: float = 0.0  # slot-seconds spent training
    makespan: float = 0.0
    trials: int = 0

    def add(self, epochs: int, seconds: float, best: float) -> None:
        self.epochs.append(epochs)
        self.hours.append(seconds / 3600)
        self.best.append(best)

    def reach(self, target: float) -> tuple[float, float] | None:
        for e, h, b in zip(self.epochs, self.hours, self.best, strict=True):
            if b >= target - 1e-9:
                return e, h
        return None

    def at(self, epochs: int) -> float:
        best = [b for e, b in zip(self.epochs, self.best, strict=True) if e <= epochs]
        return best[-1] if best else float("nan")


def distributions() -> dict[str, Any]:
    from runner.config.compose import parse_overrides
    from runner.planning.sweep import _axis_from_override
    from runner.study.space import distribution

    out = {}
    for key, text in SPACE.items():
        (o,) = parse_overrides([f"{key}={text}"])
        out[key] = distribution(_axis_from_override(o, False))
    return out


def conf_of(method: str, seed: int) -> Any:
    from runner.study.config import StudyConf

    return StudyConf(**{**SETTINGS,
                        "sampler": "random" if method.startswith("random") else "tpe",
                        "pruner": "asha" if "asha" in method else "hyperband"
                        if "hyperband" in method else "none", "max_resource": EPOCHS,
                        "learn_from": "all" if "optuna's view" in method else "rung",
                        "seed": seed, "n_trials": 10**9})


def asynchronous(task: str, method: str, seed: int, dists: dict[str, Any]) -> Trace:
    """P slots; a trial proposed the moment one frees; each epoch's end a report."""
    import optuna

    from runner.study.config import make_pruner
    from runner.study.history import Trial
    from runner.study.sampler_study import SamplerStudy

    conf = conf_of(method, seed)
    # proposals as a study's (runner.study.sampler_study: the sampler's view of the trials,
    # its seed per trial); judged by the pruner against every trial's reports, as the judge does
    sampling = SamplerStudy(conf, dists, "max", "bench")
    judged = optuna.create_study(direction="maximize", pruner=make_pruner(conf),
                                 sampler=optuna.samplers.RandomSampler(seed=seed),
                                 study_name="bench")  # (Hyperband's brackets hash the name)
    trials: dict[int, Trial] = {}
    budget = BUDGET_TRIALS * EPOCHS
    trace, used, best = Trace(), 0, -math.inf
    events: list[tuple[float, int, int]] = []  # (time the epoch ends, trial number, epoch)
    live: dict[int, tuple[Any, Any, float]] = {}
    # a curve is queried up to each rung at a time (a pruned trial stops at one)
    first, factor = conf.min_resource, conf.reduction_factor
    pieces = (tuple(first * factor ** i for i in range(8) if first * factor ** i < EPOCHS)
              if conf.pruner != "none" else ())

    def start(now: float) -> None:
        number = len(trials)
        asked = sampling.sync(lambda known: list(trials.values()), number).ask(dists)
        sampling.asked(number)
        judged.enqueue_trial(asked.params)
        trial = judged.ask(dists)
        assert asked.number == trial.number == number
        trials[number] = Trial(number, dict(trial.params), "RUNNING")
        lazy = LazyCurve(task, trial.params, pieces)
        live[number] = (trial, lazy, now)
        heapq.heappush(events, (now + lazy.seconds(1), number, 1))
        trace.trials += 1

    for _ in range(P):
        start(0.0)
    now = 0.0
    while events and used < budget:
        now, number, epoch = heapq.heappop(events)
        trial, lazy, began = live[number]
        used += 1
        acc = lazy.accuracy(epoch)
        trial.report(acc, epoch)
        trials[number].intermediate[epoch] = acc
        ended = epoch == EPOCHS
        if ended:
            judged.tell(trial, acc)
            trials[number].state, trials[number].value = "COMPLETED", acc
            best = max(best, acc)
        elif conf.pruner != "none" and trial.should_prune():
            judged.tell(trial, state=optuna.trial.TrialState.PRUNED)
            trials[number].state = "PRUNED"
            ended = True
        if best > -math.inf:
            trace.add(used, now, best)
        if ended:
            trace.busy += now - began
            del live[number]
            if used < budget:
                start(now)
        else:
            heapq.heappush(events, (began + lazy.seconds(epoch + 1), number, epoch + 1))
    trace.busy += sum(now - began for _, _, began in live.values())
    trace.makespan = now
    return trace


def batched(task: str, seed: int, dists: dict[str, Any]) -> Trace:
    """Hydra's Optuna sweeper: ask n_jobs=P trials, run them to the end, tell them all."""
    import optuna

    sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=STARTUP_TRIALS)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    trace, used, best, now = Trace(), 0, -math.inf, 0.0
    while used < BUDGET_TRIALS * EPOCHS:
        batch = [study.ask(dists) for _ in range(P)]
        curves = [curve(task, t.params) for t in batch]
        ends = sorted((secs[-1], i) for i, (_, secs) in enumerate(curves))
        for end, i in ends:  # results appear as they end; the next batch waits for all
            used += EPOCHS
            best = max(best, curves[i][0][-1])
            trace.add(used, now + end, best)
            trace.busy += end
        for trial, (acc, _) in zip(batch, curves, strict=True):
            study.tell(trial, acc[-1])
        now += ends[-1][0]
        trace.trials += P
    trace.makespan = now
    return trace


def one_case(job: tuple[str, int, list[str], dict[str, Any]]) -> dict[str, Trace]:
    """Every method on one task and seed (in a worker process)."""
    import optuna

    global SETTINGS
    task, seed, methods, SETTINGS = job
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    dists = distributions()
    return {m: batched(task, seed, dists) if m.startswith("hydra")
            else asynchronous(task, m, seed, dists) for m in methods}


def settings(items: list[str]) -> dict[str, Any]:
    """``--set key=value`` items as StudyConf settings (values read as YAML: 3, 0.2, null)."""
    import dataclasses

    import yaml

    from runner.study.config import StudyConf

    known = {f.name for f in dataclasses.fields(StudyConf)}
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or key not in known:
            raise SystemExit(f"--set {item}: give KEY=VALUE with a sweep.* key "
                             f"({', '.join(sorted(known))})")
        out[key] = yaml.safe_load(value)
    return out


def interval(values: list[float], back: Any = None) -> str:
    """Mean [95% t interval] (``back``: applied to all three, e.g. exp of a mean log)."""
    from runner.results.aggregate import t_interval

    v = [x for x in values if not math.isnan(x)]
    if not v:
        return "n/a"
    back = back or (lambda x: x)
    mean = float(np.mean(v))
    if len(v) < 2:
        return f"{back(mean):.3g}"
    lo, hi = t_interval(np.array(v))
    return f"{back(mean):.3g} [{back(lo):.3g}, {back(hi):.3g}]"


def main() -> None:
    global SETTINGS
    import optuna

    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--tasks", default=",".join(TASKS))
    parser.add_argument("--held-apart", action="store_true",
                        help=f"the tasks the defaults were not tuned on: {','.join(HELD_APART)}")
    parser.add_argument("--out", type=Path, default=HERE / "lcbench.png")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a sweep.* setting other than its default, e.g. min_resource=1 "
                             "(ASHA's first rung), random_fraction=0.2")
    parser.add_argument("--methods", default=",".join(METHODS),
                        help=f"comma-separated, of: {', '.join((*METHODS, *MORE))}")
    parser.add_argument("--save", type=Path, help="every trace as JSON, to compute more from")
    parser.add_argument("--load", type=Path, help="print and draw the traces --save wrote")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                        help="task x seed cases simulated at once (processes)")
    args = parser.parse_args()
    SETTINGS = settings(args.set)
    methods = [m for m in (*METHODS, *MORE) if m in args.methods.split(",")]
    if "random" not in methods:
        methods.insert(0, "random")  # the reference every share is of
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    tasks = list(HELD_APART) if args.held_apart else args.tasks.split(",")
    if args.load:  # the traces of an earlier run: its table and figure again
        saved = json.loads(args.load.read_text())
        tasks, args.seeds = saved["tasks"], saved["seeds"]
        traces = {m: [Trace(**t) for t in runs] for m, runs in saved["traces"].items()}
        methods = list(traces)
    else:
        traces = simulate(tasks, args.seeds, methods, args.jobs)
    if args.save:
        args.save.write_text(json.dumps({"tasks": tasks, "seeds": args.seeds, "traces": {
            m: [t.__dict__ for t in runs] for m, runs in traces.items()}}))
    targets = [t.best[-1] for t in traces["random"]]
    base = [t.reach(goal) for t, goal in zip(traces["random"], targets, strict=True)]
    budget = BUDGET_TRIALS * EPOCHS
    print(f"\nLCBench tasks {', '.join(tasks)} x {args.seeds} seeds, P={P} slots, budget "
          f"{BUDGET_TRIALS} x {EPOCHS} epochs, sweep.* "
          + (", ".join(f"{k}={v}" for k, v in SETTINGS.items()) or "defaults")
          + "; mean [95% t interval]")
    print(f"{'method':26s} {'reached':>8s} {'epochs to random best':>26s} "
          f"{'geometric, all cases':>26s} {'share of the budget':>26s} "
          f"{'time to random best':>26s} "
          f"{'best acc at budget':>26s} {'utilisation':>12s} {'trials':>7s}")
    for method in methods:
        runs = traces[method]
        hits = [t.reach(goal) for t, goal in zip(runs, targets, strict=True)]
        e_share = [h[0] / b[0] if h and b else math.nan for h, b in zip(hits, base, strict=True)]
        t_share = [h[1] / b[1] if h and b else math.nan for h, b in zip(hits, base, strict=True)]
        # every case, one that never got there counted as needing the whole budget
        censored = [math.log((h[0] if h else budget) / b[0]) for h, b in zip(hits, base,
                                                                             strict=True)]
        util = [t.busy / (P * t.makespan) for t in runs if t.makespan]
        print(f"{method:26s} {sum(1 for h in hits if h):4d}/{len(hits):<3d} "
              f"{interval(e_share):>26s} {interval(censored, math.exp):>26s} "
              f"{interval([(h[0] if h else budget) / budget for h in hits]):>26s} "
              f"{interval(t_share):>26s} "
              f"{interval([t.at(budget) for t in runs]):>26s} {interval(util):>12s} "
              f"{np.mean([t.trials for t in runs]):7.0f}")
    print("(epochs/time to random best: a share of what random search needed for its own "
          "final best, mean over the cases that got there; geometric: the geometric mean "
          "over all cases, a case that never got there counted at the whole budget; share of "
          "the budget: the epochs it needed over random search's whole budget, all cases so)")
    figure(traces, args.out, budget)
    print(f"figure: {args.out}")


def simulate(tasks: list[str], seeds: int, methods: list[str], jobs: int
             ) -> dict[str, list[Trace]]:
    """Every method on every task x seed, ``jobs`` cases at once."""
    import multiprocessing

    traces: dict[str, list[Trace]] = {m: [] for m in methods}
    started = time.time()
    cases = [(task, seed, methods, SETTINGS) for task in tasks for seed in range(seeds)]
    with multiprocessing.get_context("spawn").Pool(jobs) as pool:
        for (task, seed, _, _), found in zip(cases, pool.imap(one_case, cases), strict=True):
            for method in methods:
                traces[method].append(found[method])
            print(f"task {task} seed {seed}: done ({time.time() - started:.0f} s)",
                  file=sys.stderr, flush=True)
    return traces


def figure(traces: dict[str, list[Trace]], path: Path, budget: int) -> None:
    from runner.results.plots import _pyplot, _save, colours

    plt = _pyplot()
    grid = np.linspace(EPOCHS, budget, 200)
    fig, ax = plt.subplots(figsize=(7.5, 4.5), dpi=100)
    for colour, (method, runs) in zip(colours(len(traces)), traces.items(), strict=True):
        # each run's best-so-far relative to random search's final best on the same task/seed
        rel = []
        for t, r in zip(runs, traces["random"], strict=True):
            rel.append([t.at(int(e)) - r.best[-1] for e in grid])
        with warnings.catch_warnings():  # (no trial has ended yet at the first points)
            warnings.simplefilter("ignore", RuntimeWarning)
            mean = np.nanmean(np.array(rel, dtype=float), axis=0)
        ax.plot(grid / EPOCHS, mean, color=colour, label=method, linewidth=1.6)
    ax.axhline(0, color="0.5", linewidth=0.8, linestyle="--")
    ax.set_ylim(bottom=-8)  # (the first few trials' worth fall far below: cut off)
    ax.set_xlabel("compute (full-length trials' worth of epochs)")
    ax.set_ylabel("best val_accuracy so far - random's final best")
    ax.set_title(f"LCBench: best so far against compute (mean over {len(traces['random'])} "
                 "task x seed cases)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    _save(plt, fig, path)  # (laid out for reading, checked by tests/test_figures.py)


if __name__ == "__main__":
    main()
