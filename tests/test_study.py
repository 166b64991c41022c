"""``+sweep=optuna``: proposals, the study rebuilt from the run store, pruning inside the task
(PRUNED), resume after SIGKILL, two runners on one study."""

from __future__ import annotations

import csv
import io
import json
import math
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from conftest import Project, png_size, wait_for

pytest.importorskip("optuna")

STUDY_TASK = '''
import math, os, random, time
from pathlib import Path
import runner

def main(cfg):
    t = cfg.task
    ctx = runner.current_run()
    marks = Path(t.marker_dir)
    marks.mkdir(parents=True, exist_ok=True)
    (marks / f"start-{ctx.run_id}-{os.getpid()}").touch()
    # the best lr is 1e-2; a trial's curve rises toward its ceiling
    ceiling = 1.0 - abs(math.log10(t.lr) + 2.0) / 4.0 - t.width / 1000.0
    acc = 0.0
    try:
        for epoch in range(1, t.epochs + 1):
            acc = ceiling * (1 - 0.5 ** epoch)
            runner.log({"epoch": epoch, "val/acc": acc})
            time.sleep(t.sleep + random.random() * t.jitter)  # jitter: any finish order
    except runner.TrialPruned:
        (marks / f"pruned-{ctx.run_id}-{os.getpid()}").touch()  # finally-style cleanup ran
        raise
    (marks / f"done-{ctx.run_id}-{os.getpid()}").touch()
    return {"val/acc": acc}
'''

STUDY_CONF = '''
name: study
fn: study_task:main
lr: 0.01
width: 16
epochs: 6
sleep: 0.0
jitter: 0.0
marker_dir: {marker_dir}
'''

SPACE = ("'task.lr=tag(log,interval(0.0001,1.0))'", "task.width=16,64,256")


def with_study_task(project: Project) -> Project:
    """``task=study`` in ``project``: the task above and its config."""
    (project.root / "study_task.py").write_text(STUDY_TASK)
    (project.root / "conf" / "task" / "study.yaml").write_text(
        STUDY_CONF.format(marker_dir=project.markers))
    return project


@pytest.fixture
def study(project: Project) -> Project:
    return with_study_task(project)


def args(*more: str) -> list[str]:
    return ["task=study", "+sweep=optuna", "sweep.metric=val/acc", "runner.progress=false",
            *(a.strip("'") for a in SPACE), *more]


def trials(project: Project, sweep: Path | None = None) -> list[dict[str, Any]]:
    """The study's trials (of ``sweep``, default the project's one sweep) by trial number."""
    rows = project.status(sweep)["runs"]
    return sorted(rows, key=lambda r: r["values"]["trial"])


def test_a_study_runs_n_trials_asynchronously_and_the_same_command_continues(
        study: Project) -> None:
    proc = study.run(*args("sweep.n_trials=6", "launcher.max_parallel=2"), timeout=300)
    assert proc.returncode == 0, proc.stderr
    rows = trials(study)
    assert [r["values"]["trial"] for r in rows] == list(range(6))
    assert all(r["state"] == "COMPLETED" for r in rows)
    assert all(1e-4 <= r["values"]["task.lr"] <= 1.0 for r in rows)
    assert {r["values"]["task.width"] for r in rows} <= {16, 64, 256}
    assert len({json.dumps(r["values"], sort_keys=True) for r in rows}) == 6
    started = study.markers_of("start")
    again = study.run(*args("sweep.n_trials=6", "launcher.max_parallel=2"), timeout=300)
    assert again.returncode == 0, again.stderr
    assert study.markers_of("start") == started  # the study had its 6 trials: nothing ran


