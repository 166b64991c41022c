"""``source:wandb``: the read-only commands over a WandB project instead of a sweep directory.

``/runs`` lists a project's runs (WandB's run filters as JSON, WandB's order or best first by a
summary metric, a state, top k), ``/summary`` shows one run (state, runtime, group, tags, config
and summary, filtered by keys or key prefixes), ``/plot`` draws keys of several runs, each key
read with WandB's full history scan (a key logged every N steps is drawn at those steps, none
thinned away), one panel per key, mean and 95% band over seeds when asked. Names autocomplete
from the cached listing.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from typing import Any

import numpy as np

from runner.errors import StateError
from runner.integrations.discord_bot.messages import (
    MAX_PLOT_RUNS,
    Reply,
    code_table,
    comma_list,
    duration_text,
    fmt,
    plot_keys,
)
from runner.integrations.discord_bot.wandb_source import (
    STATE_NAMES,
    WANDB_STATES,
    WandbSource,
    WRun,
    check_project,
    parse_filters,
)
from runner.results.queries import key_matches

MAX_TOP = 100  # runs one /runs lists (one WandB query)
SEED_KEYS = ("seed",)


def state_filter(state: str | None) -> dict[str, Any] | None:
    """A state as runner (COMPLETED, CRASHED, ...) or WandB (finished, failed, ...) names it."""
    if not state:
        return None
    names = STATE_NAMES.get(state.upper()) or ([state.lower()] if state.lower() in WANDB_STATES
                                               else None)
    if names is None:
        raise StateError(f"state:{state} is not a WandB run state; one of: "
                         f"{', '.join(WANDB_STATES)}")
    return {"state": names[0]} if len(names) == 1 else {"state": {"$in": names}}


def _and(*filters: dict[str, Any] | None) -> dict[str, Any] | None:
    parts = [f for f in filters if f]
    return None if not parts else parts[0] if len(parts) == 1 else {"$and": parts}


class WandbCommands:
    def __init__(self, source: WandbSource, default_project: str | None = None,
                 allowed: Sequence[str] = ("*",)) -> None:
        self.source = source
        self.default_project = default_project
        self.allowed = list(allowed)  # bot.wandb_projects: fnmatch patterns of entity/project

    def project(self, name: str | None) -> str:
        project = (name or "").strip() or self.default_project
        if not project:
            raise StateError("give the WandB project as sweep:<entity/project> "
                             "(or set bot.wandb_project)")
        check_project(project)
        if not any(fnmatch.fnmatchcase(project, pattern) for pattern in self.allowed):
            raise StateError(f"WandB project {project} is not one this bot reads "
                             "(bot.wandb_projects)")
        return project

    def run_ref(self, ref: str, project: str | None) -> WRun:
        """A run by entity/project/id, or by id or name in ``project`` (either one allowed)."""
        parts = ref.strip().split("/")
        if len(parts) == 3:
            return self.source.run(parts[2], self.project("/".join(parts[:2])))
        return self.source.run(ref, self.project(project))

    # ------------------------------------------------------------------ commands

    def runs(self, project: str | None, state: str | None = None, top: int | None = None,
             sort: str | None = None, mode: str | None = None,
             filters: str | None = None) -> Reply:
        from runner.results.modes import mode_for

        project = self.project(project)
        top = min(int(top or 25), MAX_TOP)
        if top < 1:
            raise StateError(f"top:{top} must be at least 1")
        flt = _and(state_filter(state), parse_filters(filters))
        if sort:
            mode = mode_for(sort, mode)
            order = ("-" if mode == "max" else "+") + f"summary_metrics.{sort}"
        else:
            order = "-created_at"
        found = self.source.runs(project, flt, order, top)
        rows = []
        for run in found:
            metrics = run.metrics()
            if sort:
                info = f"{sort}={fmt(metrics.get(sort))}"
            else:
                info = ", ".join(f"{k}={fmt(v)}" for k, v in list(metrics.items())[:3])
            rows.append([run.name, run.id, run.state, duration_text(run.runtime_s), info[:60]])
        title = (f"**WandB {project}**: {len(rows)} run(s)" + (f" {state}" if state else "")
                 + (f", best first by {sort} ({mode})" if sort else "")
                 + (" matching the filters" if filters else ""))
        return Reply(title + "\n" + code_table(["run", "id", "state", "time", "summary"], rows))

    def summary(self, ref: str, keys: str = "", project: str | None = None) -> Reply:
        run = self.run_ref(ref, project)
        wanted = comma_list(keys)
        metrics = {k: v for k, v in run.metrics().items() if key_matches(k, wanted)}
        lines = [f"**WandB {run.path}** ({run.name}): {run.state}, "
                 f"{duration_text(run.runtime_s) or 'runtime unknown'}"
                 + (f", group {run.group}" if run.group else "")
                 + (f", tags {', '.join(run.tags)}" if run.tags else "")]
        if run.last_step is not None and run.last_step >= 0:
            lines[0] += f", last step {run.last_step}"
        if metrics:
            lines.append("summary:\n" + code_table(["key", "value"], sorted(metrics.items())))
        else:
            lines.append("summary: none" + (f" matching {keys}" if wanted else " logged yet"))
        config = sorted((k, v) for k, v in run.config.items() if key_matches(k, wanted))
        if config:
            lines.append("config:\n" + code_table(["key", "value"], config[:60]))
        elif wanted:
            lines.append(f"config: no key matching {keys}")
        return Reply("\n".join(lines))

    def plot(self, project: str | None, runs: str = "", keys: str = "loss",
             spread: bool = False, filters: str | None = None) -> Reply:
        from runner.results import plots
        project = self.project(project)
        metrics = plot_keys(keys)
        limit = MAX_PLOT_RUNS * (5 if spread else 1)
        wanted = comma_list(runs)
        if len(wanted) > limit:
            raise StateError(f"{len(wanted)} runs asked for; one plot draws at most {limit}")
        if wanted:
            chosen = [self.run_ref(r, project) for r in wanted]
        else:
            chosen = self.source.runs(project, parse_filters(filters), "-created_at", limit)
        if not chosen:
            raise StateError(f"no runs in WandB project {project}"
                             + (" matching the filters" if filters else ""))
        panels = [(metric, self._groups(chosen, metric, spread)) for metric in metrics]
        if not any(len(r.steps) for _, groups in panels for g in groups for r in g.runs):
            raise StateError(f"none of these runs logged {', '.join(metrics)}")
        png = plots.metric_panels(panels, title=f"WandB {project}", spread=spread)
        what = "mean and 95% band over seeds" if spread else "one line per run"
        return Reply(f"**WandB {project}**: {', '.join(metrics)} over steps, {len(chosen)} "
                     f"run(s) ({what})",
                     [(f"{project}-{'-'.join(metrics)}"[:80].replace("/", "_") + ".png", png)])

    def _groups(self, chosen: list[WRun], metric: str, spread: bool) -> list[Any]:
        from runner.results.aggregate import Group, RunResult

        results = []
        for run in chosen:
            steps, values = self.source.history(run, metric)
            results.append((run, RunResult(run.name, run.path, run.state, dict(run.config),
                                           run.metrics(), np.asarray(steps, dtype=float),
                                           np.asarray(values, dtype=float),
                                           values[-1] if values else None)))
        if not spread:
            return [Group((("run", run.name),), [result]) for run, result in results
                    if len(result.steps)]
        # seeds: the config keys that differ between the runs, except seeds, name a group
        keys = sorted({k for run, _ in results for k in run.config})
        varying = [k for k in keys if k.rsplit("/", 1)[-1] not in SEED_KEYS
                   and len({repr(run.config.get(k)) for run, _ in results}) > 1]
        groups: dict[tuple[tuple[str, Any], ...], Any] = {}
        for run, result in results:
            key = ((("group", run.group),) if run.group else
                   tuple((k, run.config.get(k)) for k in varying))
            groups.setdefault(key, Group(key)).runs.append(result)
        return list(groups.values())

    # ------------------------------------------------------------------ autocompletion

    def _listing(self, project: str) -> list[WRun]:
        """The project's newest runs, as autocompletion sees them (cached, 2 s at most)."""
        return self.source.runs(self.project(project), None, "-created_at", MAX_TOP,
                                timeout_s=2.0)

    def complete_runs(self, project: str, typed: str) -> list[str]:
        return [r.id for r in self._listing(project)
                if typed.lower() in (r.id + " " + r.name).lower()][:25]

    def key_names(self, project: str) -> list[str]:
        """The summary keys of the project's newest runs, sorted."""
        return sorted({k for r in self._listing(project) for k in r.metrics()})
