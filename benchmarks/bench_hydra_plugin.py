"""``hydra/launcher=runner`` against Hydra's own launchers on N trivial jobs of one Hydra app
(``benchmarks/hydra_app.py``: each job writes one small JSON file), in one run:

    python benchmarks/bench_hydra_plugin.py [--jobs 500]

* Hydra's basic launcher (sequential, in the app's process),
* hydra-joblib-launcher with n_jobs=2 (when installed),
* hydra/launcher=runner with max_parallel=2 (local backend: each job forked from the app), and
  the same command again (a resume: nothing to run).

Every time is whole-process wall time, printed as a ratio to runner's.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent


def timed(cmd: list[str], cwd: Path, env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, env=env, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=500)
    args = parser.parse_args()
    n = args.jobs
    work = Path(tempfile.mkdtemp(prefix="bench-hydra-"))
    out = work / "out"
    env = {**os.environ, "BENCH_OUT": str(out), "PYTHONPATH": f"{REPO}:{HERE}"}
    app = [sys.executable, str(HERE / "hydra_app.py"), "-m", f"+x=range(0,{n})"]

    def run(name: str, *overrides: str, fresh: bool = True) -> tuple[str, float]:
        if fresh:
            shutil.rmtree(out, ignore_errors=True)
            shutil.rmtree(work / "multirun", ignore_errors=True)
            out.mkdir()
        seconds = timed([*app, *overrides], work, env)
        assert len(list(out.iterdir())) == n, f"{name}: {len(list(out.iterdir()))} of {n} jobs"
        return name, seconds

    rows = [run("hydra/launcher=runner, max_parallel=2", "hydra/launcher=runner",
                "hydra.launcher.max_parallel=2", "hydra.launcher.progress=false",
                "hydra.sweep.dir=multirun/runner")]
    rows.append(run("  the same command again (resume: nothing left)", "hydra/launcher=runner",
                    "hydra.launcher.max_parallel=2", "hydra.launcher.progress=false",
                    "hydra.sweep.dir=multirun/runner", fresh=False))
    rows.append(run("Hydra basic launcher (sequential)", "hydra.sweep.dir=multirun/basic"))
    if importlib.util.find_spec("hydra_plugins.hydra_joblib_launcher") is not None:
        rows.append(run("hydra-joblib-launcher, n_jobs=2", "hydra/launcher=joblib",
                        "hydra.launcher.n_jobs=2", "hydra.sweep.dir=multirun/joblib"))
    else:
        print("(hydra-joblib-launcher is not installed: no joblib row)")
    base = rows[0][1]
    print(f"\n{n} trivial jobs of one Hydra app (2 cores: {os.cpu_count()} CPUs here)")
    print(f"{'launcher':52s} {'seconds':>8s} {'per job':>9s} {'vs runner':>10s}")
    for name, seconds in rows:
        print(f"{name:52s} {seconds:8.2f} {1000 * seconds / n:7.1f}ms {seconds / base:9.2f}x")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