def test_asha_prunes_inside_the_task_and_pruned_is_its_own_state(study: Project) -> None:
    proc = study.run(*args("sweep.n_trials=12", "sweep.pruner=asha", "sweep.resource=epoch",
                           "sweep.reduction_factor=2", "sweep.min_resource=1",
                           "sweep.startup_trials=2", "launcher.max_parallel=1",
                           "sweep.sampler=random"), timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = trials(study)
    states = [r["state"] for r in rows]
    assert "PRUNED" in states and "COMPLETED" in states and "CRASHED" not in states
    pruned = [r for r in rows if r["state"] == "PRUNED"]
    assert all("pruned at epoch" in r["reason"] for r in pruned)
    assert len(study.markers_of("pruned")) == len(pruned)  # the task saw runner.TrialPruned
    sweep = study.sweep_dir()
    for row in pruned:  # every decision recorded before it took effect
        run = next(p for p in (sweep / "runs").iterdir() if p.name.endswith(row["id"]))
        decisions = [json.loads(line) for line in (run / "pruning.jsonl").read_text().splitlines()]
        assert decisions[-1]["prune"] is True and not any(d["prune"] for d in decisions[:-1])
    table = study.cli("status", str(sweep))
    assert "PRUNED" in table.stdout
    # what TPE would learn from in this study: the highest rung (epochs 1, 2, 4, final) that
    # 2 + 3 trials reached, each trial by the report the judge recorded there
    import dataclasses

    from runner.storage.store import SweepStore
    from runner.study.history import load
    from runner.study.sampler_study import SamplerStudy
    from runner.study.source import StudySource

    store = SweepStore(sweep)
    source = StudySource(store)
    tpe = dataclasses.replace(source.study.conf, sampler="tpe")
    sampling = SamplerStudy(tpe, source.study.dists, "max", "t")
    seen = sampling.sync(lambda known: load(store, "val/acc", known), 12).get_trials()
    rung = sampling._rung
    assert rung is not None and math.isfinite(rung)  # (6 epochs: few trials ran them all)
    reports = []
    for row in rows:
        run = next(p for p in (sweep / "runs").iterdir() if p.name.endswith(row["id"]))
        reports.append({d["step"]: d["value"] for d in map(
            json.loads, (run / "pruning.jsonl").read_text().splitlines())})
    went_on = min(r[1] for r in reports if max(r) >= rung)  # (epoch 1's worst of those)
    for row, trial, recorded in zip(rows, seen, reports, strict=True):
        if max(recorded) >= rung:
            assert (trial.state.name, trial.value) == ("COMPLETE", recorded[int(rung)])
        else:
            # stopped at the first rung (epoch 1) worse than every trial that went on: pending
            # for good, among the bad ones for TPE; any other stopped below the rung: left out
            assert row["state"] == "PRUNED"
            bad = max(recorded) < 2 and recorded[1] < went_on
            assert trial.state.name == ("RUNNING" if bad else "FAIL")
    assert sum(t.state.name == "COMPLETE" for t in seen) >= 5
    resumed = study.run(*args("sweep.n_trials=12", "sweep.pruner=asha", "sweep.resource=epoch",
                              "sweep.reduction_factor=2", "sweep.min_resource=1",
                              "sweep.startup_trials=2", "launcher.max_parallel=1",
                              "sweep.sampler=random"), timeout=300)
    assert resumed.returncode == 0
    assert [r["state"] for r in trials(study)] == states  # PRUNED is final: never run again


def test_a_deterministic_study_asks_and_prunes_the_same_whatever_ends_first(
        study: Project) -> None:
    """sweep.deterministic: trial n is asked from trials 0..n-ahead-1 once they have ended (the
    `ahead` before it pending) and judged against those only, so two studies whose trials end
    in different orders (random sleeps) propose, prune and complete the same trials (without
    it, the same two studies differ: checked by hand)."""
    common = ("sweep.n_trials=10", "launcher.max_parallel=3", "sweep.deterministic=true",
              "sweep.pruner=asha", "sweep.resource=epoch", "sweep.reduction_factor=2",
              "sweep.startup_trials=3", "task.jitter=0.03")
    outcomes = []
    for name in ("a", "b"):
        if name == "b":  # ... and b is SIGKILLed half-way and resumed
            proc = study.popen(*args(*common, f"runner.name={name}"))
            wait_for(lambda: len(list((study.root / "outputs").glob("b/runs/*"))) >= 5)
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate(timeout=30)
        proc = study.run(*args(*common, f"runner.name={name}"), timeout=300)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        sweep = study.root / "outputs" / name
        assert json.loads((sweep / "study.json").read_text())["settings"]["ahead"] == 3
        rows = sorted(study.status(sweep)["runs"], key=lambda r: r["values"]["trial"])
        assert [r["values"]["trial"] for r in rows] == list(range(10))
        outcomes.append([(r["values"], r["state"]) for r in rows])
    assert outcomes[0] == outcomes[1]
    assert {state for _, state in outcomes[0]} == {"COMPLETED", "PRUNED"}


def test_asha_decisions_match_hand_computed_rungs() -> None:
    """Four finished trials at rung 0 (epoch 1, eta 2): 0.9, 0.8, 0.7, 0.6. A fifth reporting
    0.85 is in the top half of the five values (promoted); 0.5 is not (pruned)."""
    from runner.planning.sweep import Axis
    from runner.study.config import StudyConf
    from runner.study.history import Trial, study_of
    from runner.study.space import distribution

    conf = StudyConf(pruner="asha", reduction_factor=2, min_resource=1)
    dists = {"x": distribution(Axis("x", "", [1, 2, 3, 4, 5, 6]))}
    done = [Trial(i, {"x": i + 1}, "COMPLETED", value=v, intermediate={1: v, 2: v},
                  attrs={"completed_rung_0": v})
            for i, v in enumerate([0.9, 0.8, 0.7, 0.6])]
    for value, pruned in ((0.85, False), (0.5, True), (0.8, False), (0.79, True)):
        study = study_of([*done, Trial(4, {"x": 5}, "RUNNING", intermediate={1: value})],
                         conf, dists, "max", "hand")
        frozen = study.get_trials(deepcopy=False)[4]
        assert bool(study.pruner.prune(study, frozen)) is pruned, value


def test_median_decisions_match_hand_computed_medians() -> None:
    from runner.planning.sweep import Axis
    from runner.study.config import StudyConf
    from runner.study.history import Trial, study_of
    from runner.study.space import distribution

    conf = StudyConf(pruner="median", startup_trials=3)
    dists = {"x": distribution(Axis("x", "", [1, 2, 3, 4, 5]))}
    done = [Trial(i, {"x": i + 1}, "COMPLETED", value=v, intermediate={3: v})
            for i, v in enumerate([0.2, 0.5, 0.9])]  # the median at step 3: 0.5
    for value, pruned in ((0.4, True), (0.6, False)):
        study = study_of([*done, Trial(3, {"x": 4}, "RUNNING", intermediate={3: value})],
                         conf, dists, "max", "hand")
        assert bool(study.pruner.prune(study, study.get_trials(deepcopy=False)[3])) is pruned


def test_sigkill_mid_study_then_resume_loses_and_repeats_no_trial(study: Project) -> None:
    more = ("sweep.n_trials=8", "launcher.max_parallel=2", "task.sleep=0.15",
            "sweep.sampler=random")
    proc = study.popen(*args(*more))
    wait_for(lambda: len(study.markers_of("done")) >= 3, timeout=120)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=10)
    time.sleep(0.5)
    completed_before = {r["id"] for r in trials(study) if r["state"] == "COMPLETED"}
    assert completed_before
    again = study.run(*args(*more), timeout=300)
    assert again.returncode == 0, again.stdout + again.stderr
    rows = trials(study)
    assert [r["values"]["trial"] for r in rows] == list(range(8))  # contiguous, 8 in all
    assert all(r["state"] == "COMPLETED" for r in rows)
    assert len({r["id"] for r in rows}) == 8
    starts = study.markers_of("start")
    assert all(starts[rid] == 1 for rid in completed_before)  # recorded: never run again
    # a body that ended but was killed before COMPLETED was recorded runs again (at least once)
    assert set(study.markers_of("done")) == {r["id"] for r in rows}


