"""``python -m runner +sweep=optuna ...``: the plan a study is frozen from.

A study starts with no run: the plan holds ``study.json`` (its settings, its search space as
optuna distributions, the objective and its direction, and the template every trial's config
is built from), the sweep loop's door (``runner.study.source:StudySource``) and the run hook
that judges reports (``runner.study.pruning:install``). The template is composed by Hydra once,
with a representative value for every searched key, so a typo in a key is Hydra's error now,
not a crash of trial 37.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from runner.config.schema import validate
from runner.errors import SweepError
from runner.planning.sweep import EXTENT_KEYS
from runner.study.config import STUDY_FILE, StudyConf, make_pruner, make_sampler
from runner.study.objectives import as_stored, objectives
from runner.study.space import distribution, inside, to_json
from runner.study.warm import WARM_FILE, check_sources, collect


def _representative(axis: Any) -> Any:
    if axis.choices is not None:
        return axis.choices[0]
    lo = axis.interval.start
    return lo


def plan_study(composer: Any, base: DictConfig, args: list[str], plain: list[str],
               cli_axes: list[Any], config_name: str, sources: dict[str, str]) -> Any:
    from runner.execution.tasks import check_task
    from runner.planning import sweep as sweeps

    conf = validate(base.sweep, StudyConf, "sweep")
    runner_cfg = base.get("runner") or {}
    metrics, directions = objectives(conf, runner_cfg)
    make_sampler(conf, conf.seed)  # a missing optional dependency is said now
    make_pruner(conf)
    metric, direction = as_stored(metrics, directions)
    plain_keys = {o.split("=", 1)[0].lstrip("+~") for o in plain}
    defaults = sweeps._task_axes(base, "random") or {}
    axes = sweeps._merge_axes(sweeps._params_axes({**defaults, **conf.params}, sweeps.NO_LIMITS),
                              cli_axes, plain_keys)
    if not axes:
        raise SweepError("sweep=optuna has nothing to search: give sweep.params or swept keys "
                         "on the command line (e.g. 'task.lr=tag(log,interval(1e-4,1e-1))')")
    for axis in axes:
        if composer.is_group(axis.key):
            raise SweepError(f"sweep=optuna cannot search the config group '{axis.key}': "
                             f"search its values instead, or run one study per {axis.key}")
        if axis.key == "trial":
            raise SweepError("sweep=optuna: 'trial' is the trial number's name; rename the key")
    dists = {a.key: distribution(a) for a in axes}
    check_enqueued(conf.enqueue, dists)
    rep = {a.key: _representative(a) for a in axes}
    builder = sweeps._ConfigBuilder(composer, plain, {a.key: a.prefix for a in axes},
                                    config_name)
    builder.prepare([rep])
    builder.build(rep)  # each searched key checked against the composed (typed) config
    _, resolved, interpolated = builder._cache[builder._group_key(rep)]
    template = {k: v for k, v in resolved.items() if k not in sweeps.EXEC_SECTIONS}
    execution = builder.execution()
    sweeps.add_env_names((execution.get("runner") or {}).get("secret_env") or [])
    sweeps._refuse_secrets([sweeps.RunSpec("template", "template", rep, template)], execution)
    task_fn = (template.get("task") or {}).get("fn")
    if task_fn:
        check_task(task_fn)
    settings = json.loads(json.dumps(execution["sweep"], default=str))
    files = {}
    warm_notes: list[str] = []
    folders = check_sources(conf.warm_start)
    name = sweeps._sweep_name(base, "optuna", args, config_name)
    if folders:  # frozen with the study: every later proposal sees the same history
        settings["warm_start"] = folders
        frozen = Path(str(execution["runner"].get("output_dir") or "outputs")) / name / WARM_FILE
        if frozen.is_file():  # (a resume: the history it was created with, not today's)
            kept = len(json.loads(frozen.read_text()).get("trials") or [])
            warm_notes = [f"warm start: the study's history of {kept} trial(s), frozen when it "
                          "was created"]
        else:
            history, warm_notes = collect(folders, dists, metric, template)
            files[WARM_FILE] = json.dumps(history, indent=1, default=str)
    if conf.deterministic and conf.ahead is None:  # frozen with the study: resumes keep it
        launcher = execution.get("launcher") or {}
        settings["ahead"] = int(launcher.get("max_parallel") or os.cpu_count() or 1)
    study = {"settings": settings,
             "space": to_json(dists), "metric": metric, "direction": direction,
             "template": template, "interpolated": bool(interpolated)}
    text = json.dumps(study, indent=1, sort_keys=True, default=str)
    fingerprint = identity(study)  # (its extent aside: n_trials may grow)
    return sweeps.Plan(
        name=name, kind="optuna", runs=[],
        axes=["trial", *dists], varying=["trial", *dists], execution=execution,
        overrides=list(args), fingerprint=fingerprint,
        notes=[f"a study of {conf.n_trials} trial(s): {conf.sampler} sampler, "
               f"{conf.pruner} pruner, "
               + ", ".join(f"{d} {m}" for m, d in zip(metrics, directions, strict=True))
               + (" (its Pareto front)" if len(metrics) > 1 else "")
               + (f", deterministic ({settings.get('ahead')} ahead)" if conf.deterministic
                  else ""), *warm_notes], sources=sources,
        files={STUDY_FILE: text, **files}, source="runner.study.source:StudySource",
        run_hooks=["runner.study.pruning:install"], template=template,
        searched=list(dists), max_runs=int(conf.n_trials),
        aliases=sweeps.legacy_names(base, "optuna", args, config_name),
        on_resume="runner.study.plan:extend")


# settings that say how far a study goes, not which study it is: they may change on a resume
# (the sweep's name leaves the same ones out)
EXTENT = tuple(key.split(".", 1)[1] for key in EXTENT_KEYS)


def check_enqueued(enqueue: list[Any], dists: dict[str, Any]) -> None:
    """``sweep.enqueue``: each entry a mapping of searched keys to values inside the space."""
    for i, entry in enumerate(enqueue):
        if not isinstance(entry, dict) or not entry:
            raise SweepError(f"sweep.enqueue[{i}] must be a mapping of searched keys to values, "
                             f"e.g. {{{next(iter(dists))}: ...}}")
        for key, value in entry.items():
            if key not in dists:
                raise SweepError(f"sweep.enqueue[{i}] sets '{key}', which the study does not "
                                 f"search ({', '.join(dists)})")
            if not inside(dists[key], value):
                raise SweepError(f"sweep.enqueue[{i}]: {key}={value!r} is outside its space "
                                 f"{dists[key]}")


# the rungs of ASHA and Hyperband: settings that change nothing under another pruner
RUNG_SETTINGS = ("min_resource", "max_resource", "reduction_factor")


def identity(study: dict[str, Any]) -> str:
    """What makes a study the same study: everything in study.json but how far it goes (a
    setting left at its default, null, counts as absent: a study frozen before that setting
    existed is the same study; a setting that changes nothing under the study's pruner, such as
    a rung's size without ASHA or Hyperband, is left out, so a new default of it leaves every
    such study the same)."""
    unused = () if study["settings"].get("pruner") in ("asha", "hyperband") else RUNG_SETTINGS
    same = {**study, "settings": {k: v for k, v in study["settings"].items()
                                  if k not in EXTENT and k not in unused and v is not None}}
    return hashlib.sha1(json.dumps(same, sort_keys=True, default=str).encode()).hexdigest()


def extend(store: Any, plan: Any, console: Any) -> None:
    """The same study command with another ``sweep.n_trials``: the study goes on to that many
    trials (more are proposed; fewer than it has stops proposing), said once."""
    from runner.study.source import study_lock

    settings = json.loads(plan.files[STUDY_FILE])["settings"]
    wanted = int(settings["n_trials"])
    with study_lock(store):
        path = store.root / STUDY_FILE
        frozen = json.loads(path.read_text())
        if store.manifest.get("fingerprint") != plan.fingerprint:
            if identity(frozen) != plan.fingerprint:
                return  # another study under this name: check_frozen says how it differs
            store.set_fingerprint(plan.fingerprint)  # (an older version hashed n_trials in)
    grow(store, wanted, console, {k: settings.get(k) for k in EXTENT if k != "n_trials"})


def grow(store: Any, wanted: int, console: Any,
         rules: dict[str, Any] | None = None) -> None:
    """Set the study's n_trials (``resume <study> sweep.n_trials=N`` and the same command with
    another n_trials both come here), said once."""
    from runner.errors import ConfigError
    from runner.storage.atomic import write_text_atomic
    from runner.study.source import study_lock

    if wanted < 1:
        raise ConfigError(f"sweep.n_trials={wanted} must be >= 1")
    with study_lock(store):
        path = store.root / STUDY_FILE
        frozen = json.loads(path.read_text())
        before = int(frozen["settings"]["n_trials"])
        changed = {k: v for k, v in (rules or {}).items() if frozen["settings"].get(k) != v}
        if before == wanted and not changed:
            return
        frozen["settings"].update(changed)
        frozen["settings"]["n_trials"] = wanted
        write_text_atomic(path, json.dumps(frozen, indent=1, sort_keys=True, default=str))
    have = len(store.manifest["runs"])
    console.print(f"the study goes on to {wanted} trial(s) (it had n_trials={before}, "
                  f"{have} proposed)" + ("; no more are proposed" if wanted <= have else ""))
