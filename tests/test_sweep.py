"""Sweep expansion: grid, random, list, seeds, filter, subset, identity."""

from __future__ import annotations

import math

import pytest

from runner.config.compose import composer
from runner.errors import SweepError
from runner.planning.run_id import run_id
from runner.planning.sweep import Plan, expand


def plan(*overrides: str) -> Plan:
    with composer() as comp:
        return expand(comp, ["task=toy", *overrides])


TOY_AXES = """
grid:
  task.lr: 0.002,0.0005
  seed: 0,1
random:
  task.lr: tag(log, interval(1e-4, 1e-2))
  task.channels: choice(8, 16, 32)
list:
  - {task.lr: 0.002, task.channels: 16}
  - {task.lr: 0.0005, task.channels: 32}
"""


@pytest.fixture
def toy_axes(project):
    """The toy task with default axes of its own, as conf/task/mnist.yaml has."""
    (project.root / "conf" / "axes").mkdir()
    (project.root / "conf" / "axes" / "toy.yaml").write_text(TOY_AXES)
    task = project.root / "conf" / "task" / "toy.yaml"
    task.write_text("defaults:\n  - /axes@_global_.axes: toy\n  - _self_\n" + task.read_text())
    return project


def test_a_tasks_default_axes_stay_with_it(project):
    """The built-in grid adds no axes of its own: a task without default axes sweeps only what
    is given; MNIST's own grid stays what `python -m runner +sweep=grid` runs."""
    p = plan("+sweep=grid", "+task.width=64,128")
    assert values(p) == [{"task.width": 64}, {"task.width": 128}]
    with composer() as comp:
        mnist = expand(comp, ["+sweep=grid"])
    assert values(mnist) == [{"task.lr": lr, "seed": s} for lr in (0.002, 0.0005) for s in (0, 1)]


def values(p: Plan) -> list[dict]:
    return [r.values for r in p.runs]


def test_single_run_without_sweep(project):
    p = plan()
    assert p.kind == "single" and len(p.runs) == 1
    assert p.runs[0].values == {} and p.runs[0].config["task"]["lr"] == 0.1


def test_grid_is_cartesian_product_in_axis_order(project):
    p = plan("+sweep=grid", "task.lr=0.1,0.01", "seed=1,2,3")
    assert values(p) == [{"task.lr": lr, "seed": s} for lr in (0.1, 0.01) for s in (1, 2, 3)]
    assert [r.config["seed"] for r in p.runs] == [1, 2, 3, 1, 2, 3]
    assert [r.config["task"]["lr"] for r in p.runs] == [0.1] * 3 + [0.01] * 3
    assert p.varying == ["task.lr", "seed"]
    # the runner's own sections are never part of a run's frozen config
    assert set(p.runs[0].config) == {"task", "seed"}


def test_grid_uses_config_params_and_range(toy_axes):
    p = plan("+sweep=grid", "seed=range(5)")
    assert len(p.runs) == 2 * 5  # the task's default grid has two learning rates
    assert sorted({v["seed"] for v in values(p)}) == [0, 1, 2, 3, 4]


def test_plain_override_fixes_a_config_axis(toy_axes):
    p = plan("+sweep=grid", "seed=7")
    assert {v.get("seed") for v in values(p)} == {None}
    assert {r.config["seed"] for r in p.runs} == {7}
    assert len(p.runs) == 2


def test_new_key_with_plus_and_implicit_grid(project):
    p = plan("+task.depth=64,128")
    assert p.kind == "grid"
    assert [r.config["task"]["depth"] for r in p.runs] == [64, 128]


def test_seeds_axis_gives_every_setting_k_seeds(project):
    p = plan("+sweep=grid", "sweep.seeds=3", "task.lr=0.1,0.2")
    assert values(p) == [{"task.lr": lr, "seed": s} for lr in (0.1, 0.2) for s in range(3)]


def test_seeds_and_seed_axis_on_command_line_conflict(project):
    with pytest.raises(SweepError, match="both sweep.seeds=3 and a 'seed' axis"):
        plan("+sweep=grid", "sweep.seeds=3", "seed=1,2")