def test_two_runners_on_one_study_never_propose_the_same_trial(study: Project) -> None:
    more = ("sweep.n_trials=10", "launcher.max_parallel=2", "task.sleep=0.05",
            "sweep.sampler=random")
    procs = [study.popen(*args(*more)) for _ in range(2)]
    for proc in procs:
        out, _ = proc.communicate(timeout=300)
        assert proc.returncode == 0, out
    rows = trials(study)
    assert [r["values"]["trial"] for r in rows] == list(range(10))
    assert all(r["state"] == "COMPLETED" for r in rows)
    assert all(n == 1 for n in study.markers_of("start").values())
    assert len(study.markers_of("start")) == 10


def test_bad_study_settings_are_refused_before_anything_is_written(study: Project) -> None:
    for bad, says in ((("sweep.sampler=bayes",), "sweep.sampler='bayes' is not one of"),
                      (("sweep.pruner=hyperband",), "needs sweep.max_resource"),
                      (("sweep.metric=null",), "needs the objective")):
        proc = study.run(*args(*bad))
        assert proc.returncode != 0 and says in proc.stderr, proc.stderr
        assert "Traceback" not in proc.stderr
    assert not (study.root / "outputs").exists()


ASHA = ("sweep.pruner=asha", "sweep.resource=epoch", "sweep.reduction_factor=2",
        "sweep.startup_trials=2", "launcher.max_parallel=1", "sweep.sampler=random")


