"""``report``, ``compare`` and ``retrain-best``: what researchers ask of a finished sweep."""

from __future__ import annotations

import copy
import hashlib
import math
import re
import time
from dataclasses import dataclass
from pathlib import Path

from runner.config.configfile import load_run_config
from runner.errors import RunnerError
from runner.planning.run_id import run_dirname, run_id
from runner.planning.sweep import Plan, RunSpec, set_dotted
from runner.results import pareto, plots
from runner.results.aggregate import (
    CI_METHOD,
    Group,
    RunResult,
    collect,
    group_runs,
    groups_csv,
    rank,
    runs_csv,
    seed_key,
    used_seeds,
    write,
)
from runner.results.importances import importances
from runner.storage.store import SweepStore

MAX_CURVES = 10  # lines in the learning-curve figure
MAX_FINALS = 30  # settings in the final-metric figure


@dataclass
class Front:
    """A study's objectives, their directions, its Pareto front (best first by the first
    objective) and how many settings it has in all."""

    metrics: list[str]
    modes: list[str]
    members: list[pareto.Point[Group]]
    settings: int
    points: list[pareto.Point[Group]]  # every setting with a value of each objective


def study_front(store: SweepStore, how: str = "final") -> Front | None:
    """The Pareto front of a study of several objectives (None for any other sweep)."""
    found = pareto.study_objectives(store.manifest)
    if found is None:
        return None
    metrics, modes = found
    points, settings = pareto.group_points(store, metrics, modes, how)
    return Front(metrics, modes, pareto.front(points, modes), settings, points)


@dataclass
class Report:
    store: SweepStore
    metric: str
    mode: str
    results: list[RunResult]
    groups: list[Group]  # manifest order: colours follow it
    ranked: list[Group]
    files: dict[str, Path]
    importances: dict[str, float] | None = None  # what mattered (a search), if it says
    pareto: Front | None = None  # a study of several objectives: its Pareto front


    @property
    def best(self) -> Group:
        return self.ranked[0]


def formats(svg: bool = False, pdf: bool = False) -> tuple[str, ...]:
    return ("png", *(("svg",) if svg else ()), *(("pdf",) if pdf else ()))


def log_axes(store: SweepStore) -> tuple[list[str], set[str]]:
    """The swept keys (the seed aside), and those whose search space is log
    (``tag(log, ...)`` in the task's axes, ``sweep.params`` or the command line)."""
    manifest = store.manifest
    execution = manifest.get("execution") or {}
    kind = str(manifest.get("kind"))
    texts: dict[str, str] = {}
    task_axes = execution.get("axes") or {}
    for source in (task_axes.get(kind) or (task_axes.get("random") if kind == "optuna" else None),
                   (execution.get("sweep") or {}).get("params")):
        if isinstance(source, dict):
            texts.update({str(k): str(v) for k, v in source.items()})
    for override in manifest.get("overrides", []):
        key, sep, value = str(override).lstrip("+~").partition("=")
        if sep:
            texts[key] = value
    keys = [k for k in manifest.get("varying", []) if k not in (seed_key(store), "trial")]
    return keys, {k for k in keys if "log" in texts.get(k, "")}


