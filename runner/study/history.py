"""An in-memory optuna study rebuilt from the run store: one optuna trial per run, numbered by
the run's index (its trial number), in the state its FLAG file says, with the intermediate
values and pruner attributes the judge recorded in the run's ``pruning.jsonl``.

Nothing here is read back from an optuna database: a kill at any moment leaves FLAG files that
say exactly what happened, and ``pruning.jsonl`` is appended one line per decision (a torn last
line is ignored; that report is judged again).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runner.study.config import StudyConf, make_pruner, make_sampler

DECISIONS = "pruning.jsonl"
# the sampler's own attributes of a trial when it was asked (e.g. NSGA-II's generation), frozen
# with the trial's run, so a study rebuilt after a kill or a resume is the one it asked from
PROPOSAL = "proposal.json"
TRIAL_KEY = "trial"  # the trial number among a run's values


@dataclass
class Trial:
    number: int
    params: dict[str, Any]
    state: str  # a runner state: COMPLETED, PRUNED, CRASHED, RUNNING, UNHATCHED, ...
    value: float | None = None
    values: list[float] | None = None  # a study of several objectives: one per objective
    intermediate: dict[int, float] = field(default_factory=dict)
    attrs: dict[str, Any] = field(default_factory=dict)
    decisions: dict[int, bool] = field(default_factory=dict)  # step -> pruned
    attempt: int = 0  # the run's attempt that its state is of

    @property
    def end(self) -> str:
        """What a caller that holds the trial ended keeps of it (``load``'s ``known``): its
        state and attempt, so that a trial run again and ended the same way is seen anew."""
        return f"{self.state}/{self.attempt}"


def read_decisions(run_dir: str | Path) -> list[dict[str, Any]]:
    path = Path(run_dir) / DECISIONS
    try:
        text = path.read_text()
    except OSError:
        return []
    out = []
    for line in text.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue  # a torn last line (killed mid-append): that report is judged again
        if isinstance(record, dict) and "step" in record:
            out.append(record)
    return out


def objective(row: Any, metric: str) -> float | None:
    """A finished run's value of the objective: its summary's, else its last logged one."""
    from runner.storage.metrics import flatten, last_metrics

    value = row.summary.get(metric)
    if not isinstance(value, int | float):
        last = last_metrics(Path(row.ref.dir) / "metrics.jsonl") or {}
        value = flatten(last).get(metric)
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
        return None
    return float(value)


FINAL = ("COMPLETED", "PRUNED", "CRASHED", "CORRUPT")
NOT_SEEN = "NOT_SEEN"  # a sampler's view of a trial it must not learn from (runner.study.fidelity)
# ... of a trial pruned below the rung it models: pending for good, which TPE's constant liar
# counts among the bad trials (runner.study.fidelity)
BELOW_RUNG = "BELOW_RUNG"


def read_proposal(run_dir: str | Path) -> dict[str, Any]:
    try:
        data = json.loads((Path(run_dir) / PROPOSAL).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def objectives_of(row: Any, metric: str | list[str]) -> tuple[float | None, list[float] | None]:
    """A finished run's (value, values): the objective's value, or (several objectives) every
    one's, None unless each has one."""
    if isinstance(metric, str):
        return objective(row, metric), None
    values = [objective(row, m) for m in metric]
    return None, (None if any(v is None for v in values) else [float(v) for v in values
                                                                   if v is not None])


def load(store: Any, metric: str | list[str], known: dict[int, str] | None = None,
         rows: list[Any] | None = None, memo: dict[str, tuple[Any, Trial]] | None = None
         ) -> list[Trial]:
    """Every trial of the study, in trial-number order (``metric``: the objective, or a list of
    them). ``known``: trial number -> how a trial a caller already holds had ended
    (``Trial.end``); such a trial, still ended so, is listed without its decisions and value
    (read once, when it ended). ``rows``: the runs' statuses if the caller has them (else the
    store is scanned);
    ``memo``: run id -> (its row, its Trial) of such known trials, kept by a caller that loads
    again and again (the same row object again gives the same Trial)."""
    from runner.results.status import scan

    trials = []
    for row in scan(store) if rows is None else rows:
        if memo is not None and known:
            hit = memo.get(row.ref.id)
            if hit is not None and hit[0] is row and known.get(hit[1].number) == hit[1].end:
                trials.append(hit[1])
                continue
        values = dict(row.ref.values)
        number = values.pop(TRIAL_KEY, None)
        if not isinstance(number, int):
            continue
        trial = Trial(number, values, row.state,
                      attempt=row.record.attempt if row.record is not None else 0)
        trials.append(trial)
        if known and known.get(number) == trial.end and row.state in FINAL:
            if memo is not None:
                memo[row.ref.id] = (row, trial)
            continue
        trial.attrs.update(read_proposal(row.ref.dir))
        for record in read_decisions(row.ref.dir):
            step = int(record["step"])
            trial.intermediate[step] = float(record["value"])
            trial.attrs.update(record.get("attrs") or {})
            trial.decisions[step] = bool(record.get("prune"))
        if row.state == "COMPLETED":
            trial.value, trial.values = objectives_of(row, metric)
    return sorted(trials, key=lambda t: t.number)


def as_of(trials: list[Trial], number: int, ahead: int) -> list[Trial] | None:
    """What trial ``number`` may see in a deterministic study: trials before
    ``number - ahead`` as they ended, the ``ahead`` trials before it as pending (their results,
    whenever they come, never count); None while one of the earlier ones has not ended."""
    seen = []
    for trial in trials:
        if trial.number >= number:
            continue
        if trial.number < number - ahead:
            if trial.state not in FINAL:
                return None
            seen.append(trial)
        else:
            seen.append(Trial(trial.number, trial.params, "RUNNING"))
    return seen


def study_of(trials: list[Trial], conf: StudyConf, dists: dict[str, Any],
             direction: str | list[str], name: str) -> Any:
    """An in-memory optuna study holding ``trials`` (numbers 0, 1, ... in order);
    ``direction``: a list for a study of several objectives."""
    import optuna

    from runner.study.objectives import optuna_directions

    study = optuna.create_study(
        study_name=name, directions=optuna_directions(direction),
        sampler=make_sampler(conf, conf.seed),
        pruner=make_pruner(conf))
    for trial in trials:
        add(study, trial, dists)
    return study


def optuna_state(trial: Trial) -> tuple[Any, list[float] | None]:
    from optuna.trial import TrialState

    if trial.state == "COMPLETED" and trial.values is not None:
        return TrialState.COMPLETE, list(trial.values)
    if trial.state == "COMPLETED" and trial.value is not None:
        return TrialState.COMPLETE, [trial.value]
    if trial.state == "PRUNED":
        return TrialState.PRUNED, None
    if trial.state in FINAL or trial.state == NOT_SEEN:  # crashed, corrupt, no objective
        return TrialState.FAIL, None
    return TrialState.RUNNING, None  # RUNNING, UNHATCHED, INTERRUPTED, BELOW_RUNG: pending


def add(study: Any, trial: Trial, dists: dict[str, Any]) -> None:
    from optuna.trial import create_trial

    params = {k: v for k, v in trial.params.items() if k in dists}
    state, values = optuna_state(trial)
    study.add_trial(create_trial(state=state, values=values, params=params,
                                 distributions={k: dists[k] for k in params},
                                 intermediate_values=dict(trial.intermediate),
                                 system_attrs=dict(trial.attrs)))


def update(study: Any, trial: Trial, offset: int = 0) -> bool:
    """Bring a RUNNING optuna trial up to ``trial`` (its reports, its end); False if that
    trial is finished in ``study`` already (the caller rebuilds). ``offset``: the warm-start
    trials before the study's own."""
    from optuna.trial import TrialState

    frozen = study.get_trials(deepcopy=False)[trial.number + offset]
    if frozen.state != TrialState.RUNNING:
        return False
    storage, tid = study._storage, frozen._trial_id
    for step, reported in trial.intermediate.items():
        if frozen.intermediate_values.get(step) != reported:
            storage.set_trial_intermediate_value(tid, step, reported)
    for key, attr in trial.attrs.items():
        if frozen.system_attrs.get(key) != attr:
            storage.set_trial_system_attr(tid, key, attr)
    state, values = optuna_state(trial)
    if state != TrialState.RUNNING:
        storage.set_trial_state_values(tid, state, values)
    return True