def test_pruned_trials_reach_discord_and_the_report_shows_the_study(
        study: Project, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from fakes.discord_server import FakeDiscord

    with FakeDiscord() as fake:
        monkeypatch.setenv("DISCORD_WEBHOOK_URL", fake.webhook_url)
        proc = study.run(*args("sweep.n_trials=10", *ASHA, "notifier=[console,discord]",
                               "notifier.discord.events=[run_pruned,sweep_finished]",
                               "notifier.discord.metric=val/acc"), timeout=300)
    assert proc.returncode == 0, proc.stderr
    pruned = [r for r in trials(study) if r["state"] == "PRUNED"]
    assert pruned
    titles = [r.payload["embeds"][0]["title"] for r in fake.requests]
    assert sum("pruned" in t for t in titles) == len(pruned), titles
    assert "pruned: " in str(fake.requests[-1].payload)  # the finish counts PRUNED apart

    # the end of the study names its best trials by its objective
    assert "best" in proc.stdout + proc.stderr and "by val/acc (max is better)" in \
        proc.stdout + proc.stderr, proc.stdout + proc.stderr
    out = study.sweep_dir() / "report" / "val-acc"
    report = study.cli("report", str(study.sweep_dir()), "--metric", "val/acc")
    assert report.returncode == 0, report.stderr
    groups = list(csv.DictReader(io.StringIO((out / "groups.csv").read_text())))
    assert sum(int(g["pruned"]) for g in groups) == len(pruned)  # pruned is not missing
    assert sum(int(g["missing"]) for g in groups) == 0
    # a second metric's report sits beside the first's, in the sweep's report folder
    assert study.cli("report", str(study.sweep_dir()), "--metric", "epoch", "--mode",
                     "max").returncode == 0
    assert {p.name for p in (study.sweep_dir() / "report").iterdir()} == {"val-acc", "epoch"}
    assert png_size(out / "study.png")[0] > 2000
    assert (out / "params.png").exists()  # the metric against each hyperparameter
    best = study.cli("retrain-best", str(study.sweep_dir()), "--metric", "val/acc", "--seeds",
                     "2", "runner.progress=false")
    assert best.returncode == 0, best.stderr
    retrain = next(p for p in (study.root / "outputs").iterdir() if "retrain" in p.name)
    assert len(list(retrain.glob("runs/*/COMPLETED"))) == 2


def test_the_kept_study_is_the_study_rebuilt_from_the_store(
        study: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    """Proposals keep one optuna study and bring it forward from the trials that changed since
    the last proposal alone (not from every trial of the study); at every point it holds what a
    fresh rebuild from the FLAG files holds (a resumed runner starts from that): states, values,
    reports. An ended trial claimed again (a re-run) makes the next proposal read every trial
    again."""
    from runner.config.compose import composer
    from runner.planning.sweep import expand
    from runner.storage.state import State, claim, finish
    from runner.storage.store import SweepStore
    from runner.study.fidelity import view
    from runner.study.history import load, study_of
    from runner.study.sampler_study import SamplerStudy
    from runner.study.source import StudySource

    with composer() as comp:
        plan = expand(comp, args("sweep.n_trials=12"))
    store, _ = SweepStore.create(plan, study.root / "outputs", "config", [])
    source = StudySource(store)
    forward: list[bool] = []
    advance = SamplerStudy._advance
    monkeypatch.setattr(SamplerStudy, "_advance", lambda self, trials: forward.append(
        advance(self, trials)) or forward[-1])

    def same() -> None:
        seen, _ = view(load(store, "val/acc"), source.study.conf, len(source.study.dists))
        fresh = study_of(seen, source.study.conf, source.study.dists, "max", "fresh")
        kept = source.sampling.optuna
        assert [(t.number, t.state, t.value, t.params, t.intermediate_values)
                for t in kept.trials] == [
            (t.number, t.state, t.value, t.params, t.intermediate_values) for t in fresh.trials]

    def end(ref: Any, state: State, value: float, claimed: frozenset = frozenset(
            {State.UNHATCHED})) -> None:
        lease = claim(ref.paths, claimed)
        assert lease is not None
        (Path(ref.dir) / "pruning.jsonl").write_text(json.dumps(
            {"step": 1, "value": value / 2, "prune": False}) + "\n")
        finish(ref.paths, lease.token, state, {"summary": {"val/acc": value}})

    refs = []
    for i in range(12):
        refs.append(source.propose())
        same()
        if i % 3 == 0:  # some end, some crash, some stay running
            ref = refs[i // 3 * 2] if i // 3 * 2 < len(refs) else refs[-1]
            if ref.paths.flag("UNHATCHED").exists():
                end(ref, State.COMPLETED if i % 2 == 0 else State.CRASHED, 0.1 * i)
        if i == 7:  # an ended trial claimed again (a re-run) and ended otherwise
            end(refs[0], State.COMPLETED, 0.95, frozenset({State.COMPLETED}))
    assert source.propose() is None  # n_trials reached
    assert [r.values["trial"] for r in store.runs()] == list(range(12))
    # brought forward from the changes alone at each proposal after the first, but the one
    # after the re-run, which read every trial (the sweep's .reopened token changed)
    assert forward == [True] * 10, forward


KILL_HOOKS = '''
import os, signal
from pathlib import Path

POINT = os.environ.get("KILL_POINT")
ONCE = Path(os.environ.get("KILL_ONCE", "/nonexistent"))


def _first_time():
    try:
        fd = os.open(ONCE, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except OSError:
        return False
    os.close(fd)
    return True


if POINT in ("asked", "frozen"):
    from runner.storage.store import SweepStore
    calls = {"n": 0}
    after = int(os.environ.get("KILL_AFTER", "3"))

    def _maybe_die():
        calls["n"] += 1
        if calls["n"] >= after and _first_time():
            os.killpg(os.getpgrp(), signal.SIGKILL)  # the runner and every run it started

    if POINT == "asked":  # a trial asked of the sampler, not frozen yet
        _add = SweepStore.add_runs
        def add_runs(self, runs):
            _maybe_die()
            return _add(self, runs)
        SweepStore.add_runs = add_runs
    else:  # the trial's run directory in place, the manifest not yet listing it
        _freeze = SweepStore._freeze_runs
        def _freeze_runs(self, runs):
            _freeze(self, runs)
            _maybe_die()
        SweepStore._freeze_runs = _freeze_runs
elif POINT == "rung":  # a worker killed half-way through appending a pruning decision
    import runner.study.pruning as pruning
    _append = pruning._append
    def torn(path, record):
        if not _first_time():
            return _append(path, record)
        with open(path, "a") as fh:
            fh.write('{"step": ' + str(record["step"]))
            fh.flush()
        os.kill(os.getpid(), signal.SIGKILL)
    pruning._append = torn
'''


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("point", ["asked", "frozen", "rung"])
def test_kill_matrix_no_trial_lost_or_repeated(study: Project, point: str, seed: int) -> None:
    hooks = study.root / "killhooks"
    hooks.mkdir()
    (hooks / "sitecustomize.py").write_text(KILL_HOOKS)
    # seed 1 with TPE learning from ASHA's rungs (the later proposals model a rung)
    sampler = "random" if seed == 0 else "tpe"
    command = args("sweep.n_trials=7", "launcher.max_parallel=2", f"sweep.sampler={sampler}",
                   "sweep.rung_min_trials=3", f"sweep.seed={seed}", "sweep.pruner=asha",
                   "sweep.resource=epoch", "sweep.reduction_factor=2", "sweep.startup_trials=2",
                   "task.sleep=0.02")
    env = {**study.env(), "KILL_POINT": point, "KILL_ONCE": str(study.root / "killed"),
           "KILL_AFTER": str(3 + seed)}
    env["PYTHONPATH"] = f"{hooks}{os.pathsep}{env['PYTHONPATH']}"
    first = subprocess.run(study.args(*command), cwd=study.root, env=env, text=True,
                           capture_output=True, timeout=300, start_new_session=True)
    assert (study.root / "killed").exists(), first.stdout + first.stderr  # the kill happened
    again = study.run(*command, "runner.retry_crashed=true", timeout=300)
    assert again.returncode == 0, again.stdout + again.stderr
    rows = trials(study)
    assert [r["values"]["trial"] for r in rows] == list(range(7))  # none lost, contiguous
    assert len({r["id"] for r in rows}) == 7  # none proposed twice
    assert {r["state"] for r in rows} <= {"COMPLETED", "PRUNED"}
    sweep = study.sweep_dir()
    listed = {p.name for p in (sweep / "runs").iterdir() if not p.name.startswith(".")}
    assert len(listed) == 7  # no unlisted leftover of a killed freeze
    for row in rows:  # every PRUNED trial has its decision on record, whole
        run = sweep / "runs" / next(n for n in listed if n.endswith(row["id"]))
        from runner.study.history import read_decisions

        decisions = read_decisions(run)
        if row["state"] == "PRUNED":
            assert decisions and decisions[-1]["prune"] is True


def test_what_a_deterministic_trial_sees() -> None:
    from runner.study.history import Trial, as_of

    done = [Trial(0, {"x": 0}, "COMPLETED", 0.5), Trial(1, {"x": 1}, "PRUNED"),
            Trial(2, {"x": 2}, "COMPLETED", 0.9), Trial(3, {"x": 3}, "RUNNING")]
    seen = as_of(done, 4, ahead=2)  # trials 0 and 1 as they ended, 2 and 3 pending
    assert seen is not None
    assert [(t.number, t.state, t.value) for t in seen] == [
        (0, "COMPLETED", 0.5), (1, "PRUNED", None), (2, "RUNNING", None), (3, "RUNNING", None)]
    assert as_of(done, 5, ahead=1) is None  # trial 3 has not ended: trial 5 waits
    assert as_of(done, 4, ahead=0) is None
    assert [t.number for t in as_of(done[:3], 3, ahead=0) or []] == [0, 1, 2]


def test_export_study_writes_the_run_store_as_an_optuna_database(
        study: Project, capsys: pytest.CaptureFixture[str]) -> None:
    """For optuna-dashboard: every trial as its FLAG file says, replaced whole each time."""
    import optuna

    from runner.cli.main import main
    from runner.config.compose import composer
    from runner.planning.sweep import expand
    from runner.storage.state import State, claim, finish
    from runner.storage.store import SweepStore
    from runner.study.source import StudySource

    with composer() as comp:
        plan = expand(comp, args("sweep.n_trials=4"))
    store, _ = SweepStore.create(plan, study.root / "outputs", "config", [])
    source = StudySource(store)
    refs = [source.propose() for _ in range(3)]
    for ref, state in ((refs[0], State.COMPLETED), (refs[1], State.CRASHED)):
        lease = claim(ref.paths, frozenset({State.UNHATCHED}))
        assert lease is not None
        finish(ref.paths, lease.token, state, {"summary": {"val/acc": 0.7}})
    (Path(refs[0].dir) / "pruning.jsonl").write_text(
        '{"step": 1, "value": 0.5, "prune": false, "attrs": {"completed_rung_0": 0.5}}\n')
    assert main(["export-study", str(store.root)]) == 0
    db = store.root / "optuna.db"
    assert f"3 trial(s) written to {db}" in capsys.readouterr().out

    def exported() -> list[tuple[Any, ...]]:
        (name,) = optuna.get_all_study_names(f"sqlite:///{db}")
        loaded = optuna.load_study(study_name=name, storage=f"sqlite:///{db}")
        assert loaded.direction == optuna.study.StudyDirection.MAXIMIZE
        return [(t.number, t.state.name, t.value, t.intermediate_values, t.params)
                for t in loaded.trials]

    params = [{k: v for k, v in r.values.items() if k != "trial"} for r in refs]
    assert exported() == [(0, "COMPLETE", 0.7, {1: 0.5}, params[0]),
                          (1, "FAIL", None, {}, params[1]), (2, "RUNNING", None, {}, params[2])]
    refs.append(source.propose())
    assert main(["export-study", str(store.root)]) == 0  # replaced, not appended to
    assert [row[:2] for row in exported()] == [(0, "COMPLETE"), (1, "FAIL"), (2, "RUNNING"),
                                               (3, "RUNNING")]
    assert sorted(p.name for p in store.root.iterdir() if "optuna" in p.name) == ["optuna.db"]
    capsys.readouterr()
    assert main(["export-study", str(study.root / "outputs")]) == 2
    assert "outputs is not a study (no study.json" in capsys.readouterr().err


def test_a_finished_study_is_extended_by_the_same_command_with_more_trials(
        study: Project) -> None:
    """sweep.n_trials says how far a study goes, not which study it is: the same command with
    a larger n_trials continues the same study (trials 4 and 5 proposed from what 0..3 taught),
    and a study an older version named with its n_trials hashed in is found and continued."""
    from runner.planning.sweep import fingerprint_overrides
    from runner.storage.store import SweepStore

    base = args("launcher.max_parallel=2")
    assert study.run(*base, "sweep.n_trials=4", timeout=300).returncode == 0
    sweep = study.sweep_dir()
    more = study.run(*base, "sweep.n_trials=6", timeout=300)
    assert more.returncode == 0, more.stderr
    assert "the study goes on to 6 trial(s)" in more.stderr
    assert "config changed" not in more.stderr and study.sweep_dir() == sweep
    assert [r["values"]["trial"] for r in trials(study)] == list(range(6))
    # a study frozen under the older name (n_trials hashed in) and fingerprint: continued there
    command = study.args(*base, "sweep.n_trials=8")[3:]  # (as runner sees them)
    legacy = sweep.with_name(f"study-optuna-{fingerprint_overrides(command, 'config', True)}")
    sweep.rename(legacy)
    SweepStore(legacy).set_fingerprint("an-older-fingerprint")
    old = study.run(*base, "sweep.n_trials=8", timeout=300)
    assert old.returncode == 0, old.stderr
    assert "the study goes on to 8 trial(s)" in old.stderr and "config changed" not in old.stderr
    assert [p.name for p in (study.root / "outputs").iterdir()
            if not p.name.startswith(".")] == [legacy.name]
    assert len(trials(study)) == 8
    resumed = study.cli("resume", str(legacy), "sweep.n_trials=9")
    assert resumed.returncode == 0, resumed.stderr
    assert "the study goes on to 9 trial(s)" in resumed.stderr and len(trials(study)) == 9
    # frozen under an older default of a setting its pruner (none) never uses: the same study
    frozen = json.loads((legacy / "study.json").read_text())
    assert frozen["settings"]["pruner"] == "none" and frozen["settings"]["min_resource"] == 3
    frozen["settings"]["min_resource"] = 1
    (legacy / "study.json").write_text(json.dumps(frozen))
    legacy.rename(sweep)  # (under today's name)
    SweepStore(sweep).set_fingerprint("its-fingerprint-then")
    older = study.run(*base, "sweep.n_trials=10", timeout=300)
    assert older.returncode == 0, older.stderr
    assert "the study goes on to 10 trial(s)" in older.stderr
    assert "config changed" not in older.stderr and len(trials(study)) == 10


def test_stopping_rules_end_proposals_and_say_which(study: Project) -> None:
    """sweep.target, sweep.patience and sweep.timeout stop proposing before n_trials, the end
    says which rule did, and a rule changed on a later launch applies (how far, not which)."""
    base = args("sweep.n_trials=40", "launcher.max_parallel=1", "sweep.sampler=random")
    hit = study.run(*base, "sweep.target=0.5", timeout=300)
    assert hit.returncode == 0, hit.stderr
    assert "the study stops proposing: sweep.target=0.5 reached by trial" in hit.stderr
    rows = trials(study)
    assert len(rows) < 40 and rows[-1]["summary"]["val/acc"] >= 0.5
    assert all(r["summary"]["val/acc"] < 0.5 for r in rows[:-1])
    patient = study.run(*base, "sweep.target=null", "sweep.patience=3", timeout=300)
    assert "sweep.patience=3: the last 3 completed trials found no better" in patient.stderr
    assert "config changed" not in patient.stderr and len(trials(study)) < 40
    values = [r["summary"]["val/acc"] for r in trials(study)]
    assert max(values[-3:]) <= max(values[:-3])
    timed = study.run(*base, "sweep.patience=null", "sweep.timeout=0", timeout=300)
    assert "sweep.timeout=0s spent running trials" in timed.stderr
    assert study.sweep_dir().name.startswith("study-optuna-")  # one study throughout


def test_sweep_timeout_counts_the_time_of_every_attempt_of_a_resumed_trial(
        tmp_path: Path) -> None:
    """sweep.timeout counts the seconds trials ran across launches: a trial interrupted and
    resumed counts both attempts (before, only the latest one: a study ran past its timeout by
    every interrupted attempt's time)."""
    from runner.planning.run_id import run_dirname, run_id
    from runner.planning.sweep import Plan, RunSpec
    from runner.results.show import attempts_of
    from runner.results.status import scan
    from runner.storage.state import State, claim, finish
    from runner.storage.store import SweepStore
    from runner.study.stopping import busy_seconds

    runs = [RunSpec(run_id({"trial": i}), run_dirname({"trial": i}), {"trial": i}, {})
            for i in range(2)]
    store, _ = SweepStore.create(Plan("s", "grid", runs, ["trial"], ["trial"], {}, [], "f"),
                                 tmp_path, "config", [])
    first, second = store.runs()
    for state in (State.INTERRUPTED, State.INTERRUPTED, State.COMPLETED):  # 3 attempts
        lease = claim(first.paths, frozenset({State.UNHATCHED, State.INTERRUPTED}))
        assert lease is not None
        time.sleep(0.05)
        finish(first.paths, lease.token, state, {"summary": {}})
        time.sleep(0.05)  # (time between launches: not counted)
    lease = claim(second.paths, frozenset({State.UNHATCHED}))
    assert lease is not None
    time.sleep(0.05)
    finish(second.paths, lease.token, State.COMPLETED, {"summary": {}})
    spans = [(a["start"], a["end"]) for ref in (first, second)
             for a in attempts_of(ref.paths) if a.get("start")]
    assert len(spans) == 4
    assert busy_seconds(scan(store), time.time()) == pytest.approx(
        sum(end - start for start, end in spans), abs=1e-6)


def test_enqueued_settings_are_the_first_trials(study: Project) -> None:
    """sweep.enqueue: the settings to try first are trials 0.., as given (keys left out
    sampled); a key the study does not search, or a value outside the space, is refused."""
    enqueue = "sweep.enqueue=[{task.lr: 0.01, task.width: 64}, {task.lr: 0.5}]"
    proc = study.run(*args("sweep.n_trials=4", "launcher.max_parallel=1", enqueue),
                     timeout=300)
    assert proc.returncode == 0, proc.stderr
    rows = trials(study)
    assert rows[0]["values"]["task.lr"] == 0.01 and rows[0]["values"]["task.width"] == 64
    assert rows[1]["values"]["task.lr"] == 0.5 and rows[1]["values"]["task.width"] in (16, 64,
                                                                                     256)
    for bad, said in (("[{task.depth: 3}]", "which the study does not search"),
                      ("[{task.lr: 5.0}]", "outside its space")):
        refused = study.run(*args("sweep.n_trials=4", f"sweep.enqueue={bad}",
                                  "runner.name=bad"))
        assert refused.returncode != 0 and said in refused.stderr, refused.stderr


@pytest.mark.parametrize("variant", ["grow", "patience"])
def test_kill_matrix_a_growing_or_stopping_study_loses_and_repeats_no_trial(
        study: Project, variant: str) -> None:
    """The runner SIGKILLed with a trial asked but not frozen, then: the same study given more
    trials (grow), or one with a stopping rule (patience); trials stay contiguous, none twice,
    and a rule that stops the study says so."""
    hooks = study.root / "killhooks"
    hooks.mkdir()
    (hooks / "sitecustomize.py").write_text(KILL_HOOKS)
    base = args("launcher.max_parallel=2", "sweep.sampler=tpe", "sweep.seed=0",
                "task.sleep=0.02", *(["sweep.patience=2"] if variant == "patience" else []))
    env = {**study.env(), "KILL_POINT": "asked", "KILL_ONCE": str(study.root / "killed"),
           "KILL_AFTER": "3"}
    env["PYTHONPATH"] = f"{hooks}{os.pathsep}{env['PYTHONPATH']}"
    first = subprocess.run(study.args(*base, "sweep.n_trials=5"), cwd=study.root, env=env,
                           text=True, capture_output=True, timeout=300, start_new_session=True)
    assert (study.root / "killed").exists(), first.stdout + first.stderr  # the kill happened
    n_trials = 7 if variant == "grow" else 12
    again = study.run(*base, f"sweep.n_trials={n_trials}", "runner.retry_crashed=true",
                      timeout=300)
    assert again.returncode == 0, again.stdout + again.stderr
    rows = trials(study)
    assert [r["values"]["trial"] for r in rows] == list(range(len(rows)))  # none lost
    assert len({r["id"] for r in rows}) == len(rows)  # none proposed twice
    assert {r["state"] for r in rows} == {"COMPLETED"}
    if variant == "grow":
        assert len(rows) == 7
    else:
        assert len(rows) == 12 or "sweep.patience=2" in again.stderr, again.stderr
