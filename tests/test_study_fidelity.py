"""What TPE learns from under ASHA (runner.study.fidelity, runner.study.sampler_study)."""

from __future__ import annotations

from runner.planning.sweep import Axis
from runner.study.config import StudyConf
from runner.study.fidelity import FINAL_RUNG, modelled_rung, rung_values, view
from runner.study.history import BELOW_RUNG, NOT_SEEN, Trial
from runner.study.sampler_study import SamplerStudy
from runner.study.space import distribution

ASHA = StudyConf(sampler="tpe", pruner="asha", min_resource=3, reduction_factor=3)


def curve(x: float, last: int) -> dict[int, float]:
    return {e: round(x * e / 100, 4) for e in range(1, last + 1)}


def test_rung_values_are_the_reports_the_pruner_judged() -> None:
    dense = Trial(0, {}, "PRUNED", intermediate=curve(1.0, 10))
    assert rung_values(dense, ASHA) == {3: 0.03, 9: 0.09}
    sparse = Trial(1, {}, "PRUNED", intermediate={2: 0.2, 4: 0.4, 8: 0.8, 10: 1.0})
    assert rung_values(sparse, ASHA) == {3: 0.4, 9: 1.0}  # the first report at or past a rung
    diverged = Trial(3, {}, "PRUNED", intermediate={**curve(1.0, 10), 9: float("nan")})
    assert rung_values(diverged, ASHA) == {3: 0.03}  # (optuna refuses a NaN value)
    done = Trial(2, {}, "COMPLETED", value=0.7, intermediate=curve(1.0, 30))
    assert rung_values(done, ASHA) == {3: 0.03, 9: 0.09, 27: 0.27, FINAL_RUNG: 0.7}
    capped = StudyConf(sampler="tpe", pruner="hyperband", min_resource=3, max_resource=9)
    assert rung_values(done, capped) == {3: 0.03, FINAL_RUNG: 0.7}  # 9 is the full length
    assert modelled_rung([{3: 1.0}, {3: 1.0, 9: 1.0}, {3: 1.0, 9: 1.0}], 2) == 9
    assert modelled_rung([{3: 1.0}, {3: 1.0, 9: 1.0}], 3) is None


def trials() -> list[Trial]:
    """Ten trials stopped at epoch 3, four of them went on to 9, two of those completed at 30
    (value 0.5, 0.6); one is still running."""
    out = []
    for i in range(10):
        last = 30 if i < 2 else 9 if i < 4 else 3
        state = "COMPLETED" if last == 30 else "PRUNED"
        out.append(Trial(i, {"x": i}, state, value=0.5 + i / 10 if last == 30 else None,
                         intermediate=curve(10 - i, last)))
    out.append(Trial(10, {"x": 10}, "RUNNING", intermediate=curve(1.0, 5)))
    return out


def test_the_sampler_models_the_highest_rung_enough_trials_reached() -> None:
    seen, rung = view(trials(), ASHA, n_params=1)  # needs 1 + 3 trials: rung 9 has 4
    assert rung == 9
    # trials pruned at the first rung, worse there than every trial that reached the rung:
    # pending for good (TPE's constant liar counts them among the bad ones; BOHB leaves them out)
    assert [(t.state, t.value) for t in seen] == [
        ("COMPLETED", 0.9), ("COMPLETED", 0.81), ("COMPLETED", 0.72), ("COMPLETED", 0.63),
        *[(BELOW_RUNG, None)] * 6, ("RUNNING", None)]
    assert all(not t.intermediate for t in seen)  # so TPE cannot rank them as pruned trials
    # stopped at the first rung but no worse there than a trial that went on to the modelled
    # rung (0.21 at epoch 3): it says little against its region, so it is left out
    close = [*trials()[:10], Trial(10, {"x": 10}, "PRUNED", intermediate=curve(7.5, 3))]
    assert view(close, ASHA, n_params=1)[0][10].state == NOT_SEEN
    worse = [*trials()[:10], Trial(10, {"x": 10}, "PRUNED", intermediate=curve(6.9, 3))]
    assert view(worse, ASHA, n_params=1)[0][10].state == BELOW_RUNG
    lower = [Trial(t.number, t.params, t.state, None if t.value is None else -t.value,
                   intermediate={k: -v for k, v in t.intermediate.items()}) for t in worse]
    assert view(lower, ASHA, n_params=1, direction="min")[0][10].state == BELOW_RUNG
    crashed = [*trials()[:4], Trial(4, {"x": 4}, "CRASHED", intermediate=curve(6, 3))]
    assert view(crashed, ASHA, n_params=1)[0][4].state == NOT_SEEN  # a crash says nothing
    needs_5 = StudyConf(**{**ASHA.__dict__, "rung_min_trials": 5})
    seen, rung = view(trials(), needs_5, n_params=1)
    assert rung == 3 and [t.value for t in seen[:3]] == [0.3, 0.27, 0.24]
    needs_2 = StudyConf(**{**ASHA.__dict__, "rung_min_trials": 2})
    seen, rung = view(trials(), needs_2, n_params=1)
    assert rung == FINAL_RUNG and [t.value for t in seen[:2]] == [0.5, 0.6]
    # pruned at 9 (past the first rung): no final value, and not among the bad ones either
    assert [t.state for t in seen[2:4]] == [NOT_SEEN] * 2
    assert [t.state for t in seen[4:10]] == [BELOW_RUNG] * 6  # pruned at the first rung
    for own in (StudyConf(**{**ASHA.__dict__, "learn_from": "all"}),
                StudyConf(**{**ASHA.__dict__, "sampler": "random"}),
                StudyConf(sampler="tpe", pruner="median")):
        seen, rung = view(trials(), own, n_params=1)
        assert rung is None and seen == trials()  # optuna's own view
    assert view(trials()[:3], ASHA, n_params=1) == (trials()[:3], None)  # nothing has 4


