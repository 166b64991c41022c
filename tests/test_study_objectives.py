"""A study of several objectives (``sweep.metric=[val/acc,cost] sweep.mode=[max,min]``): the
Pareto front searched, printed, reported (table, csv, figure), exported and chosen from
(``retrain-best --pick``); what needs one objective refused before anything is written; and a
genetic sampler's generations kept across a SIGKILL and a resume."""

from __future__ import annotations

import csv
import io
import json
import math
import os
import random
import subprocess
from typing import Any

import pytest
from test_study import KILL_HOOKS, trials

from conftest import Project

pytest.importorskip("optuna")

MO_TASK = '''
import math, time
import runner

def main(cfg):
    t = cfg.task
    # the best lr is 1e-2; a wider model is more accurate and costs more
    acc = 1.0 - abs(math.log10(t.lr) + 2.0) / 4.0 - 2.0 / t.width
    for epoch in range(1, t.epochs + 1):
        runner.log({"epoch": epoch, "val/acc": acc * epoch / t.epochs})
        time.sleep(t.sleep)
    return {"val/acc": acc, "cost": t.width / 16.0}
'''

MO_CONF = '''
name: mo
fn: mo_task:main
lr: 0.01
width: 16
epochs: 2
sleep: 0.0
'''


@pytest.fixture
def mo(project: Project) -> Project:
    (project.root / "mo_task.py").write_text(MO_TASK)
    (project.root / "conf" / "task" / "mo.yaml").write_text(MO_CONF)
    return project


def args(*more: str) -> list[str]:
    return ["task=mo", "+sweep=optuna", "sweep.metric=[val/acc,cost]", "sweep.mode=[max,min]",
            "runner.progress=false", "task.lr=tag(log,interval(0.0001,1.0))",
            "task.width=16,64,256", *more]


def brute_front(points: dict[Any, tuple[float, ...]], modes: list[str]) -> set[Any]:
    signed = {k: tuple(-v if m == "max" else v for v, m in zip(p, modes, strict=True))
              for k, p in points.items()}
    return {k for k, a in signed.items()
            if not any(all(y <= x for x, y in zip(a, b, strict=True)) and a != b
                       for j, b in signed.items() if j != k)}


@pytest.mark.parametrize("modes", [["max", "min"], ["min", "min"], ["max", "max", "min"]])
def test_the_pareto_front_is_the_brute_force_one(modes: list[str]) -> None:
    from runner.results.pareto import Point, front

    rng = random.Random(len(modes))
    for _ in range(30):
        points = {i: tuple(float(rng.randint(0, 6)) for _ in modes)  # ties on purpose
                  for i in range(rng.randint(1, 40))}
        points[999] = (math.nan,) * len(modes)  # never on the front
        got = front([Point(k, v) for k, v in points.items()], modes)
        assert {p.item for p in got} == brute_front(
            {k: v for k, v in points.items() if k != 999}, modes)
        firsts = [(-p.values[0] if modes[0] == "max" else p.values[0]) for p in got]
        assert firsts == sorted(firsts)  # best first by the first objective


def test_pick_narrows_by_constraints_and_ranks_by_weights() -> None:
    from runner.errors import RunnerError
    from runner.results.pareto import Point, choose, parse_pick

    metrics, modes = ["val/acc", "cost"], ["max", "min"]
    members = [Point("big", (0.98, 16.0)), Point("mid", (0.96, 4.0)), Point("small", (0.86, 1.0))]

    def pick(text: str) -> str:
        return choose(members, metrics, modes, parse_pick(text, metrics))[0].item

    assert pick("cost<=4") == "mid"  # the best val/acc among those that cost at most 4
    assert pick("cost<4") == "small"
    assert pick("val/acc>=0.97") == "big"
    assert pick("cost=1") == "small"  # cost alone counts
    assert pick("val/acc=1,cost=1") == "mid"  # scaled: 1 + 0, 0.83 + 0.8, 0 + 1
    assert pick("val/acc=1") == "big"
    for bad, says in [("cost<=0.5", "no setting of the front has cost<=0.5"),
                      ("loss=1", "loss is not one of the objectives (val/acc, cost)"),
                      ("cost=-1", "a weight is a number >= 0"),
                      ("cost<=abc", "'abc' is not a number"),
                      ("cost~1", "give METRIC<=X"), ("val/acc=0", "every weight is 0"),
                      (" , ", "--pick is empty")]:
        with pytest.raises(RunnerError, match=None) as raised:
            pick(bad)
        assert says in str(raised.value), (bad, str(raised.value))


