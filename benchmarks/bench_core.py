"""Core speed benchmarks; every number is printed as a ratio to a baseline measured in this run.

    python benchmarks/bench_core.py [--runs 500] [--grid 10000] [--status-runs 10000,100000]

1. launch: N trivial runs through `python -m runner` (local launcher, 2 at a time) against N bare
   `python -c` spawns writing the same JSON file, 2 at a time (xargs -P2), and against Hydra's
   multirun (basic launcher, and joblib with 2 jobs when hydra-joblib-launcher is installed).
2. freeze: expansion + writing a 10,000-run grid sweep, against composing every run with
   hydra.compose (extrapolated from 50 calls measured here).
3. status: `status --json` over sweeps of 10,000 and 100,000 runs (half of them COMPLETED with
   FLAGs as runner writes them, half not started), against one bare os.scandir pass over the
   same run directories.
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import redirect_stdout
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent


def timed(cmd: list[str] | str, cwd: Path, env: dict[str, str], shell: bool = False) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, env=env, shell=shell, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def _has_joblib_plugin() -> bool:
    try:
        return importlib.util.find_spec("hydra_plugins.hydra_joblib_launcher") is not None
    except ModuleNotFoundError:
        return False


def bench_launch(n: int, work: Path) -> list[tuple[str, float, float]]:
    out = work / "out"
    env = {**os.environ, "BENCH_OUT": str(out), "PYTHONPATH": f"{REPO}:{HERE}"}
    rows = []

    def fresh() -> None:
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir()

    fresh()
    code = ("import json,sys; "
            "json.dump({'x': int(sys.argv[1])}, open(f'%s/r{sys.argv[1]}.json', 'w'))")
    bare = timed(f"seq 0 {n - 1} | xargs -P2 -n1 {sys.executable} -c \"{code % out}\"",
                 work, env, shell=True)
    assert len(list(out.iterdir())) == n
    rows.append(("bare python -c, 2 at a time (baseline)", bare, 1.0))
    fresh()
    t = timed([sys.executable, "-m", "runner", "task.fn=trivial_task:main", "+x=range(" + str(n)
               + ")", "launcher.max_parallel=2", f"runner.output_dir={work / 'outputs'}",
               "runner.progress=false", "notifier.console.events=[]"], work, env)
    assert len(list(out.iterdir())) == n
    rows.append(("runner, local launcher, 2 at a time", t, t / bare))
    runner_t = t
    for label, extra in (("hydra -m, basic launcher", []),
                         ("hydra -m, joblib launcher (2 jobs)",
                          ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"])):
        if extra and not _has_joblib_plugin():
            rows.append((label + ": not installed (pip install hydra-joblib-launcher)", 0, 0))
            continue
        fresh()
        t = timed([sys.executable, str(HERE / "hydra_app.py"), "-m", f"+x=range({n})",
                   f"hydra.sweep.dir={work / 'multirun'}", *extra], work, env)
        assert len(list(out.iterdir())) == n
        rows.append((label + f" (runner is {t / runner_t:.1f}x faster)", t, t / bare))
    return rows


def bench_freeze(n_grid: int, work: Path) -> list[tuple[str, float, float]]:
    from hydra import compose

    from runner.config.compose import composer
    from runner.planning.sweep import expand
    from runner.storage.store import SweepStore

    side = int(n_grid ** 0.5)
    os.chdir(work)
    with composer() as comp:
        t0 = time.perf_counter()
        for i in range(50):
            compose(config_name="config", overrides=[f"task.lr={i}", "seed=1"])
        per_compose = (time.perf_counter() - t0) / 50
        t0 = time.perf_counter()
        plan = expand(comp, [f"task.lr=range({side})", f"seed=range({side})"])
        store, created = SweepStore.create(plan, work / "freeze", "config", [])
        t = time.perf_counter() - t0
    assert created and len(store.runs()) == side * side
    baseline = per_compose * side * side
    return [(f"hydra.compose per run, {side * side} runs (extrapolated, baseline)", baseline, 1.0),
            (f"runner expand + freeze {side * side} runs", t, t / baseline)]


def bench_status(n: int, work: Path) -> list[tuple[str, float, float]]:
    from runner.planning.run_id import run_dirname, run_id
    from runner.planning.sweep import Plan, RunSpec
    from runner.results.status import json_text
    from runner.storage.store import SweepStore

    runs = [RunSpec(run_id({"x": i}), run_dirname({"x": i}), {"x": i}, {"x": i})
            for i in range(n)]
    plan = Plan("status", "grid", runs, ["x"], ["x"], {}, [], "0")
    store, _ = SweepStore.create(plan, work, "config", [])
    for k, ref in enumerate(store.runs()[: n // 2]):  # half of them COMPLETED, as runner
        (ref.paths.root / "UNHATCHED").rename(ref.paths.root / "COMPLETED")  # writes them
        (ref.paths.root / "COMPLETED").write_text(json.dumps(
            {"attempt": 1, "time": 1796674299.6 + k, "host": "node017", "pid": 9907 + k,
             "started": 1796674239.4 + k, "summary": {"val/acc": 0.5 + k / n, "val/loss": 0.7,
                                                      "train/loss": 0.4, "epoch": 10},
             "duration_s": 60.2, "launcher": {"code": "ca8c0910a0"}}, indent=1))

    time.sleep(2.1)  # (status caches a run directory once it has not changed for 2 s)

    def scandir_pass() -> int:
        count = 0
        with os.scandir(store.paths.runs) as it:
            for entry in it:
                with os.scandir(entry.path) as inner:
                    count += sum(1 for _ in inner)
        return count

    def status_json() -> float:
        t0 = time.perf_counter()
        with redirect_stdout(io.StringIO()):
            sys.stdout.write(json_text(SweepStore(store.root)))
        return time.perf_counter() - t0

    scandir_pass()  # warm the OS caches for both
    t0 = time.perf_counter()
    scandir_pass()
    base = time.perf_counter() - t0
    first = status_json()  # reads every FLAG and writes .status-cache/
    again = status_json()
    return [(f"os.scandir pass over {n} run dirs (baseline)", base, 1.0),
            (f"status --json over {n} runs, first call (reads every FLAG)", first, first / base),
            (f"status --json over {n} runs, again (FLAG cache)", again, again / base)]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=500)
    parser.add_argument("--grid", type=int, default=10_000)
    parser.add_argument("--status-runs", default="10000,100000",
                        help="sweep sizes for the status benchmark, comma-separated")
    parser.add_argument("--only", choices=["launch", "freeze", "status"])
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    from rich.console import Console
    from rich.table import Table

    table = Table("benchmark", "seconds", "ratio to baseline", show_edge=False)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        results = []
        if args.only in (None, "launch"):
            (work / "launch").mkdir()
            results += bench_launch(args.runs, work / "launch")
        if args.only in (None, "freeze"):
            (work / "freeze").mkdir()
            results += bench_freeze(args.grid, work / "freeze")
        if args.only in (None, "status"):
            for n in (int(x) for x in args.status_runs.split(",")):
                results += bench_status(n, work / f"status-{n}")
        os.chdir(REPO)
    for label, secs, ratio in results:
        table.add_row(label, f"{secs:.2f}" if secs else "-", f"{ratio:.2f}x" if ratio else "-")
    Console().print(table)


if __name__ == "__main__":
    main()