def test_the_sampler_study_follows_the_trials_and_rebuilds_when_the_rung_moves() -> None:
    from optuna.trial import TrialState

    dists = {"x": distribution(Axis("x", "", list(range(40))))}
    store = trials()
    needs_3 = StudyConf(**{**ASHA.__dict__, "rung_min_trials": 3})
    sampling = SamplerStudy(needs_3, dists, "max", "t")
    reads: list[dict[int, str]] = []

    def load(known: dict[int, str]) -> list[Trial]:
        reads.append(dict(known))
        return [Trial(t.number, t.params, t.state) if known.get(t.number) == t.end else t
                for t in store]  # an ended trial already read comes without its reports

    def states() -> list[tuple[TrialState, float | None]]:
        return [(t.state, t.value) for t in sampling.sync(load, len(store)).get_trials()]

    first = states()
    assert first[:4] == [(TrialState.COMPLETE, v) for v in (0.9, 0.81, 0.72, 0.63)]
    assert first[4:] == [(TrialState.RUNNING, None)] * 7  # below the rung, running
    study = sampling.optuna
    asked = study.ask(dists)
    sampling.asked(asked.number)
    store.append(Trial(11, asked.params, "UNHATCHED"))
    store[10] = Trial(10, {"x": 10}, "PRUNED", intermediate=curve(8.0, 9))  # reached 9 too
    assert states()[10] == (TrialState.COMPLETE, 0.72)
    assert sampling.optuna is study  # updated, not rebuilt
    assert reads[-1] == {i: t.end for i, t in enumerate(trials()[:10])}  # read once
    # the asked trial ran to the end: three final values now, so the sampler models them
    store[11] = Trial(11, asked.params, "COMPLETED", value=0.99, intermediate=curve(8, 30))
    now = states()
    assert sampling.optuna is not study  # rebuilt: every value is another rung's
    assert now[:2] == [(TrialState.COMPLETE, 0.5), (TrialState.COMPLETE, 0.6)]
    # pruned at 9 (trials 2, 3, 10): left out; pruned at the first rung: pending for good
    assert now[2:4] == [(TrialState.FAIL, None)] * 2 and now[10] == (TrialState.FAIL, None)
    assert now[4:10] == [(TrialState.RUNNING, None)] * 6
    assert now[11] == (TrialState.COMPLETE, 0.99)
    hyperband = SamplerStudy(StudyConf(**{**needs_3.__dict__, "pruner": "hyperband",
                                          "max_resource": 81}), dists, "max", "t")
    assert len(hyperband.sync(load, len(store)).get_trials()) == 12
    assert type(hyperband.optuna.pruner).__name__ == "NopPruner"  # no bracket filter: BOHB's
    rerun = sampling.optuna
    store[2] = Trial(2, {"x": 2}, "RUNNING")  # rerun: a finished trial runs again
    assert states()[2] == (TrialState.RUNNING, None) and sampling.optuna is not rerun


def test_a_third_of_the_trials_are_random_and_all_while_no_rung_is_modelled() -> None:
    from optuna.samplers import RandomSampler, TPESampler

    from runner.config.schema import validate
    from runner.errors import ConfigError
    from runner.study.sampler_study import sampler_for

    def randoms(conf: StudyConf, rung: float | None) -> int:
        return sum(isinstance(sampler_for(conf, n, rung), RandomSampler) for n in range(600))

    assert 170 <= randoms(ASHA, 9) <= 230  # BOHB's third
    assert randoms(ASHA, None) == 600  # nothing modelled yet: random, as BOHB
    assert [isinstance(sampler_for(ASHA, n, 9), TPESampler) for n in range(50)] == [
        isinstance(sampler_for(ASHA, n, 9), TPESampler) for n in range(50)]  # by the seed
    own = StudyConf(sampler="tpe", pruner="asha", learn_from="all")
    assert randoms(own, None) == 0 and randoms(StudyConf(sampler="tpe"), None) == 0
    assert randoms(StudyConf(sampler="tpe", random_fraction=0.5), None) in range(260, 341)
    try:
        validate({"random_fraction": 1.5}, StudyConf, "sweep")
    except ConfigError as exc:
        assert str(exc) == "sweep.random_fraction=1.5 must be <= 1"
    else:
        raise AssertionError("accepted")


