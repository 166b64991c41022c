"""Tracker cost per run: N trivial runs with tracker=wandb (offline), the default (the fork
server imports wandb and what its first ``wandb.init`` needs once per sweep, and the sweep's runs
share one WandB service) against every run importing wandb and starting its own service
(``runner.preload_trackers=false``), and against the same runs with no tracker (baseline).

    python benchmarks/bench_trackers.py [--runs 16 64]

Each size's whole sweep is timed; from two sizes the cost of each added run and the cost paid
once per sweep follow.
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
    parser.add_argument("--runs", type=int, nargs="+", default=[16, 64],
                        help="sweep sizes (two or more: the cost of each added run is the "
                        "difference between the largest and the smallest)")
    args = parser.parse_args()
    sizes = sorted(args.runs)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for n in sizes:
            base = sweep(n, work, f"plain-{n}")
            preloaded = sweep(n, work, f"preloaded-{n}", "tracker=wandb")
            per_run = sweep(n, work, f"per-run-{n}", "tracker=wandb",
                            "runner.preload_trackers=false")
            rows.append((n, base, preloaded, per_run))
    print(f"trivial runs, 2 at a time, seconds (ratio to no tracker); {os.cpu_count()} CPUs")
    print(f"{'runs':>5} {'no tracker':>11} {'wandb (default)':>20} "
          f"{'wandb imported by every run':>30}")
    for n, base, preloaded, per_run in rows:
        print(f"{n:5d} {base:11.2f} {preloaded:12.2f} ({preloaded / base:4.2f}x) "
              f"{per_run:22.2f} ({per_run / base:4.2f}x)")
    if len(rows) > 1:
        (n0, b0, p0, r0), (n1, b1, p1, r1) = rows[0], rows[-1]
        added = n1 - n0
        print(f"each added run (from {n0} to {n1} runs): no tracker {(b1 - b0) / added * 1000:.0f}"
              f" ms, wandb (default) {(p1 - p0) / added * 1000:.0f} ms, wandb imported by every "
              f"run {(r1 - r0) / added * 1000:.0f} ms")
        fixed = (p0 - b0) - n0 * ((p1 - p0) - (b1 - b0)) / added
        print(f"once per sweep, wandb (default): {fixed:.2f} s (its service and the fork "
              "server's imports, started side by side)")


if __name__ == "__main__":
    main()
