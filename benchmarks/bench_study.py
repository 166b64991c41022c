"""What proposing one trial costs as a study grows, against optuna's own in-memory ask/tell in
the same run:

    python benchmarks/bench_study.py [--trials 1000] [--sampler tpe] [--pruner asha]
    python benchmarks/bench_study.py --fill 9900 --trials 100   # the cost at 10,000 trials

runner's proposal rebuilds the study from the run store (FLAG files, recorded decisions) under
the study lock, asks the sampler and freezes the trial as a run directory. Each proposed trial
is then finished in-process (claim + COMPLETED with its value, as a worker would record it), so
the benchmark measures proposals, not training. The baseline is one optuna study kept in memory
with ask() and tell() per trial (what a process that never restarts would pay, with nothing
on disk). Printed: p50 and p99 of each at every 100 trials, and their ratio.

``--fill N`` starts both studies with N ended trials drawn at random (frozen as run
directories and finished, as a worker would; added to optuna's study with ``add_trials``), so
the cost at 10,000 trials is measured without proposing the first 9,900 one by one.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def objective(params: dict) -> float:
    return -(math.log10(params["task.lr"]) + 2) ** 2 - (params["task.width"] - 64) ** 2 / 1e4


def reports(pruner: str, params: dict, number: int) -> tuple[dict[int, float], bool]:
    """A trial's reports per epoch and whether it ran to the end."""
    if pruner == "none":
        return {}, True
    last = 27 if number % 3 == 0 else 3
    return {e: objective(params) - 1 / e for e in range(1, last + 1)}, last == 27


def end(ref: object, pruner: str) -> None:
    """Finish a frozen trial as a worker and the judge would record it."""
    from runner.storage.state import State, claim, finish

    lease = claim(ref.paths, frozenset({State.UNHATCHED}))  # type: ignore[attr-defined]
    assert lease is not None
    values = ref.values  # type: ignore[attr-defined]
    params = {k: v for k, v in values.items() if k != "trial"}
    curve, full = reports(pruner, params, values["trial"])
    if curve:
        Path(ref.dir, "pruning.jsonl").write_text("".join(  # type: ignore[attr-defined]
            json.dumps({"step": e, "value": v, "prune": e == max(curve) and not full}) + "\n"
            for e, v in curve.items()))
    finish(ref.paths, lease.token, State.COMPLETED if full else State.PRUNED,  # type: ignore
           {"summary": {"score": objective(params)}})


def fill(store: object, source: object, n: int, pruner: str) -> list:
    """``n`` ended trials drawn at random, frozen and finished in the run store; returned as
    optuna trials for the in-memory study."""
    import optuna

    from runner.planning.run_id import run_dirname, run_id
    from runner.planning.sweep import RunSpec

    dists = source.study.dists  # type: ignore[attr-defined]
    drawn = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    specs, trials = [], []
    for number in range(n):
        params = drawn.ask(dists).params
        values = {"trial": number, **params}
        specs.append(RunSpec(run_id(values), run_dirname(values), values,
                             source.study.config(params), index=number))  # type: ignore
        curve, full = reports(pruner, params, number)
        state = optuna.trial.TrialState.COMPLETE if full else optuna.trial.TrialState.PRUNED
        trials.append(optuna.trial.create_trial(
            state=state, value=objective(params) if full else None, params=params,
            distributions=dists, intermediate_values=curve))
    for start in range(0, n, 1000):
        for ref in store.add_runs(specs[start:start + 1000]):  # type: ignore[attr-defined]
            end(ref, pruner)
    return trials


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=1000)
    parser.add_argument("--sampler", default="tpe")
    parser.add_argument("--pruner", default="none", choices=("none", "asha"),
                        help="asha: every trial reports each epoch, two in three stopped at "
                        "epoch 3 (PRUNED), the others run 27 (the sampler learns from rungs)")
    parser.add_argument("--fill", type=int, default=0,
                        help="ended trials, drawn at random, that both studies start with")
    args = parser.parse_args()
    import optuna

    from runner.config.compose import composer
    from runner.planning.sweep import expand
    from runner.storage.store import SweepStore
    from runner.study.source import StudySource

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    work = Path(tempfile.mkdtemp(prefix="bench-study-"))
    os.chdir(work)
    n_trials = args.fill + bool(args.fill) + args.trials
    overrides = ["+sweep=optuna", f"sweep.n_trials={n_trials}", "sweep.metric=score",
                 "sweep.mode=max", f"sweep.sampler={args.sampler}",
                 "task.lr=tag(log,interval(0.0001,1.0))", "+task.width=int(interval(8,512))",
                 f"sweep.pruner={args.pruner}", "sweep.min_resource=3"]
    with composer() as comp:
        plan = expand(comp, overrides)
    store, _ = SweepStore.create(plan, work / "outputs", "config", [])
    source = StudySource(store)
    filled = fill(store, source, args.fill, args.pruner)
    first = None
    if args.fill:  # a fresh process's first proposal reads every trial: said apart
        start = time.perf_counter()
        ref = source.propose()
        first = time.perf_counter() - start
        end(ref, args.pruner)
        filled.append(optuna.trial.create_trial(
            state=optuna.trial.TrialState.COMPLETE, params=dict(
                (k, v) for k, v in ref.values.items() if k != "trial"),
            distributions=source.study.dists, value=objective(ref.values)))
    ours: list[float] = []
    for _ in range(args.trials):
        start = time.perf_counter()
        ref = source.propose()
        ours.append(time.perf_counter() - start)
        assert ref is not None
        end(ref, args.pruner)

    dists = source.study.dists
    from runner.study.config import make_sampler

    study = optuna.create_study(direction="maximize",
                                sampler=make_sampler(source.study.conf, 0))
    study.add_trials(filled)
    theirs: list[float] = []
    for number in range(len(filled), len(filled) + args.trials):
        start = time.perf_counter()
        trial = study.ask(dists)
        theirs.append(time.perf_counter() - start)
        curve, full = reports(args.pruner, trial.params, number)
        for e, v in curve.items():
            trial.report(v, e)
        if full:
            study.tell(trial, objective(trial.params))
        else:
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)

    print(f"\nproposing a trial, {args.sampler} sampler, {args.pruner} pruner (ms; runner: "
          "rebuilt from the run store and frozen; optuna: in memory, nothing on disk)")
    print(f"{'trials':>7} {'runner p50':>11} {'runner p99':>11} {'optuna p50':>11} "
          f"{'optuna p99':>11} {'p99 ratio':>10}")
    for upto in range(100, args.trials + 1, 100):  # (trial numbers args.fill + upto)
        a = np.array(ours[upto - 100:upto]) * 1000
        b = np.array(theirs[upto - 100:upto]) * 1000
        print(f"{len(filled) + upto:7d} {np.median(a):11.1f} {np.percentile(a, 99):11.1f} "
              f"{np.median(b):11.1f} {np.percentile(b, 99):11.1f} "
              f"{np.percentile(a, 99) / np.percentile(b, 99):9.2f}x")
    if first is not None:
        print(f"(the first proposal of a process, which reads every one of the {args.fill} "
              f"trials before it: {first * 1000:.0f} ms)")
    best = max(objective({k: v for k, v in r.values.items() if k != 'trial'})
               for r in store.runs())
    print(f"best score found: {best:.4f} (optimum 0)")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