def test_a_study_of_two_objectives_searches_reports_exports_and_retrains_its_front(
        mo: Project) -> None:
    proc = mo.run(*args("sweep.n_trials=14", "launcher.max_parallel=2"), timeout=300)
    assert proc.returncode == 0, proc.stderr
    said = proc.stdout + proc.stderr
    assert "max val/acc, min cost (its Pareto front)" in said, said
    sweep = mo.sweep_dir()
    frozen = json.loads((sweep / "study.json").read_text())
    assert (frozen["metric"], frozen["direction"]) == (["val/acc", "cost"], ["max", "min"])
    rows = trials(mo)
    assert [r["values"]["trial"] for r in rows] == list(range(14))
    assert {r["state"] for r in rows} == {"COMPLETED"}
    points = {r["values"]["trial"]: (r["summary"]["val/acc"], r["summary"]["cost"])
              for r in rows}
    expected = brute_front(points, ["max", "min"])
    # the end of the study shows its front
    assert f"Pareto front of val/acc (max), cost (min): {len(expected)} of 14 completed" \
        in said, said

    report = mo.cli("report", str(sweep))  # --metric: the study's first objective
    assert report.returncode == 0, report.stderr
    out = sweep / "report" / "val-acc"
    table = list(csv.DictReader(io.StringIO((out / "pareto.csv").read_text())))
    assert {int(r["trial"]) for r in table} == expected
    for r in table:  # each member's means are its runs' values
        assert (float(r["val/acc"]), float(r["cost"])) == pytest.approx(points[int(r["trial"])])
    md = (out / "report.md").read_text()
    assert f"## Pareto front: {len(expected)} of 14 settings" in md
    assert "![the Pareto front of val/acc and cost](pareto.png)" in md
    from conftest import png_size

    assert min(png_size(out / "pareto.png")) > 200

    exported = mo.cli("export-study", str(sweep))
    assert exported.returncode == 0, exported.stderr
    import optuna

    study = optuna.load_study(study_name=None, storage=f"sqlite:///{sweep / 'optuna.db'}")
    assert [d.name for d in study.directions] == ["MAXIMIZE", "MINIMIZE"]
    assert {t.number for t in study.best_trials} == expected

    cheap = [t for t in expected if points[t][1] <= 4]
    assert cheap, points
    want = max(cheap, key=lambda t: points[t][0])
    retrain = mo.cli("retrain-best", str(sweep), "--seeds", "2", "--pick", "cost<=4",
                     "runner.progress=false")
    assert retrain.returncode == 0, retrain.stderr
    assert "picked by cost<=4" in retrain.stderr, retrain.stderr
    child = next(p for p in (mo.root / "outputs").iterdir() if "-retrain-" in p.name)
    runs = mo.status(child)["runs"]
    assert len(runs) == 2
    for run in runs:  # the chosen trial's setting, with seeds the study never used (0)
        assert run["values"]["trial"] == want
        assert run["values"]["seed"] in (1, 2)
        assert run["summary"]["cost"] <= 4

    # a warm start for a study of the same objectives takes both values
    warm = mo.run(*args("sweep.n_trials=2", "runner.name=warm",
                        f"sweep.warm_start={sweep}"), timeout=300)
    assert warm.returncode == 0, warm.stderr
    history = json.loads((mo.root / "outputs" / "warm" / "warm_start.json").read_text())
    assert len(history["trials"]) == 14
    assert all(len(t["values"]) == 2 for t in history["trials"])

    # --pick on a study of one objective says what to do instead
    single = mo.run("task=mo", "+sweep=optuna", "sweep.metric=val/acc", "sweep.n_trials=2",
                    "runner.progress=false", "runner.name=single",
                    "task.lr=tag(log,interval(0.0001,1.0))", timeout=300)
    assert single.returncode == 0, single.stderr
    refused = mo.cli("retrain-best", str(mo.root / "outputs" / "single"), "--seeds", "1",
                     "--pick", "val/acc=1")
    assert refused.returncode != 0
    assert "has one objective: retrain-best takes its best setting by --metric" in \
        refused.stderr, refused.stderr
    assert "Traceback" not in refused.stderr


