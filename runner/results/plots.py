"""Figures of results (matplotlib, PNG or SVG), one consistent colour per group.

* ``curves``: the metric over steps, one line per group (the mean over its seeds) with a 95%
  band (Student's t interval of the mean, as in the report's table; none where n = 1). Seeds
  that logged at different steps are aligned by interpolating each run onto the union of the
  group's steps, within the run's own range.
* ``finals``: every run's reduced metric as a dot, per group, with the group mean and its
  95% t interval.

Every figure is laid out for reading before it is written (``readable``): titles wrap to the
canvas, integer axes (step, trial) get integer ticks, log axes few labels, and a legend that
would cover data moves beside the plot; ``layout_problems`` says what a reader would still
stumble on (a canvas over ``MAX_PX``, text outside it, tick labels on top of each other, a legend
over data), and the tests ask it of every figure runner draws.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from runner.results.aggregate import Group, t975


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # files only, never a window
    import matplotlib.pyplot as plt

    return plt


MAX_PX = 3200  # neither side of a written figure is wider than this (at its dpi)
PROBLEMS: dict[str, list[str]] = {}  # figure file -> what layout_problems found (for tests)


def _save(plt: Any, fig: Any, path: Path, dpi: int | None = None) -> Path:
    """Lay out for reading, write (``DPI``) and close a figure; its folder is created."""
    readable(fig, dpi or DPI)
    path.parent.mkdir(parents=True, exist_ok=True)
    PROBLEMS[str(path)] = layout_problems(fig, dpi or DPI)
    fig.savefig(path, dpi=dpi or DPI)
    plt.close(fig)
    return path


def readable(fig: Any, dpi: int) -> None:
    """Fix what makes a figure hard to read: a title wider than the canvas (wrapped), a
    canvas wider than ``MAX_PX`` (shrunk), ticks between integers on integer axes, crowded log
    labels, and a legend over data (moved beside the plot)."""
    from matplotlib.ticker import FixedLocator, LogLocator, MaxNLocator, NullFormatter

    width, height = fig.get_size_inches()
    fig.set_size_inches(min(width, MAX_PX / dpi), min(height, MAX_PX / dpi))  # (the long side)
    for ax in fig.axes:
        for axis, label, limits in ((ax.xaxis, ax.get_xlabel(), ax.get_xlim()),
                                    (ax.yaxis, ax.get_ylabel(), ax.get_ylim())):
            if axis.get_scale() != "log" and label.split(" ")[0] in INTEGER_AXES \
                    and not _categorical(axis):
                lo, hi = sorted(limits)
                axis.set_major_locator(MaxNLocator(integer=True) if hi - lo >= 1 else
                                       FixedLocator(range(math.ceil(lo), math.floor(hi) + 1)))
    fig.tight_layout()
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    for ax in fig.axes:  # log labels on top of each other: fewer majors, no minor labels
        for name, axis in (("x", ax.xaxis), ("y", ax.yaxis)):
            if axis.get_scale() == "log" and _labels_overlap(_shown_ticklabels(ax, name),
                                                             renderer):
                axis.set_major_locator(LogLocator(numticks=6))
                axis.set_minor_formatter(NullFormatter())
                fig.canvas.draw()
    for ax in fig.axes:
        legend = ax.get_legend()
        if legend is not None and _covered(ax, legend):
            _legend_aside(fig, ax, legend)
    wrapped = False
    for text in [*(ax.title for ax in fig.axes), getattr(fig, "_suptitle", None)]:
        if text is not None and text.get_text():
            wrapped = _wrap(text, fig) or wrapped
    if wrapped:
        fig.tight_layout()
        fig.canvas.draw()


INTEGER_AXES = ("step", "trial", "epoch", "seed")


def _legend_aside(fig: Any, ax: Any, legend: Any) -> None:
    """A legend that would cover data goes beside the plot, or below it (the canvas grows)
    when beside it would leave the plot less than half the canvas."""
    handles, labels = ax.get_legend_handles_labels()
    size = legend.get_texts()[0].get_fontsize() if legend.get_texts() else 8
    ax.legend(handles, labels, fontsize=size, loc="upper left", bbox_to_anchor=(1.01, 1.0),
              borderaxespad=0.0, framealpha=0.9)
    fig.tight_layout()
    fig.canvas.draw()
    if ax.get_window_extent().width >= 0.5 * fig.bbox.width:
        return
    ax.get_legend().remove()
    below = ax.legend(handles, labels, fontsize=size, loc="upper center",
                      bbox_to_anchor=(0.5, -0.14), borderaxespad=0.0, framealpha=0.9,
                      ncol=2 if max(len(t) for t in labels) < 40 else 1)
    fig.canvas.draw()
    need = below.get_window_extent().height / fig.dpi
    width, height = fig.get_size_inches()
    fig.set_size_inches(width, height + need + 0.3)
    fig.tight_layout()
    fig.canvas.draw()


def _wrap(text: Any, fig: Any) -> bool:
    """Break a title that does not fit the canvas around its centre into lines that do (a
    long sweep name has no spaces: it is broken inside words, at hyphens first)."""
    import textwrap

    renderer = fig.canvas.get_renderer()
    box = text.get_window_extent(renderer)
    centre = (box.x0 + box.x1) / 2
    room = 2 * min(centre - fig.bbox.x0, fig.bbox.x1 - centre) * 0.94
    if box.width <= room:
        return False
    lines = text.get_text().split("\n")
    longest = max(len(line) for line in lines)
    per_line = max(16, int(longest * room / box.width * 0.92))
    text.set_text("\n".join(textwrap.fill(line, per_line, break_long_words=True,
                                           break_on_hyphens=True) for line in lines))
    return True


def _categorical(axis: Any) -> bool:
    return any(not _is_number(t.get_text()) for t in axis.get_ticklabels() if t.get_text())


def _is_number(text: str) -> bool:
    try:
        float(text.replace("\u2212", "-"))
    except ValueError:
        return False
    return True


def _data_points(ax: Any) -> np.ndarray:
    """Every line vertex and scatter point of ``ax`` in display coordinates."""
    points = []
    for line in ax.get_lines():
        xy = np.asarray(line.get_xydata(), dtype=float)
        if len(xy):
            points.append(ax.transData.transform(xy))
    for coll in ax.collections:
        offsets = np.asarray(coll.get_offsets(), dtype=float)
        if offsets.ndim == 2 and len(offsets) and offsets.shape[1] == 2:
            points.append(ax.transData.transform(offsets))
    pts = np.concatenate(points) if points else np.zeros((0, 2))
    return pts[np.all(np.isfinite(pts), axis=1)]


def _covered(ax: Any, legend: Any) -> bool:
    """Whether the legend lies over any data point of its axes."""
    box = legend.get_window_extent()
    pts = _data_points(ax)
    inside = ((pts[:, 0] >= box.x0) & (pts[:, 0] <= box.x1) & (pts[:, 1] >= box.y0)
              & (pts[:, 1] <= box.y1))
    return bool(inside.any())


def _crowded_rotated(labels: list[Any], renderer: Any) -> bool:
    """Slanted labels overlap when their anchors are closer than a line's height over the
    sine of the slant (their boxes overlap long before the texts do)."""
    slanted = [t for t in labels if t.get_rotation() % 180 not in (0, 90)]
    if len(slanted) < 2:
        return False
    angle = math.radians(slanted[0].get_rotation() % 180)
    line = max(t.get_fontsize() for t in slanted) * renderer.points_to_pixels(1.0)
    xs = sorted(_anchor_x(t, renderer) for t in slanted)
    return any(b - a < line / abs(math.sin(angle)) * 0.9 for a, b in zip(xs, xs[1:],
                                                                       strict=False))


def _anchor_x(text: Any, renderer: Any) -> float:
    """Where a tick label is anchored along the x axis, in pixels."""
    return float(text.get_transform().transform(text.get_position())[0])


def _shown_ticklabels(ax: Any, which: str = "xy") -> list[Any]:
    """The tick labels drawn (major and minor): those whose tick lies inside the axis's view."""
    out = []
    for name in which:
        axis = ax.xaxis if name == "x" else ax.yaxis
        lo, hi = sorted(axis.get_view_interval())
        for minor in (False, True):
            for loc, label in zip(axis.get_ticklocs(minor=minor),
                                  axis.get_ticklabels(minor=minor), strict=False):
                if lo - 1e-9 * abs(hi - lo) <= loc <= hi + 1e-9 * abs(hi - lo):
                    out.append(label)
    return out


