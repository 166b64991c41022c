"""Speed of `report` and of `runner.load()` against a naive read of the same files, at
several sizes (runs x logged steps), so that the growth shows:

    python benchmarks/bench_results.py [--sizes 1000x1000,10000x100,100000x100]

Baseline (same run, same files): json.loads of every line of every run's metrics.jsonl, which is
what any reader of these files must at least do naively. The report reads the same files, then
aggregates the settings (10 seeds each), bootstraps the intervals, and draws and writes both
figures and the CSV and Markdown files. ``runner.load()`` builds the runs table and the
metrics table (pandas DataFrames, every logged step of every run).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def build(root: Path, n_runs: int, steps: int) -> Path:
    from runner.planning.run_id import run_dirname, run_id
    from runner.planning.sweep import Plan, RunSpec
    from runner.storage.state import State, claim, finish
    from runner.storage.store import SweepStore

    seeds = 10
    runs = []
    for i in range(n_runs):
        values = {"task.lr": round(0.001 * (1 + i // seeds), 6), "seed": i % seeds}
        runs.append(RunSpec(run_id(values), run_dirname(values), values,
                            {"task": {"lr": values["task.lr"]}, "seed": values["seed"]}))
    plan = Plan("bench", "grid", runs, ["task.lr", "seed"], ["task.lr", "seed"],
                {"sweep": {"seed_key": "seed"}}, [], "x")
    store, _ = SweepStore.create(plan, root, "config", [])
    for k, ref in enumerate(store.runs()):
        lr = ref.values["task.lr"]
        lines = []
        for step in range(steps):
            record = {"step": step, "time": 0.0, "attempt": 1, "train/loss": 1 / (1 + step * lr)}
            if step % 10 == 9:
                record["val/acc"] = 1 - 1 / (1 + step * lr) + 0.001 * (k % 7)
            lines.append(json.dumps(record))
        Path(ref.dir, "metrics.jsonl").write_text("\n".join(lines) + "\n")
        lease = claim(ref.paths, frozenset({State.UNHATCHED}))
        assert lease is not None
        finish(ref.paths, lease.token, State.COMPLETED, {"summary": {}})
    return store.root


def measure(n_runs: int, steps: int) -> None:
    import runner
    from runner.results.report import make_report
    from runner.storage.store import SweepStore

    with tempfile.TemporaryDirectory() as tmp:
        sweep = build(Path(tmp), n_runs, steps)
        files = sorted(Path(sweep, "runs").glob("*/metrics.jsonl"))
        t0 = time.perf_counter()
        count = 0
        for f in files:
            for line in f.read_text().splitlines():
                json.loads(line)
                count += 1
        naive = time.perf_counter() - t0
        t0 = time.perf_counter()
        report = make_report(SweepStore(sweep), "val/acc", "max", "final")
        full = time.perf_counter() - t0
        t0 = time.perf_counter()
        results = runner.load(sweep)
        metrics = results.metrics()
        runs = results.runs()
        loaded = time.perf_counter() - t0
        assert len(metrics) == count and len(runs) == len(files), (len(metrics), count)
    print(f"{len(files):,} runs, {count:,} logged steps (best setting: {report.best.label})")
    print(f"  naive json.loads of every line (baseline): {naive:7.2f} s  1.00x")
    print(f"  report (read, aggregate, plot, write):      {full:7.2f} s  {full / naive:.2f}x")
    print(f"  runner.load(): runs() and metrics()         {loaded:7.2f} s  {loaded / naive:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="1000x1000,10000x100,100000x100",
                        help="runs x steps, comma-separated")
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    for size in args.sizes.split(","):
        n_runs, steps = (int(x) for x in size.lower().split("x"))
        measure(n_runs, steps)


if __name__ == "__main__":
    main()