@pytest.mark.parametrize(("extra", "says"), [
    (["sweep.pruner=asha"], "sweep.pruner=asha: optuna cannot prune a study of 2 objectives"),
    (["sweep.sampler=cmaes"], "sweep.sampler=cmaes optimises one objective"),
    (["sweep.target=0.9"], "sweep.target compares one objective's values"),
    (["sweep.patience=3"], "sweep.patience compares one objective's values"),
    (["sweep.mode=[max]"], "sweep.mode gives 1 direction(s) for 2 objective(s)"),
    (["sweep.mode=max"], "sweep.mode=max with 2 objectives: give one direction per objective"),
    (["sweep.mode=[max,least]"], "sweep.mode: 'least' (for cost) is not one of: max, min"),
    (["sweep.metric=[val/acc,val/acc]"], "sweep.metric names val/acc twice"),
    (["sweep.metric=[val/acc,cost_of_it]", "sweep.mode=null"],
     "is a higher or a lower 'cost_of_it' better?"),
])
def test_what_needs_one_objective_is_refused_before_anything_is_written(
        mo: Project, extra: list[str], says: str) -> None:
    proc = mo.run(*args("sweep.n_trials=4", *extra))
    assert proc.returncode != 0
    assert says in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (mo.root / "outputs").exists() or not any((mo.root / "outputs").iterdir())


@pytest.mark.parametrize("point", ["asked", "frozen"])
def test_kill_matrix_a_genetic_study_keeps_its_generations_across_a_sigkill(
        mo: Project, point: str) -> None:
    """NSGA-II keeps each trial's generation in the trial; a study rebuilt from the run store
    after a SIGKILL would start again at generation 0 if that were lost. Trials stay contiguous,
    none twice, and generations never go back."""
    hooks = mo.root / "killhooks"
    hooks.mkdir()
    (hooks / "sitecustomize.py").write_text(KILL_HOOKS)
    command = args("sweep.sampler=nsga2", "sweep.population=4", "launcher.max_parallel=2",
                   "task.sleep=0.05")
    env = {**mo.env(), "KILL_POINT": point, "KILL_ONCE": str(mo.root / "killed"),
           "KILL_AFTER": "9"}
    env["PYTHONPATH"] = f"{hooks}{os.pathsep}{env['PYTHONPATH']}"
    first = subprocess.run(mo.args(*command, "sweep.n_trials=14"), cwd=mo.root, env=env,
                           text=True, capture_output=True, timeout=300, start_new_session=True)
    assert (mo.root / "killed").exists(), first.stdout + first.stderr  # the kill happened
    again = mo.run(*command, "sweep.n_trials=14", "runner.retry_crashed=true", timeout=300)
    assert again.returncode == 0, again.stdout + again.stderr
    rows = trials(mo)
    assert [r["values"]["trial"] for r in rows] == list(range(14))  # none lost
    assert len({r["id"] for r in rows}) == 14  # none proposed twice
    assert {r["state"] for r in rows} == {"COMPLETED"}
    sweep = mo.sweep_dir()
    runs = {p.name.split("-")[-1]: p for p in (sweep / "runs").iterdir()}
    generations = []
    for row in rows:
        proposal = json.loads((runs[row["id"]] / "proposal.json").read_text())
        generations.append(proposal["NSGAIISampler:generation"])
    assert generations == sorted(generations), generations  # never back to 0 after the kill
    assert generations[-1] >= 2, generations
