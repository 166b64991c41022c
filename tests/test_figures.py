"""Every figure runner draws is readable: a bounded canvas, no text outside it, no tick labels
on top of each other, no legend over data (``runner.results.plots.layout_problems``), on the
cases that made them unreadable: many settings and sweeps, long titles, log axes over a short range,
integer axes, a study with pruned trials, a sweep that only returns values. Each figure is also
written under the test's folder to be looked at."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from runner.results import plots
from runner.results.aggregate import Group, RunResult

LONG = "a-sweep-with-a-rather-long-name-" * 3


def run(i: int, lr: float, seed: int, steps: int = 30, state: str = "COMPLETED",
        trial: int | None = None, pruned_at: int | None = None) -> RunResult:
    xs = np.arange(steps if pruned_at is None else pruned_at, dtype=float)
    ys = 1 - np.exp(-lr * 50 * (xs + 1) / steps) + 0.01 * seed
    values = {"task.lr": lr, "seed": seed, **({"trial": trial} if trial is not None else {})}
    return RunResult(f"r{i:04d}", f"/x/r{i}", state, values, {}, xs, ys,
                     float(ys[-1]) if state == "COMPLETED" else None)


def groups(n: int, seeds: int = 3) -> list[Group]:
    out = []
    for g in range(n):
        lr = 10 ** (-4 + 3 * g / max(n - 1, 1))
        key = (("task.lr", lr), ("task.width", 2 ** (g % 5 + 4)), ("task.optimizer", "adamw"))
        out.append(Group(key, [run(g * 10 + s, lr, s) for s in range(seeds)]))
    return out


def check(path: Path) -> None:
    problems = plots.PROBLEMS[str(path)]
    assert problems == [], (path.name, problems)
    from conftest import png_size

    width, height = png_size(path)
    assert max(width, height) <= plots.MAX_PX, (width, height)


@pytest.mark.parametrize("n", [1, 3, 10, 18])
def test_curves_and_finals_of_many_settings_are_readable(tmp_path: Path, n: int) -> None:
    gs = groups(n)
    check(plots.curves(gs, "val/acc", tmp_path / f"curves-{n}.png",
                       title=f"{LONG}: val/acc, mean over seeds (95% t band)"))
    check(plots.finals(gs, "val/acc", tmp_path / f"finals-{n}.png",
                       title=f"{LONG}: val/acc per setting: runs, mean, 95% t interval"))


def test_params_of_a_study_with_log_axes_and_pruned_trials_is_readable(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    results = []
    for t in range(40):
        lr = float(10 ** rng.uniform(-3.3, -2.7))  # a log axis over less than a decade
        pruned = t % 3 == 0
        results.append(run(t, lr, 0, trial=t, state="PRUNED" if pruned else "COMPLETED",
                           pruned_at=5 if pruned else None))
    path = plots.params(results, ["task.lr", "seed"], {"task.lr"}, "val/acc",
                        tmp_path / "params.png", title=f"{LONG}: val/acc against each")
    check(path)
    check(plots.study(results, "val/acc", "max", tmp_path / "study.png", title=LONG))


def test_the_discord_plot_is_readable() -> None:
    png = plots.metric_panels([("loss", groups(12, seeds=1)), ("val/acc", groups(12, 1))],
                              title=LONG)
    assert png.startswith(b"\x89PNG")
    assert plots.PROBLEMS["metric_panels"] == []


def test_the_importances_figure_is_readable(tmp_path: Path) -> None:
    found = {f"task.{'very_long_' * 3}name_{i}": 1 / 12 for i in range(12)}
    check(plots.importances(found, "val/acc", tmp_path / "importances.png", title=LONG))


def test_integer_axes_get_integer_ticks_and_log_labels_never_collide() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (steps, seeds, logs) = plt.subplots(1, 3, figsize=(9, 3))
    steps.plot([0, 1, 2], [0.1, 0.5, 0.7])
    steps.set_xlabel("step")
    seeds.scatter([0, 0, 0], [1, 2, 3])  # one seed: a view narrower than one
    seeds.set_xlabel("seed")
    logs.plot([6e-4, 2e-3], [1, 2])
    logs.set_xscale("log")
    plots.readable(fig, 100)
    for ax in (steps, seeds):
        lo, hi = sorted(ax.get_xlim())
        ticks = [t for t in ax.get_xticks() if lo <= t <= hi]
        assert ticks and all(float(t).is_integer() for t in ticks), ticks  # no step 0.5
    shown = [t.get_text() for t in plots._shown_ticklabels(logs, "x") if t.get_text()]
    assert len(shown) >= 2, shown  # a short log range keeps its labels ...
    assert plots.layout_problems(fig, 100) == []  # ... none on top of another
    plt.close(fig)


@pytest.mark.parametrize("k", [2, 3, 4])
def test_the_pareto_figure_of_two_to_four_objectives_is_readable(tmp_path: Path, k: int) -> None:
    from runner.results.pareto import Point, front

    rng = np.random.default_rng(k)
    metrics = ["val/accuracy_of_the_model", "cost_in_gpu_hours", "latency/ms", "params"][:k]
    modes = ["max", "min", "min", "min"][:k]
    points = [tuple(float(x) for x in rng.uniform(0, [1, 500, 40, 1e6][:k])) for _ in range(300)]
    members = [p.values for p in front([Point(i, v) for i, v in enumerate(points)], modes)]
    check(plots.pareto(points, members, metrics, modes, tmp_path / f"pareto-{k}.png",
                       title=f"{LONG}: the Pareto front of {' and '.join(metrics)}"))


def test_the_lcbench_benchmark_figure_is_readable(tmp_path: Path) -> None:
    """``benchmarks/lcbench.png``: six methods' best-so-far against compute, over many cases."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    try:
        import bench_lcbench as bench
    finally:
        sys.path.pop(0)
    rng = np.random.default_rng(0)
    traces: dict[str, list[object]] = {}
    for m, method in enumerate(("random", "random+asha", "tpe", "tpe+asha",
                                "tpe+asha (optuna's view)", "hydra-optuna batch (tpe)")):
        traces[method] = []
        for _case in range(20):
            trace = bench.Trace()
            used, best = 0, 0.0
            while used < bench.BUDGET_TRIALS * bench.EPOCHS:
                used += int(rng.integers(3, bench.EPOCHS + 1))
                best = max(best, 100 * (1 - rng.random() ** (1 + m / 3)))
                trace.add(used, used * 60.0, best)
            traces[method].append(trace)
    path = tmp_path / "lcbench.png"
    bench.figure(traces, path, bench.BUDGET_TRIALS * bench.EPOCHS)  # type: ignore[arg-type]
    check(path)
