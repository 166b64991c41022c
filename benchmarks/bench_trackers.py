"""Tracker cost per run: N trivial runs with tracker=wandb (offline), the default (the fork
server imports wandb and what its first ``wandb.init`` needs once per sweep, and the sweep's runs
share one WandB service) against every run importing wandb and starting its own service
(``runner.preload_trackers=false``), and against the same runs with no tracker (baseline).

    python benchmarks/bench_trackers.py [--runs 16]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent


def sweep(n: int, work: Path, name: str, *extra: str) -> float:
    out = work / "out"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir()
    env = {**os.environ, "BENCH_OUT": str(out), "PYTHONPATH": f"{REPO}:{HERE}",
           "WANDB_MODE": "offline", "WANDB_SILENT": "true", "WANDB_DIR": str(work / "wandb"),
           "WANDB_CACHE_DIR": str(work / "wc"), "WANDB_CONFIG_DIR": str(work / "wcfg"),
           "WANDB_DATA_DIR": str(work / "wd")}
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "runner", "task.fn=trivial_task:main",
                    f"+x=range({n})", "launcher.max_parallel=2", f"runner.name={name}",
                    f"runner.output_dir={work / 'outputs'}", "runner.progress=false",
                    "notifier.console.events=[]", *extra],
                   cwd=work, env=env, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    elapsed = time.perf_counter() - start
    assert len(list(out.iterdir())) == n
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=16)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        base = sweep(args.runs, work, "plain")
        preloaded = sweep(args.runs, work, "preloaded", "tracker=wandb")
        per_run = sweep(args.runs, work, "per-run", "tracker=wandb",
                        "runner.preload_trackers=false")
    n = args.runs
    print(f"{n} trivial runs, 2 at a time{'':28}seconds   ratio")
    print(f"{'no tracker (baseline)':<56}{base:7.2f}   1.00x")
    print(f"{'tracker=wandb, wandb imported once (default)':<56}{preloaded:7.2f}   "
          f"{preloaded / base:.2f}x")
    print(f"{'tracker=wandb, wandb imported by every run':<56}{per_run:7.2f}   "
          f"{per_run / base:.2f}x")
    print(f"preloading saves {(per_run - preloaded) / n:.2f} s per run "
          f"({per_run / preloaded:.2f}x faster)")


if __name__ == "__main__":
    main()