def test_the_sampler_learns_where_the_pruner_said_no() -> None:
    """The toy study of benchmarks/bench_pruned_regions.py: with ASHA from the first epoch,
    TPE learning from rungs proposes lr < 1e-3 (stopped at the first rung) less often than
    random search does in trials 10-29 (it proposed more, 10 against 7.2 over 10 seeds, when a
    trial pruned below the modelled rung was left out; 62 against 43 over these 6 seeds)."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from bench_pruned_regions import low_share, study

    seeds = range(6)
    tpe = [low_share(study("tpe+asha", seed)) for seed in seeds]
    rand = [low_share(study("random+asha", seed)) for seed in seeds]
    assert sum(tpe) < sum(rand), (tpe, rand)


def test_the_sampler_study_is_what_a_fresh_one_would_be_when_the_bad_ones_change() -> None:
    """Which stopped trials count as bad depends on the trials that went on: when one goes on
    from a worse first rung, the trials stopped there are no longer clearly bad, and the study
    held across proposals shows them as a study built afresh (a resumed runner) does."""
    from optuna.trial import TrialState

    dists = {"x": distribution(Axis("x", "", list(range(40))))}
    needs_3 = StudyConf(**{**ASHA.__dict__, "rung_min_trials": 3})
    store = trials()

    def states(sampling: SamplerStudy) -> list[tuple[TrialState, float | None]]:
        return [(t.state, t.value) for t in sampling.sync(lambda _: store, 12).get_trials()]

    held = SamplerStudy(needs_3, dists, "max", "t")
    assert states(held)[4:10] == [(TrialState.RUNNING, None)] * 6  # worse than 0.21 at 3
    store.append(Trial(11, {"x": 11}, "PRUNED", intermediate=curve(0.5, 9)))  # 0.015 at 3
    now = states(held)
    assert now[4:10] == [(TrialState.FAIL, None)] * 6  # no longer below every one that went on
    assert now == states(SamplerStudy(needs_3, dists, "max", "t"))


def test_a_kept_sampler_study_proposes_what_a_fresh_one_does() -> None:
    """One SamplerStudy asked trial after trial (it hands the search space the trials share on
    from sampler to sampler) proposes exactly what a fresh one, built from the same trials,
    proposes for each: with warm-start trials of a smaller space before the study's own (the
    shared space is not the whole one), trials still running, and a retried trial (the study
    is rebuilt: nothing is handed on from the old one)."""
    from optuna.distributions import FloatDistribution, IntDistribution

    dists = {"x": FloatDistribution(-3.0, 3.0), "y": IntDistribution(0, 9)}
    warm = [Trial(i - 6, {"x": (i * 0.37) % 6 - 3}, "COMPLETED",
                  value=-((i * 0.37) % 6 - 3) ** 2) for i in range(6)]  # (numbered -6..-1)
    conf = StudyConf(sampler="tpe", startup_trials=4, seed=3)
    kept = SamplerStudy(conf, dists, "max", "s", warm)
    ended: list[Trial] = []
    asked: list[Trial] = []
    proposals = []
    for number in range(24):
        if number == 15:  # trial 5 is retried: running again, then ended again
            ended[5] = Trial(5, ended[5].params, "RUNNING")
        if number == 17:
            ended[5] = Trial(5, ended[5].params, "COMPLETED", value=1.0)
        now = sorted([*ended, *asked], key=lambda t: t.number)
        mine = kept.sync(lambda known, now=now: list(now), number).ask(dists).params
        fresh = SamplerStudy(conf, dists, "max", "s", warm).sync(
            lambda known, now=now: list(now), number).ask(dists).params
        assert mine == fresh, number
        kept.asked(number)
        proposals.append(mine)
        asked.append(Trial(number, mine, "RUNNING"))
        if len(asked) > 2:  # a trial ends two proposals after it was asked
            done = asked.pop(0)
            value = -(done.params["x"] - 1) ** 2 - done.params["y"]
            ended.append(Trial(done.number, done.params, "COMPLETED", value=value))
    assert len({(p["x"], p["y"]) for p in proposals}) == 24