def make_report(store: SweepStore, metric: str, mode: str = "max", how: str = "final",
                out: Path | None = None, svg: bool = False, pdf: bool = False) -> Report:
    results = collect(store, metric, how, mode)
    groups = group_runs(store, results)
    ranked = rank(groups, mode)
    out = out or report_dir(store, metric)
    from runner.storage.marks import read_marks

    run_tags = {k: v.tags for k, v in read_marks(store.root).runs.items() if v.tags}
    files = {"runs.csv": write(out / "runs.csv", runs_csv(results, metric, run_tags)),
             "groups.csv": write(out / "groups.csv", groups_csv(ranked))}
    # figures show the best settings (all of them for up to 10), one colour per setting
    shown = ranked[:MAX_FINALS]
    colour = dict(zip([g.label for g in shown], plots.colours(len(shown)), strict=True))
    top = shown[:MAX_CURVES]
    more = f": best {len(top)} of {len(ranked)} settings" if len(ranked) > len(top) else ""
    single = all(sum(1 for r in g.runs if len(r.steps)) < 2 for g in top)
    band = "n=1 per setting, no band" if single else "95% t band"
    keys, logs = log_axes(store)
    searched = store.manifest.get("kind") not in ("grid", "list", "single", "retrain", "rerun")
    found = importances(results, keys, logs, mode) if searched and keys else None
    logged = any(len(r.steps) for g in top for r in g.runs)  # (values only: no curve)
    for ext in formats(svg, pdf):
        if logged:
            files[f"curves.{ext}"] = plots.curves(
                top, metric, out / f"curves.{ext}", palette=[colour[g.label] for g in top],
                title=f"{store.root.name}: {metric}, mean over seeds ({band}){more}")
        files[f"finals.{ext}"] = plots.finals(
            shown, metric, out / f"finals.{ext}", palette=[colour[g.label] for g in shown],
            title=f"{store.root.name}: {metric} per setting: runs, mean, 95% t interval")
        if store.manifest.get("kind") == "optuna":
            files[f"study.{ext}"] = plots.study(
                results, metric, mode, out / f"study.{ext}",
                title=f"{store.root.name}: {metric}, optimisation history ({mode} is better)")
        if searched and keys:
            files[f"params.{ext}"] = plots.params(
                results, keys, logs, metric, out / f"params.{ext}",
                title=f"{store.root.name}: {metric} ({how}) against each hyperparameter")
        if found:
            files[f"importances.{ext}"] = plots.importances(
                found, metric, out / f"importances.{ext}",
                title=f"{store.root.name}: what mattered for {metric}")
    front = study_front(store, how)
    if front is not None:
        files["pareto.csv"] = write(out / "pareto.csv", front_csv(front))
        for ext in formats(svg, pdf):
            files[f"pareto.{ext}"] = plots.pareto(
                [p.values for p in front.points], [p.values for p in front.members],
                front.metrics, front.modes, out / f"pareto.{ext}",
                title=f"{store.root.name}: the Pareto front of {' and '.join(front.metrics)} "
                      f"({len(front.members)} of {front.settings} settings)")
    report = Report(store, metric, mode, results, groups, ranked, files, found, front)
    files["report.md"] = write(out / "report.md", markdown(report, how))
    return report


def report_dir(store: SweepStore, metric: str) -> Path:
    """``<sweep>/report/<metric>/``: a report of another metric never replaces this one's."""
    from runner.storage.paths import check_component

    name = re.sub(r"[^\w.=-]+", "-", metric).strip("-.") or "metric"
    return store.root / "report" / check_component(name, "--metric")


def front_table(front: Front) -> tuple[list[str], list[list[str]]]:
    """The front as a table: each setting's mean of every objective, and its runs."""
    header = ["setting", *(f"{m} ({d})" for m, d in zip(front.metrics, front.modes,
                                                          strict=True)), "n/runs"]
    rows = [[p.item.label, *(_num(v) for v in p.values), f"{len(p.item.values)}/"
             f"{len(p.item.runs)}"] for p in front.members]
    return header, rows


def front_csv(front: Front) -> str:
    import csv
    import io

    buf = io.StringIO()
    writer = csv.writer(buf)
    keys = [k for k, _ in front.members[0].item.key] if front.members else []
    writer.writerow([*keys, *front.metrics, "runs"])
    for p in front.members:
        writer.writerow([*(v for _, v in p.item.key), *p.values, len(p.item.runs)])
    return buf.getvalue()


def _front_lines(front: Front | None) -> list[str]:
    if front is None:
        return []
    header, rows = front_table(front)
    return [f"## Pareto front: {len(front.members)} of {front.settings} settings", "",
            "The settings no other setting beats on every objective at once (means over their "
            "runs); `retrain-best --pick` chooses among them.", "",
            "| " + " | ".join(header) + " |", "|" + "---|" * len(header),
            *("| " + " | ".join(row) + " |" for row in rows), "",
            f"![the Pareto front of {' and '.join(front.metrics)}](pareto.png)", "",
            "Data: [pareto.csv](pareto.csv).", ""]