def _labels_overlap(labels: list[Any], renderer: Any) -> bool:
    """Whether any two of these tick labels are drawn on top of each other (slanted ones by
    their spacing, upright ones by their boxes)."""
    shown = [t for t in labels if t.get_text() and t.get_visible()]
    if _crowded_rotated(shown, renderer):
        return True
    boxes = sorted((t.get_window_extent(renderer) for t in shown
                    if t.get_rotation() % 180 in (0, 90)), key=lambda b: (b.x0, b.y0))
    for a, b in zip(boxes, boxes[1:], strict=False):
        both = a.intersection(a, b)
        if both is not None and both.width > 1 and both.height > 1:
            return True
    return False


def layout_problems(fig: Any, dpi: int) -> list[str]:
    """What would make the figure hard to read, in words (nothing: readable)."""
    problems = []
    width, height = fig.get_size_inches() * dpi
    if max(width, height) > MAX_PX + 1:
        problems.append(f"the canvas is {width:.0f}x{height:.0f} px (over {MAX_PX})")
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    canvas = fig.bbox
    texts: list[Any] = [t for t in (getattr(fig, "_suptitle", None),) if t is not None]
    for ax in fig.axes:
        texts += [ax.title, ax.xaxis.label, ax.yaxis.label]
        legend = ax.get_legend()
        if legend is not None:
            texts += list(legend.get_texts())
        texts += _shown_ticklabels(ax)
    for text in [t for t in texts if t.get_text() and t.get_visible()]:
        box = text.get_window_extent(renderer)
        if box.x0 < canvas.x0 - 2 or box.x1 > canvas.x1 + 2 or box.y0 < canvas.y0 - 2 or \
                box.y1 > canvas.y1 + 2:
            problems.append(f"text {text.get_text()[:40]!r} lies outside the canvas")
    for ax in fig.axes:
        for name in ("x", "y"):
            if _labels_overlap(_shown_ticklabels(ax, name), renderer):
                problems.append(f"{name} tick labels overlap in {ax.get_title()[:30]!r}")
        legend = ax.get_legend()
        if legend is not None and _covered(ax, legend):
            problems.append(f"the legend covers data in {ax.get_title()[:30]!r}")
    return problems