def test_random_search_is_reproducible_and_in_range(project):
    args = ("+sweep=random", "sweep.num_samples=30",
            "task.lr=tag(log,interval(1e-4,1e-1))", "+task.depth=int(interval(4,9))",
            "+task.act=choice(relu,gelu)")
    a, b = plan(*args), plan(*args)
    assert values(a) == values(b) and len(a.runs) == 30
    lrs = [v["task.lr"] for v in values(a)]
    assert all(1e-4 <= lr <= 1e-1 for lr in lrs)
    # log-uniform: about half of the draws below the geometric midpoint 3.16e-3
    below = sum(lr < math.sqrt(1e-4 * 1e-1) for lr in lrs)
    assert 7 <= below <= 23
    widths = {v["task.depth"] for v in values(a)}
    assert widths <= set(range(4, 10)) and all(isinstance(w, int) for w in widths)
    assert {v["task.act"] for v in values(a)} == {"relu", "gelu"}
    c = plan(*args, "sweep.seed=1")
    assert values(c) != values(a)


def test_random_with_seeds_crosses_every_sample(toy_axes):
    p = plan("+sweep=random", "sweep.num_samples=4", "sweep.seeds=2")
    assert len(p.runs) == 8
    assert [v["seed"] for v in values(p)] == [0, 1] * 4
    assert values(p)[0]["task.lr"] == values(p)[1]["task.lr"]


def test_random_duplicate_draws_are_dropped_with_a_note(project):
    p = plan("+sweep=random", "sweep.num_samples=20", "~sweep.params", "+task.k=choice(1,2)")
    assert sorted(v["task.k"] for v in values(p)) == [1, 2]
    assert any("duplicate random draw" in n for n in p.notes)


def test_list_sweep_with_seeds(toy_axes):
    p = plan("+sweep=list")
    assert values(p) == [
        {"task.lr": 0.002, "task.channels": 16, "seed": 0},
        {"task.lr": 0.002, "task.channels": 16, "seed": 1},
        {"task.lr": 0.0005, "task.channels": 32, "seed": 0},
        {"task.lr": 0.0005, "task.channels": 32, "seed": 1},
    ]


def test_list_sweep_settings(project):
    (project.root / "conf" / "sweep").mkdir()
    (project.root / "conf" / "sweep" / "mylist.yaml").write_text(
        "kind: list\nruns:\n  - {task.lr: 0.5, task.steps: 1}\n  - {task.lr: 0.25, task.steps: 2}\n"
        "seeds: 2\n")
    p = plan("+sweep=mylist")
    assert values(p) == [{"task.lr": 0.5, "task.steps": 1, "seed": 0},
                         {"task.lr": 0.5, "task.steps": 1, "seed": 1},
                         {"task.lr": 0.25, "task.steps": 2, "seed": 0},
                         {"task.lr": 0.25, "task.steps": 2, "seed": 1}]
    assert [r.config["task"]["steps"] for r in p.runs] == [1, 1, 2, 2]


def test_filter_expression_over_values_and_config(project):
    p = plan("+sweep=grid", "task.lr=0.1,0.01,0.001", "seed=0,1",
             "sweep.filter='task.lr < 0.05 and seed == 1 and task.mode == \"ok\"'")
    assert values(p) == [{"task.lr": 0.01, "seed": 1}, {"task.lr": 0.001, "seed": 1}]
    assert any("kept 2 of 6" in n for n in p.notes)


def test_filter_predicate_importable(project):
    (project.root / "pred.py").write_text("def keep(v):\n    return v['seed'] % 2 == 0\n")
    p = plan("+sweep=grid", "seed=range(6)", "task.lr=0.1", "sweep.filter=pred:keep")
    assert [v["seed"] for v in values(p)] == [0, 2, 4]


@pytest.mark.parametrize("expr, message", [
    ("__import__('os').system('true')", "only abs, min"),
    ("task.lr.__class__", "private attribute"),
    ("task.nope > 1", "unknown key 'nope'"),
    ("lambda: 1", "Lambda is not allowed"),
    ("task.lr <", "not a valid expression"),
])
def test_filter_rejects_unsafe_or_broken_expressions(project, expr, message):
    with pytest.raises(SweepError, match=message):
        plan("+sweep=grid", f"sweep.filter='{expr}'" if "'" not in expr else
             f'sweep.filter="{expr}"')