def stats_table(groups: list[Group]) -> list[list[str]]:
    rows = []
    for i, g in enumerate(groups, 1):
        s = g.stats()
        rows.append([str(i), s["group"], f"{s['n']}/{s['runs']}", str(s["crashed"]),
                     str(s["pruned"]), str(s["missing"]),
                     _num(s["mean"]), _num(s["std"]), _num(s["median"]),
                     "n/a" if math.isnan(s["ci_low"]) else
                     f"[{_num(s['ci_low'])}, {_num(s['ci_high'])}]"])
    return rows


HEADER = ["rank", "setting", "n/runs", "crashed", "pruned", "missing", "mean", "std", "median",
          "95% CI (t)"]


def markdown(report: Report, how: str) -> str:
    m = report.store.manifest
    lines = [f"# {m.get('name')}: {report.metric} ({how}, {report.mode})", "",
             f"Sweep `{report.store.root}`, {len(report.results)} runs ({m.get('kind')}), "
             f"report written {time.strftime('%Y-%m-%d %H:%M:%S')}.", "",
             *_marks_lines(report.store.root),
             f"Best setting by {report.metric}: **{report.best.label}**.", "",
             *_front_lines(report.pareto),
             "| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(row) + " |" for row in stats_table(report.ranked)]
    lines += ["", f"{CI_METHOD}. `pruned`: trials a study's pruner stopped early; `missing`: "
              "runs not finished or that never logged the metric.", "",
              *([f"![{report.metric} over steps](curves.png)", ""]
                if "curves.png" in report.files else
                [f"(no curve: no run logged {report.metric} over steps, only a final value)",
                 ""]),
              f"![final {report.metric} per setting](finals.png)", "",
              *([f"![{report.metric} against each hyperparameter](params.png)", ""]
                if "params.png" in report.files else []),
              *(["What mattered (PED-ANOVA importance, sums to 1):", "",
                 "| hyperparameter | importance |", "|---|---|",
                 *(f"| {k} | {v:.3f} |" for k, v in report.importances.items()), "",
                 f"![what mattered for {report.metric}](importances.png)", ""]
                if report.importances else []),
              "Data: [runs.csv](runs.csv) (one row per run), [groups.csv](groups.csv), and each "
              "run's `progress.csv`.", ""]
    return "\n".join(lines)


def _marks_lines(root: Path) -> list[str]:
    """The sweep's tags and notes (``python -m runner tag`` / ``note``), as Markdown."""
    from runner.storage.marks import read_marks

    marks = read_marks(root).sweep
    lines = [f"Tags: {', '.join(f'`{t}`' for t in marks.tags)}.", ""] if marks.tags else []
    for note in marks.notes:
        when = time.strftime("%Y-%m-%d", time.localtime(note.time)) if note.time else ""
        lines += [f"> {line}" for line in note.text.splitlines()]
        lines += [f"> ({', '.join(x for x in (note.by, when) if x)})", ""]
    return lines


def _num(x: float) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.4g}"


# ---------------------------------------------------------------- compare

def compare(stores: list[SweepStore], metric: str, mode: str, how: str, out: Path,
            svg: bool = False, pdf: bool = False) -> tuple[list[tuple[str, Group]],
                                                           dict[str, Path]]:
    """Every setting of every sweep in one table (best first) and one figure per kind."""
    entries: list[tuple[str, Group]] = []
    for store in stores:
        results = collect(store, metric, how, mode)
        for group in group_runs(store, results):
            entries.append((str(store.manifest.get("name")), group))
    names = list(dict.fromkeys(name for name, _ in entries))
    settings = list(dict.fromkeys(g.label for _, g in entries))
    setting_colours = plots.colours(len(settings))  # a setting keeps its colour in every sweep
    palette = [setting_colours[settings.index(g.label)] for _, g in entries]
    styles = [plots.STYLES[names.index(name) % len(plots.STYLES)] for name, _ in entries]
    labels = [f"{name}: {g.label}" for name, g in entries]
    groups = [g for _, g in entries]
    files: dict[str, Path] = {}
    for ext in formats(svg, pdf):
        files[f"curves.{ext}"] = plots.curves(
            groups, metric, out / f"curves.{ext}", palette=palette, labels=labels,
            styles=styles, title=f"{' vs '.join(names)}: {metric} (a colour per setting, a line "
                                 "style per sweep)")
        files[f"finals.{ext}"] = plots.finals(groups, metric, out / f"finals.{ext}",
                                              palette=palette, labels=labels)
    order = rank(groups, mode)
    position = {id(g): i for i, g in enumerate(groups)}  # by identity: settings may be equal
    ranked = [entries[position[id(g)]] for g in order]
    table = [["sweep", *HEADER]] + [[name, *row] for (name, _), row in
                                    zip(ranked, stats_table([g for _, g in ranked]), strict=True)]
    md = ["# compare: " + ", ".join(names) + f" on {metric} ({how}, {mode})", "",
          "| " + " | ".join(table[0]) + " |", "|" + "---|" * len(table[0])]
    md += ["| " + " | ".join(row) + " |" for row in table[1:]]
    md += ["", "![curves](curves.png)", "", "![finals](finals.png)", ""]
    files["compare.md"] = write(out / "compare.md", "\n".join(md))
    return ranked, files