def colours(n: int) -> list[Any]:
    """n distinct colours; group i always gets colour i (figures agree with each other)."""
    plt = _pyplot()
    cmap = plt.get_cmap("tab10" if n <= 10 else "tab20")
    return [cmap(i % cmap.N) for i in range(n)]


def aligned(group: Group) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(steps, mean, half-width of the 95% band) over the group's runs."""
    runs = [r for r in group.runs if len(r.steps)]
    if not runs:
        return np.array([]), np.array([]), np.array([])
    grid = np.unique(np.concatenate([r.steps for r in runs]))
    table = np.full((len(runs), len(grid)), np.nan)
    for i, run in enumerate(runs):
        inside = (grid >= run.steps[0]) & (grid <= run.steps[-1])
        table[i, inside] = np.interp(grid[inside], run.steps, run.series)
    count = np.sum(~np.isnan(table), axis=0)  # >= 1: every step is inside some run's range
    mean = np.nansum(table, axis=0) / count
    squares = np.nansum((table - mean) ** 2, axis=0)
    std = np.sqrt(squares / np.maximum(count - 1, 1))
    t = np.array([t975(int(c) - 1) if c > 1 else 0.0 for c in count])
    half = np.where(count > 1, t * std / np.sqrt(count), 0.0)  # the report's t interval
    return grid, mean, half