def test_subset_is_reproducible_and_keeps_order(project):
    a = plan("+sweep=grid", "seed=range(20)", "task.lr=0.1", "sweep.subset=5")
    b = plan("+sweep=grid", "seed=range(20)", "task.lr=0.1", "sweep.subset=5")
    seeds = [v["seed"] for v in values(a)]
    assert seeds == [v["seed"] for v in values(b)] and len(seeds) == 5
    assert seeds == sorted(seeds)
    c = plan("+sweep=grid", "seed=range(20)", "task.lr=0.1", "sweep.subset=5",
             "sweep.subset_seed=3")
    assert [v["seed"] for v in values(c)] != seeds


def test_run_identity_depends_only_on_values(project):
    a = plan("+sweep=grid", "task.lr=0.1,0.01", "seed=1,2")
    b = plan("+sweep=grid", "seed=1,2", "task.lr=0.1,0.01")
    assert {r.id for r in a.runs} == {r.id for r in b.runs}
    assert run_id({"a": 1, "b": 2}) == run_id({"b": 2, "a": 1})
    # the sweep name, hence its directory, does not depend on the order of the overrides
    assert a.name == b.name and a.name.startswith("toy-grid-")
    assert all(r.dirname.endswith(r.id) for r in a.runs)


def test_duplicate_runs_are_refused(project):
    with pytest.raises(SweepError, match="same run twice"):
        plan("+sweep=grid", "seed=1,1")


def test_interval_needs_random(project):
    with pytest.raises(SweepError, match="intervals need \\+sweep=random"):
        plan("+sweep=grid", "task.lr=interval(0,1)")


def test_sweeping_launcher_settings_is_refused(project):
    with pytest.raises(SweepError, match="cannot sweep over 'launcher.max_parallel'"):
        plan("launcher.max_parallel=1,2")


def test_interpolations_resolve_per_run(project):
    (project.root / "conf" / "task" / "interp.yaml").write_text(
        "name: interp\nfn: toy:main\nlr: 0.1\nwarmup_lr: ${task.lr}\n")
    with composer() as comp:
        p = expand(comp, ["task=interp", "task.lr=0.5,0.25"])
    assert [r.config["task"]["warmup_lr"] for r in p.runs] == [0.5, 0.25]


def test_ten_thousand_run_grid_expands(project):
    p = plan("task.lr=range(100)", "seed=range(100)")
    assert len(p.runs) == 10_000 and len({r.id for r in p.runs}) == 10_000


def test_any_importable_function_with_new_keys_on_the_default_task(project):
    """The README's `task.fn=my_pkg.train:main +task.width=64,128 +sweep=grid`."""
    with composer() as comp:
        p = expand(comp, ["task.fn=toy:main", "+task.width=64,128", "+sweep=grid"])
    assert len(p.runs) == 2 * 2 * 2  # the grid's 2 lr x 2 seeds, times the new axis
    assert {r.config["task"]["fn"] for r in p.runs} == {"toy:main"}
    assert sorted({r.config["task"]["width"] for r in p.runs}) == [64, 128]


@pytest.mark.parametrize("expr, expected", [
    ("task.lr < 0.05 and seed in (0, 1)", True),
    ("0 < task.lr < 0.005", False),
    ("task.lr * 10 ** 2 == 1 or seed", True),
    ("not (seed == 1) if task.name == 'toy' else False", True),
    ("len(task.name[1:]) == 2 and max(seed, 3) == 3", True),
    ("round(abs(-task.lr), 2) == 0.01 and int('7') + float('0.5') == 7.5", True),
    ("str(seed) + 'x' == '0x' and [1, 2][seed] == 1", True),
    ("task.missing_ok is None", True),
])
def test_filter_expressions_evaluate_like_python(expr, expected):
    from runner.planning.filters import compile_filter

    keep = compile_filter(expr)
    config = {"task": {"lr": 0.01, "name": "toy", "missing_ok": None}, "seed": 0}
    assert keep({}, config) is bool(expected)
    assert keep({}, config) == bool(eval(expr, {}, {"task": _Obj(config["task"]), "seed": 0}))


