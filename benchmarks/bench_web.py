"""The web view at scale: its first page of a big sweep and a run's page, against `status --json`
on the same sweep (ratios against a baseline measured in the same run).

    python benchmarks/bench_web.py [--runs 10000 100000]

A synthetic sweep of N runs (half COMPLETED with a summary, half UNHATCHED, as bench_core's status
benchmark builds it) is served in process (Starlette's test client: the app's own time, not the
network's). For each size it prints: `status --json` (first call and with its FLAG cache), the
web view's first page of runs (a fresh server, then a poll of a warm one), a filtered and sorted
page, and a run's page. Targets (issue #30): the first page under 1 s and a run's page under 0.3 s
at 100,000 runs.
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
import time
from contextlib import redirect_stdout
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def build(n: int, work: Path) -> Path:
    from runner.planning.run_id import run_dirname, run_id
    from runner.planning.sweep import Plan, RunSpec
    from runner.storage.store import SweepStore

    runs = [RunSpec(run_id({"x": i}), run_dirname({"x": i}), {"x": i}, {"x": i})
            for i in range(n)]
    plan = Plan(f"web{n}", "grid", runs, ["x"], ["x"], {}, [], "0")
    store, _ = SweepStore.create(plan, work, "config", [])
    for i, ref in enumerate(store.runs()[: n // 2]):
        (ref.paths.root / "UNHATCHED").rename(ref.paths.root / "COMPLETED")
        (ref.paths.root / "COMPLETED").write_text(
            '{"attempt": 1, "summary": {"acc": %f}}' % ((i * 7919 % 1000) / 1000))
    return store.root


def timed(fn) -> float:  # noqa: ANN001
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def bench(n: int, work: Path) -> list[tuple[str, float, float]]:
    from starlette.testclient import TestClient

    from runner.results.status import json_text
    from runner.storage.store import SweepStore
    from runner.web.server import create_app

    root = build(n, work)

    def status_json() -> None:
        with redirect_stdout(io.StringIO()):
            sys.stdout.write(json_text(SweepStore(root)))

    first_status = timed(status_json)
    cached_status = timed(status_json)
    client = TestClient(create_app([work]), base_url="http://127.0.0.1")
    name = root.name

    def get(path: str) -> None:
        response = client.get(path)
        assert response.status_code == 200, response.text

    first_page = timed(lambda: get(f"/api/sweeps/{name}/runs?limit=50"))
    poll = timed(lambda: get(f"/api/sweeps/{name}/runs?limit=50"))
    sorted_page = timed(lambda: get(f"/api/sweeps/{name}/runs?limit=50&state=completed"
                                    "&sort=acc&order=desc"))
    run_id = SweepStore(root).runs()[n // 4].id
    run_page = timed(lambda: get(f"/api/sweeps/{name}/runs/{run_id}"))
    sweeps = timed(lambda: get("/api/sweeps"))
    base = cached_status
    return [(f"status --json over {n} runs, first call", first_status, first_status / base),
            (f"status --json over {n} runs, with its cache (baseline)", base, 1.0),
            (f"web: first page of {n} runs, fresh server", first_page, first_page / base),
            ("web: the same page polled again", poll, poll / base),
            ("web: completed runs, best first by acc", sorted_page, sorted_page / base),
            (f"web: a run's page (sweep of {n})", run_page, run_page / base),
            (f"web: the list of sweeps (one of {n} runs)", sweeps, sweeps / base)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, nargs="+", default=[10_000, 100_000])
    args = parser.parse_args()
    print(f"{'what':<58} {'seconds':>9} {'ratio':>7}")
    for n in args.runs:
        with tempfile.TemporaryDirectory() as tmp:
            for label, seconds, ratio in bench(n, Path(tmp)):
                print(f"{label:<58} {seconds:>9.3f} {ratio:>6.2f}x")


if __name__ == "__main__":
    main()