DPI = 200  # report and compare figures: fit for a paper (a Discord /plot stays at 100)
STYLES = ("-", "--", ":", "-.")


def curves(groups: Sequence[Group], metric: str, path: Path, title: str = "",
           palette: Sequence[Any] | None = None, labels: Sequence[str] | None = None,
           styles: Sequence[str] | None = None) -> Path:
    plt = _pyplot()
    palette = palette or colours(len(groups))
    fig, ax = plt.subplots(figsize=(8, 5), dpi=100)
    for i, group in enumerate(groups):
        steps, mean, half = aligned(group)
        if not len(steps):
            continue
        n = sum(1 for r in group.runs if len(r.steps))
        label = (labels[i] if labels else group.label) + f"  (n={n})"
        ax.plot(steps, mean, color=palette[i], label=label, linewidth=1.8,
                linestyle=styles[i] if styles else "-")
        if np.any(half > 0):
            ax.fill_between(steps, mean - half, mean + half, color=palette[i], alpha=0.2,
                            linewidth=0)
    ax.set_xlabel("step")
    ax.set_ylabel(metric)
    ax.set_title(title or f"{metric}: mean over seeds, 95% t band (none where n=1)")
    ax.grid(alpha=0.3)
    if groups:
        ax.legend(fontsize=9, loc="best", framealpha=0.9)
    return _save(plt, fig, path)