class _Obj:
    def __init__(self, d):
        self.__dict__.update(d)


@pytest.mark.parametrize("expr, message", [
    ("9**9**9 > 0", "integer above 4096 bits"),
    ("'a' * 10**10 == ''", "sequence of more than 10000 items"),
    ("[0] * 5000 + [0] * 5001 == []", "sequence of more than 10000 items"),
    ("'%s' % seed == '0'", "'%' formatting of strings is not allowed"),
    ("2**4000 * 2**4000 > 0", "integer above 4096 bits"),
    ("task.lr.real > 0", "only config keys have attributes"),
    ("int(task.name) > 0", "failed on run .* with ValueError"),
])
def test_filter_cost_is_bounded_and_errors_quote_no_value(expr, message):
    from runner.planning.filters import compile_filter

    with pytest.raises(SweepError, match=message) as info:
        compile_filter(expr)({"seed": 0}, {"task": {"lr": 0.5, "name": "SECRETISH"}, "seed": 0})
    assert "SECRETISH" not in str(info.value)


def test_sweep_params_can_be_given_whole_on_the_command_line(project) -> None:
    """``sweep.params={...}`` replaces the sweep file's params (Hydra would refuse every new
    key of the struct mapping); the ~/+ spelling works too."""
    for args in (["sweep.params={task.lr: '0.1,0.01', seed: '1,2'}"],
                 ["~sweep.params", "+sweep.params={task.lr: '0.1,0.01', seed: '1,2'}"]):
        proc = project.run("+sweep=grid", *args, "runner.dry_run=true", check=True)
        assert "4 runs" in proc.stdout, proc.stdout + proc.stderr


@pytest.mark.parametrize("args, said", [
    (["+sweep=list", "sweep.runs=[{task.lr: 0.1}]", "seed=5"],
     "both sweep.seeds=2 (K seeds for every setting, the list sweep's default) and seed=..."),
    (["+sweep=grid", "sweep.seeds=2", "seed=5"], "both sweep.seeds=2"),
    (["+sweep=list", "sweep.runs=[{seed: 1}]", "sweep.seeds=null", "seed=4"],
     "seed=... on the command line and sweep.runs[0] sets seed too"),
    (["+sweep=list", "sweep.runs=[{seed: 1}]"], "sweep.runs[0] sets seed and so does "
                                                 "sweep.seeds"),
    (["+sweep=random"], "+sweep=random has nothing to draw from"),
    (["lr=0.1"], "did you mean task.lr=0.1?"),
])
def test_a_setting_is_never_replaced_or_ignored_unseen(project, args, said) -> None:
    proc = project.run(*args, "runner.dry_run=true")
    assert proc.returncode != 0 and said in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_task_config_without_fn_is_named(project) -> None:
    (project.root / "conf" / "task" / "nofn.yaml").write_text("name: nofn\nlr: 0.1\n")
    proc = project.cli("task=nofn", "runner.output_dir=outputs")
    assert proc.returncode != 0 and "conf/task/nofn.yaml has no fn" in proc.stderr, proc.stderr


def test_adding_runs_updates_axes_as_a_full_recount_would() -> None:
    """A study adds one trial at a time: the manifest's axes and varying keys are updated from
    the new run alone and always equal a recount over every run (absent keys differ)."""
    import random

    from runner.planning.sweep import axes_after, axes_of

    rng = random.Random(0)
    for _ in range(300):
        runs = [{k: rng.choice([1, 2, "1", [1], None]) for k in rng.sample("abcde",
                                                                          rng.randint(0, 4))}
                for _ in range(rng.randint(1, 8))]
        split = rng.randint(0, len(runs))
        axes, varying = axes_of(runs[:split])
        first = runs[0] if split else None
        for step in range(split, len(runs), 2):
            axes, varying = axes_after(axes, varying, first, runs[step:step + 2])
            first = runs[0]
        assert (axes, varying) == axes_of(runs), runs