# ---------------------------------------------------------------- retrain-best

def picked(report: Report, text: str | None) -> tuple[Group, str]:
    """The setting ``retrain-best`` retrains: the best by the report's metric, or (``--pick``)
    the one chosen from a study's Pareto front; and a line that says which and why."""
    if not text:
        best = report.best
        return best, f"{best.label} (mean {report.metric} {best.stats()['mean']:.4g})"
    front = report.pareto
    if front is None:
        raise RunnerError(f"--pick chooses from the Pareto front of a study of several "
                          f"objectives; {report.store.root} has one objective: retrain-best "
                          "takes its best setting by --metric")
    if not front.members:
        raise RunnerError(f"--pick: no setting of {report.store.root} has a value of every "
                          f"objective ({', '.join(front.metrics)}) yet")
    chosen, why = pareto.choose(front.members, front.metrics, front.modes,
                                pareto.parse_pick(text, front.metrics))
    group = next(g for g in report.groups if g.key == chosen.item.key)
    shown = ", ".join(f"{m} {v:.4g}" for m, v in zip(front.metrics, chosen.values, strict=True))
    return group, f"{group.label} ({shown}; picked by {why})"


def retrain_plan(report: Report, seeds: int, setting: Group | None = None,
                 pick: str | None = None) -> Plan:
    """A new sweep: the best setting's (or ``setting``'s: ``--pick``) frozen config with
    ``seeds`` seeds the parent never used."""
    if seeds < 1:
        raise RunnerError(f"--seeds must be >= 1, got {seeds}")
    best = setting or report.best
    if not len(best.values):
        raise RunnerError(f"no setting of {report.store.root} has a value of {report.metric}")
    key = seed_key(report.store)
    template = next(r for r in best.runs if r.value is not None)
    config = load_run_config(SweepStore(report.store.root).find(template.id).paths)
    start = max(used_seeds(report.store, key), default=-1) + 1  # never one a run used
    base_values = dict(best.key)
    runs = []
    for seed in range(start, start + seeds):
        values = {**base_values, key: seed}
        cfg = copy.deepcopy(config)
        set_dotted(cfg, key, seed)
        runs.append(RunSpec(run_id(values), run_dirname(values), values, cfg))
    parent = report.store.manifest
    digest = hashlib.sha1(f"{report.metric}|{report.mode}|{seeds}".encode()
                          + (f"|{pick}".encode() if pick else b"")).hexdigest()[:6]
    execution = copy.deepcopy(parent.get("execution", {}))
    execution.setdefault("runner", {})["name"] = None
    return Plan(name=f"{parent.get('name')}-retrain-{digest}", kind="retrain", runs=runs,
                axes=[*base_values, key], varying=[key], execution=execution,
                overrides=list(parent.get("overrides", [])),
                fingerprint=hashlib.sha1("".join(r.id for r in runs).encode()).hexdigest(),
                notes=[f"retrain of {best.label} from {report.store.root}"],
                parent={"sweep_dir": str(report.store.root), "name": parent.get("name"),
                        "setting": base_values, "metric": report.metric, "mode": report.mode,
                        "mean": best.stats()["mean"], **({"pick": pick} if pick else {})})