def finals(groups: Sequence[Group], metric: str, path: Path, title: str = "",
           palette: Sequence[Any] | None = None, labels: Sequence[str] | None = None) -> Path:
    plt = _pyplot()
    palette = palette or colours(len(groups))
    fig, ax = plt.subplots(figsize=(min(14, max(6, 0.6 * len(groups) + 2)), 5), dpi=100)
    rng = np.random.default_rng(0)
    for i, group in enumerate(groups):
        values = group.values
        if not len(values):
            continue
        stats = group.stats()
        ax.scatter(i + rng.uniform(-0.12, 0.12, len(values)), values, color=palette[i],
                   alpha=0.6, s=18, zorder=2)
        if math.isnan(stats["ci_low"]):  # n < 2: the mean alone, no interval
            ax.plot(i, stats["mean"], "D", color="black", markersize=6, zorder=3)
        else:
            ax.errorbar(i, stats["mean"], yerr=[[stats["mean"] - stats["ci_low"]],
                                                [stats["ci_high"] - stats["mean"]]],
                        fmt="D", color="black", capsize=6, markersize=6, zorder=3)
    ax.set_xlim(-0.6, len(groups) - 0.4)
    ax.set_xticks(range(len(groups)))
    ax.set_xticklabels(labels or [g.label for g in groups], rotation=30, ha="right", fontsize=8)
    ax.set_ylabel(metric)
    ax.set_title(title or f"{metric} per setting: runs, mean, 95% t interval",
                 fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    return _save(plt, fig, path)


def params(results: Sequence[Any], keys: Sequence[str], log_keys: set[str], metric: str,
           path: Path, title: str = "") -> Path:
    """The reduced metric of every run against each swept hyperparameter (a panel per key; log
    axes where the search space is log), for random and adaptive searches."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(keys), figsize=(4.2 * len(keys), 3.8), dpi=100,
                             squeeze=False)
    for ax, key in zip(axes[0], keys, strict=True):
        pairs = [(r.values.get(key), r.value) for r in results if r.value is not None]
        stopped = [(r.values.get(key), float(r.series[-1])) for r in results
                   if r.value is None and r.state == "PRUNED" and len(r.series)]
        numeric = [(x, y) for x, y in pairs if isinstance(x, int | float)
                   and not isinstance(x, bool)]
        if numeric or (stopped and not pairs):
            if numeric:
                ax.scatter([x for x, _ in numeric], [y for _, y in numeric], s=22, alpha=0.75,
                           color=colours(1)[0], label="completed")
            shown = [(x, y) for x, y in stopped if isinstance(x, int | float)]
            if shown:  # a pruned trial where its last report left it
                ax.scatter([x for x, _ in shown], [y for _, y in shown], s=22, marker="x",
                           color="0.5", label="pruned (last report)")
                ax.legend(fontsize=7)
            if key in log_keys and all(x > 0 for x, _ in [*numeric, *shown]):
                ax.set_xscale("log")
        else:  # a categorical axis: one column per value
            names = sorted({str(x) for x, _ in pairs})
            ax.scatter([names.index(str(x)) for x, _ in pairs], [y for _, y in pairs], s=22,
                       alpha=0.75, color=colours(1)[0])
            ax.set_xticks(range(len(names)))
            ax.set_xticklabels(names, rotation=30, ha="right", fontsize=8)
        ax.set_xlabel(key + (" (log)" if key in log_keys else ""))
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
    fig.suptitle(title or f"{metric} against each swept hyperparameter", fontsize=11)
    return _save(plt, fig, path)


def metric_panels(panels: Sequence[tuple[str, Sequence[Group]]], title: str = "",
                  spread: bool = False) -> bytes:
    """A PNG with one panel per metric: a line per run (each group of one run), or with
    ``spread`` the mean over each group's seeds and its 95% band. Series logged at any interval
    (validation every N steps, say) are drawn at the steps they were logged."""
    plt = _pyplot()
    import io

    fig, axes = plt.subplots(len(panels), 1, figsize=(8, 3.2 * len(panels) + 0.6), dpi=100,
                             squeeze=False)
    for ax, (metric, groups) in zip(axes[:, 0], panels, strict=True):
        palette = colours(len(groups))
        for i, group in enumerate(groups):
            steps, mean, half = aligned(group)
            if not len(steps):
                continue
            n = sum(1 for r in group.runs if len(r.steps))
            label = group.label + (f"  (n={n})" if spread else "")
            ax.plot(steps, mean, color=palette[i], label=label, linewidth=1.6,
                    marker="o" if len(steps) < 30 else None, markersize=3)
            if spread and np.any(half > 0):
                ax.fill_between(steps, mean - half, mean + half, color=palette[i], alpha=0.2,
                                linewidth=0)
        ax.set_ylabel(metric)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        if groups:
            ax.legend(fontsize=7, loc="best")
    if title:
        fig.suptitle(title, fontsize=10)
    readable(fig, 100)
    PROBLEMS["metric_panels"] = layout_problems(fig, 100)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def study(results: Sequence[Any], metric: str, mode: str, path: Path, title: str = "") -> Path:
    """An adaptive study in three panels: every trial's value and the best so far against the
    trial number; the best so far against compute (the steps every trial logged, pruned ones
    too); and every trial's curve, pruned trials in grey where they stopped."""
    plt = _pyplot()
    trials = sorted((r for r in results if isinstance(r.values.get("trial"), int)),
                    key=lambda r: r.values["trial"])
    better = max if mode == "max" else min
    fig, (history, compute, curves_ax) = plt.subplots(1, 3, figsize=(15, 4.2), dpi=100)
    colour = colours(1)[0]
    best: float | None = None
    xs, bests, spent, spent_best = [], [], [], []
    total = 0
    for r in trials:
        total += len(r.steps)
        if r.value is not None:
            best = r.value if best is None else better(best, r.value)
        if best is not None:
            xs.append(r.values["trial"])
            bests.append(best)
            spent.append(total)
            spent_best.append(best)
    done = [(r.values["trial"], r.value) for r in trials if r.value is not None]
    pruned = [(r.values["trial"], float(r.series[-1])) for r in trials
              if r.state == "PRUNED" and len(r.series)]
    if done:
        history.scatter(*zip(*done, strict=True), s=20, color=colour, label="completed")
    if pruned:
        history.scatter(*zip(*pruned, strict=True), s=20, marker="x", color="0.55",
                        label="pruned (last report)")
    if xs:
        history.step(xs, bests, where="post", color="black", linewidth=1.4, label="best so far")
        compute.step(spent, spent_best, where="post", color="black", linewidth=1.4)
    history.set_xlabel("trial")
    history.set_ylabel(metric)
    history.legend(fontsize=8)
    compute.set_xlabel("compute: steps logged by all trials so far")
    compute.set_ylabel(f"best {metric} so far")
    for r in trials:
        if not len(r.steps):
            continue
        if r.state == "PRUNED":
            curves_ax.plot(r.steps, r.series, color="0.6", linewidth=0.8, alpha=0.8)
            curves_ax.scatter(r.steps[-1:], r.series[-1:], marker="x", s=14, color="0.45")
        else:
            curves_ax.plot(r.steps, r.series, color=colour, linewidth=0.9, alpha=0.8)
    curves_ax.set_xlabel("step")
    curves_ax.set_ylabel(metric)
    curves_ax.set_title("trials' curves (grey: pruned where it stopped)", fontsize=9)
    for ax in (history, compute, curves_ax):
        ax.grid(alpha=0.3)
    fig.suptitle(title or f"{metric}: optimisation history", fontsize=11)
    return _save(plt, fig, path)


def importances(found: dict[str, float], metric: str, path: Path, title: str = "") -> Path:
    """Each hyperparameter's importance as a horizontal bar, the most important on top."""
    plt = _pyplot()
    names = list(found)[::-1]
    fig, ax = plt.subplots(figsize=(7, 1.2 + 0.45 * len(names)), dpi=100)
    ax.barh(range(len(names)), [found[n] for n in names], color=colours(1)[0])
    ax.set_yticks(range(len(names)))
    ax.set_yticklabels(names, fontsize=9)
    ax.set_xlim(0, 1)
    ax.set_xlabel(f"importance for {metric} (PED-ANOVA, sums to 1)")
    ax.grid(axis="x", alpha=0.3)
    ax.set_title(title or f"{metric}: what mattered", fontsize=10)
    return _save(plt, fig, path)


def pareto(points: Sequence[tuple[float, ...]], on_front: Sequence[tuple[float, ...]],
           metrics: Sequence[str], modes: Sequence[str], path: Path, title: str = "") -> Path:
    """Several objectives: every setting as a dot, the Pareto front's in colour (for two
    objectives joined as the staircase they trace); with more than two, a panel per pair of
    objectives (the front is the front over all of them, so a front dot may look dominated in
    a pair's view)."""
    from itertools import combinations

    plt = _pyplot()
    pairs = list(combinations(range(len(metrics)), 2))[:6]
    cols = min(3, len(pairs))
    rows = math.ceil(len(pairs) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5.0 * cols, 4.2 * rows), dpi=100,
                             squeeze=False)
    colour = colours(1)[0]
    front_set = set(on_front)
    for ax, (i, j) in zip(axes.flat, pairs, strict=False):
        rest = [p for p in points if p not in front_set]
        if rest:
            ax.scatter([p[i] for p in rest], [p[j] for p in rest], s=18, color="0.6",
                       alpha=0.7, label="dominated")
        ax.scatter([p[i] for p in on_front], [p[j] for p in on_front], s=30, color=colour,
                   zorder=3, label=f"Pareto front ({len(on_front)})")
        if len(metrics) == 2 and len(on_front) > 1:
            line = sorted(on_front, key=lambda p: p[i])
            ax.step([p[i] for p in line], [p[j] for p in line], color=colour, linewidth=1.2,
                    where="pre" if modes[i] == "max" else "post",  # the attained edge
                    zorder=2)
        ax.set_xlabel(f"{metrics[i]} ({modes[i]} is better)")
        ax.set_ylabel(f"{metrics[j]} ({modes[j]} is better)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    for ax in list(axes.flat)[len(pairs):]:
        ax.set_visible(False)
    fig.suptitle(title or "Pareto front", fontsize=11)
    return _save(plt, fig, path)
