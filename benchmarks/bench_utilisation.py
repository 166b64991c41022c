"""Slot utilisation with real sleeps: runner's asynchronous study against Hydra's Optuna sweeper
(batch mode), the same LCBench trials (TPE, P=4 slots), each trial sleeping a scaled share of
its simulated training time.

    pip install yahpo-gym onnxruntime                       # into runner's environment
    python -m venv /tmp/hydra-optuna && /tmp/hydra-optuna/bin/pip install hydra-core \\
        hydra-optuna-sweeper hydra-joblib-launcher yahpo-gym onnxruntime
    python benchmarks/bench_utilisation.py --hydra-python /tmp/hydra-optuna/bin/python

(hydra-optuna-sweeper pins optuna < 3, hence its own environment.) Each trial writes when its
training began and ended; utilisation is the training seconds over P x (last end - first
start), so a slot that waits (for a batch's slowest trial, or for runner's own bookkeeping
between trials) counts as idle. Printed per method: the mean over seeds and each seed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path[:0] = [str(REPO), str(HERE)]

from lcbench import SPACE  # noqa: E402

P = 4
TASK_CONF = """\
name: lcbench
fn: lcbench:train
lcbench_task: "{task}"
time_scale: {scale}
epochs: 52
hp: {{batch_size: 64, learning_rate: 0.01, momentum: 0.9, weight_decay: 0.001, num_layers: 2,
     max_units: 256, max_dropout: 0.2}}
"""
HYDRA_APP = """\
import sys
sys.path.insert(0, {bench!r})
import hydra
import lcbench


@hydra.main(version_base=None, config_path=".", config_name="config")
def main(cfg):
    return lcbench.play(str(cfg.lcbench_task), dict(cfg.hp), float(cfg.time_scale))


if __name__ == "__main__":
    main()
"""
HYDRA_CONF = """\
defaults:
  - override hydra/sweeper: optuna
  - override hydra/launcher: joblib
  - _self_
lcbench_task: "{task}"
time_scale: {scale}
hp: {{batch_size: 64, learning_rate: 0.01, momentum: 0.9, weight_decay: 0.001, num_layers: 2,
     max_units: 256, max_dropout: 0.2}}
hydra:
  sweeper:
    sampler:
      _target_: optuna.samplers.TPESampler
      seed: {seed}
      n_startup_trials: 10
    direction: maximize
    n_trials: {trials}
    n_jobs: {p}
    params:
{params}
  launcher:
    n_jobs: {p}
"""


def utilisation(times_dir: Path) -> tuple[float, float, int, float]:
    """(utilisation while trials were left to start, over the whole study, trials, makespan).
    The first is the scheduler's: from the first trial's start to the last one's, every slot
    could have been training; after that the study is only waiting for its last trials."""
    spans = [json.loads(f.read_text()) for f in times_dir.iterdir()]
    start = min(s["start"] for s in spans)
    last_start = max(s["start"] for s in spans)
    end = max(s["end"] for s in spans)
    busy = sum(s["end"] - s["start"] for s in spans)
    window = sum(max(0.0, min(s["end"], last_start) - s["start"]) for s in spans)
    return (window / (P * (last_start - start)), busy / (P * (end - start)), len(spans),
            end - start)


def hydra_params() -> str:
    def grammar(text: str) -> str:  # runner writes tag(log,int(...)); Hydra's is the same
        return text

    return "\n".join(f"      hp.{k}: {grammar(v)}" for k, v in SPACE.items())


def run_runner(work: Path, task: str, seed: int, trials: int, scale: float) -> Path:
    times = work / f"runner-times-{seed}"
    times.mkdir()
    (work / "conf" / "task").mkdir(parents=True, exist_ok=True)
    (work / "conf" / "task" / "lcbench.yaml").write_text(TASK_CONF.format(task=task,
                                                                          scale=scale))
    env = {**os.environ, "PYTHONPATH": f"{REPO}:{HERE}", "LCBENCH_TIMES": str(times),
           "LCBENCH_PRELOAD": "1"}
    space = [f"task.hp.{k}={v}" for k, v in SPACE.items()]
    proc = subprocess.run([sys.executable, "-m", "runner", "task=lcbench", "+sweep=optuna",
                    f"sweep.n_trials={trials}", "sweep.metric=val_accuracy", "sweep.mode=max",
                    "sweep.startup_trials=10", f"sweep.seed={seed}",
                    f"launcher.max_parallel={P}", "runner.preload=[lcbench]",
                    f"runner.name=util-{seed}", "runner.progress=false",
                    "notifier.console.events=[]", *space], cwd=work, env=env, capture_output=True,
                   text=True)
    if proc.returncode:
        raise SystemExit(f"runner's sweep failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return times


def run_hydra(work: Path, python: str, task: str, seed: int, trials: int, scale: float) -> Path:
    times = work / f"hydra-times-{seed}"
    times.mkdir()
    app = work / f"hydra-{seed}"
    app.mkdir()
    (app / "app.py").write_text(HYDRA_APP.format(bench=str(HERE)))
    (app / "config.yaml").write_text(HYDRA_CONF.format(task=task, scale=scale, seed=seed,
                                                       trials=trials, p=P,
                                                       params=hydra_params()))
    env = {**os.environ, "LCBENCH_TIMES": str(times)}
    env.pop("PYTHONPATH", None)
    proc = subprocess.run([python, "app.py", "-m"], cwd=app, env=env, capture_output=True,
                          text=True)
    if proc.returncode:
        raise SystemExit(f"Hydra's sweep failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return times


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--hydra-python", required=True,
                        help="python of an environment with hydra-optuna-sweeper")
    parser.add_argument("--task", default="7593")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--trials", type=int, default=24)
    parser.add_argument("--scale", type=float, default=0.002,
                        help="real seconds per simulated second of training")
    args = parser.parse_args()
    results: dict[str, list[tuple[float, float, int, float]]] = {
        "runner (async TPE)": [], "hydra-optuna-sweeper (batch)": []}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for seed in range(args.seeds):
            t0 = time.time()
            results["runner (async TPE)"].append(utilisation(
                run_runner(work, args.task, seed, args.trials, args.scale)))
            results["hydra-optuna-sweeper (batch)"].append(utilisation(
                run_hydra(work, args.hydra_python, args.task, seed, args.trials, args.scale)))
            print(f"seed {seed}: {time.time() - t0:.0f} s", file=sys.stderr, flush=True)
            shutil.rmtree(work / "outputs", ignore_errors=True)
    print(f"LCBench task {args.task}, {args.trials} TPE trials, P={P} slots, "
          f"{args.scale:g} real s per simulated s, {args.seeds} seeds")
    print(f"{'method':32s} {'utilisation':>12s} {'whole study':>12s} {'trials':>7s} "
          f"{'makespan s':>11s}   per seed (utilisation)")
    means = []
    for method, rows in results.items():
        util = sum(r[0] for r in rows) / len(rows)
        means.append(util)
        print(f"{method:32s} {util:11.1%} {sum(r[1] for r in rows) / len(rows):11.1%} "
              f"{rows[0][2]:7d} {sum(r[3] for r in rows) / len(rows):11.1f}   "
              + ", ".join(f"{r[0]:.1%}" for r in rows))
    print("(utilisation: training seconds over P x the time from the first trial's start to the "
          "last one's, while trials were left; whole study: to the last end, the tail of the "
          f"last trials included)\nratio runner / Hydra: {means[0] / means[1]:.2f}x")


if __name__ == "__main__":
    main()
