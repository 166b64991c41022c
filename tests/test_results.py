"""report / compare / retrain-best on real sweeps of a task with known metrics."""

from __future__ import annotations

import csv
import io
import json
import math
import statistics

import numpy as np
import pytest
from scipy import stats as scipy_stats

from conftest import colours_in, png_size
from runner.results.aggregate import Group, RunResult, t975, t_interval
from runner.results.plots import aligned, colours

RESULTS_TASK = '''
import runner

def main(cfg):
    lr, seed = float(cfg.task.lr), int(cfg.seed)
    if lr == 0.3 and seed == 2:
        raise RuntimeError("this one crashes")
    every = seed + 2                      # seeds log at different steps
    for step in range(0, 21, every):
        runner.log({"acc": (lr + 0.01 * seed) * step / 20, "loss": 1.0 - lr}, step=step)
    runner.log({"acc": lr + 0.01 * seed}, step=20)
    return {"acc": lr + 0.01 * seed}
'''


@pytest.fixture
def results_project(project):
    (project.root / "results_task.py").write_text(RESULTS_TASK)
    proc = project.run("task.fn=results_task:main", "task.lr=0.1,0.2,0.3", "seed=0,1,2")
    assert proc.returncode == 1  # one run crashed on purpose
    return project


def test_report_aggregates_match_independent_computation(results_project):
    project = results_project
    sweep = project.sweep_dir()
    proc = project.cli("report", str(sweep), "--metric", "acc", "--mode", "max")
    assert proc.returncode == 0, proc.stderr
    assert "best: task.lr=0.3" in proc.stderr
    groups = list(csv.DictReader(io.StringIO(
        (sweep / "report" / "acc" / "groups.csv").read_text())))
    assert [g["group"] for g in groups] == ["task.lr=0.3", "task.lr=0.2", "task.lr=0.1"]
    for g in groups:
        lr = float(g["group"].split("=")[1])
        seeds = [0, 1] if lr == 0.3 else [0, 1, 2]
        finals = [lr + 0.01 * s for s in seeds]
        assert int(g["n"]) == len(seeds) and int(g["runs"]) == 3
        assert int(g["crashed"]) == (1 if lr == 0.3 else 0) and int(g["missing"]) == 0
        assert float(g["mean"]) == pytest.approx(statistics.mean(finals))
        assert float(g["std"]) == pytest.approx(statistics.stdev(finals))
        assert float(g["median"]) == pytest.approx(statistics.median(finals))
        # Student's t interval, against scipy
        lo, hi = scipy_stats.t.interval(0.95, len(finals) - 1, loc=statistics.mean(finals),
                                        scale=statistics.stdev(finals) / len(finals) ** 0.5)
        assert float(g["ci_low"]) == pytest.approx(lo) and float(g["ci_high"]) == pytest.approx(hi)
        assert float(g["ci_low"]) <= float(g["mean"]) <= float(g["ci_high"])
    md = (sweep / "report" / "acc" / "report.md").read_text()
    assert "Best setting by acc: **task.lr=0.3**" in md and "![acc over steps](curves.png)" in md
    rows = list(csv.DictReader(io.StringIO((sweep / "report" / "acc" / "runs.csv").read_text())))
    assert len(rows) == 9
    crashed = [r for r in rows if r["state"] == "CRASHED"]
    assert len(crashed) == 1 and crashed[0]["acc"] == "" and crashed[0]["seed"] == "2"


def test_report_figures_are_valid_pngs_with_one_curve_per_group(results_project):
    project = results_project
    sweep = project.sweep_dir()
    assert project.cli("report", str(sweep), "--metric", "acc", "--svg", "--pdf"
                       ).returncode == 0
    out = sweep / "report" / "acc"
    assert png_size(out / "curves.png") == (1600, 1000)  # 200 dpi
    assert png_size(out / "finals.png")[1] == 1000
    assert (out / "curves.svg").read_text().lstrip().startswith("<?xml")
    assert (out / "finals.pdf").read_bytes().startswith(b"%PDF")
    assert not (out / "params.png").exists()  # a grid: its settings are the table's rows
    palette = colours(10)[:6]
    assert colours_in(out / "curves.png", palette) == [0, 1, 2]  # three groups, three curves


def test_min_mode_and_other_reductions(results_project):
    project = results_project
    sweep = project.sweep_dir()
    proc = project.cli("report", str(sweep), "--metric", "acc", "--mode", "min",
                       "--reduce", "best")
    assert proc.returncode == 0 and "best: task.lr=0.1" in proc.stderr
    proc = project.cli("report", str(sweep), "--metric", "acc", "--reduce", "last:2")
    groups = list(csv.DictReader(io.StringIO(
        (sweep / "report" / "acc" / "groups.csv").read_text())))
    # seed 0 logs steps ...16, 18, 20: the last two values of lr=0.1 are 0.09 and 0.1
    lr01 = next(g for g in groups if g["group"] == "task.lr=0.1")
    seed0 = (0.1 * 18 / 20 + 0.1) / 2
    seed1 = (0.11 * 18 / 20 + 0.11) / 2  # seed 1 logs every 3 steps: 0, 3, ..., 18, then 20
    seed2 = (0.12 * 16 / 20 + 0.12) / 2  # seed 2 logs every 4 steps: ..., 16, then 20
    assert float(lr01["mean"]) == pytest.approx((seed0 + seed1 + seed2) / 3)
    bad = project.cli("report", str(sweep), "--metric", "accuracy")
    assert bad.returncode == 2 and "no run" in bad.stderr and "acc" in bad.stderr


def test_learning_curves_align_seeds_logged_at_different_steps():
    a = RunResult("a", "", "COMPLETED", {}, {}, np.array([0.0, 2.0, 4.0]),
                  np.array([0.0, 2.0, 4.0]), 4.0)
    b = RunResult("b", "", "COMPLETED", {}, {}, np.array([0.0, 3.0]), np.array([10.0, 13.0]), 13.0)
    steps, mean, half = aligned(Group((), [a, b]))
    assert list(steps) == [0, 2, 3, 4]
    assert mean[0] == pytest.approx(5.0)             # (0 + 10) / 2
    assert mean[1] == pytest.approx((2.0 + 12.0) / 2)  # b interpolated at step 2
    assert mean[3] == pytest.approx(4.0)             # step 4 is past b's last step: a alone
    assert half[3] == 0 and half[0] > 0


@pytest.mark.parametrize("values", [[0.5], [0.1, 0.3], [0.1, 0.2, 0.25, 0.4, 0.7],
                                    list(np.linspace(0, 1, 12)), list(np.linspace(0, 1, 40))])
def test_the_interval_is_students_t_and_na_below_two_values(values):
    lo, hi = t_interval(np.array(values))
    if len(values) < 2:
        assert math.isnan(lo) and math.isnan(hi)  # no zero-width interval for one run
        group = Group((("a", 1),), [RunResult("r", "", "COMPLETED", {}, {}, np.array([]),
                                              np.array([]), values[0])])
        assert math.isnan(group.stats()["std"])
        return
    want = scipy_stats.t.interval(0.95, len(values) - 1, loc=np.mean(values),
                                  scale=np.std(values, ddof=1) / len(values) ** 0.5)
    assert (lo, hi) == pytest.approx(want, rel=1e-5)
    assert t975(len(values) - 1) == pytest.approx(scipy_stats.t.ppf(0.975, len(values) - 1),
                                                  rel=1e-5)
    # for two values this is wider than their range (the bootstrap gave the min and max)
    if len(values) == 2:
        assert lo < min(values) and hi > max(values)


def test_retrain_best_runs_new_seeds_of_the_best_setting_and_resumes(results_project):
    project = results_project
    parent = project.sweep_dir()
    proc = project.cli("retrain-best", str(parent), "--metric", "acc", "--seeds", "2")
    assert proc.returncode == 0, proc.stderr
    child = next(d for d in (project.root / "outputs").iterdir() if "retrain" in d.name)
    manifest = json.loads((child / "sweep.json").read_text())
    assert manifest["parent"]["setting"] == {"task.lr": 0.3}
    assert manifest["parent"]["sweep_dir"] == str(parent)
    status = project.status(child)
    assert status["counts"]["COMPLETED"] == 2
    assert sorted(r["values"]["seed"] for r in status["runs"]) == [3, 4]  # never a parent seed
    assert sorted(r["summary"]["acc"] for r in status["runs"]) == pytest.approx([0.33, 0.34])
    before = sum(project.markers_of("start").values())
    again = project.cli("retrain-best", str(parent), "--metric", "acc", "--seeds", "2")
    assert again.returncode == 0 and "resuming sweep" in again.stderr
    assert sum(project.markers_of("start").values()) == before


def test_compare_puts_sweeps_side_by_side(results_project):
    project = results_project
    first = project.sweep_dir()
    assert project.run("task.fn=results_task:main", "task.lr=0.5", "seed=0,1",
                       check=True).returncode == 0
    second = next(d for d in (project.root / "outputs").iterdir()
                  if d != first and not d.name.startswith("."))
    proc = project.cli("compare", str(first), str(second), "--metric", "acc",
                       "--out", "cmp")
    assert proc.returncode == 0, proc.stderr
    md = (project.root / "cmp" / "compare.md").read_text()
    assert first.name in md and second.name in md
    table = [line for line in md.splitlines() if line.startswith("| ") and "sweep" not in line]
    assert table[0].startswith(f"| {second.name} | 1 | all runs | 2/2")  # best first
    assert len(table) == 4  # 3 settings of the first sweep, 1 of the second
    assert png_size(project.root / "cmp" / "curves.png") == (1600, 1000)
    # a colour per setting (3 in the first sweep, 1 in the second), not one per sweep
    assert colours_in(project.root / "cmp" / "curves.png", colours(10)[:6]) == [0, 1, 2, 3]
    proc = project.cli("compare", str(first), str(first), "--metric", "acc", "--out", "same")
    assert proc.returncode == 0, proc.stderr  # the same settings keep their colours
    assert colours_in(project.root / "same" / "curves.png", colours(10)[:6]) == [0, 1, 2]


def test_a_random_search_plots_the_metric_against_each_hyperparameter(project):
    (project.root / "rnd.py").write_text(
        "import math\n\ndef main(cfg):\n    lr = float(cfg.task.lr)\n"
        "    return {'val/acc': 1 - abs(math.log10(lr) + 2.5) / 3 + 0.001 * cfg.task.width}\n")
    (project.root / "conf" / "task" / "rnd.yaml").write_text(
        "name: rnd\nfn: rnd:main\nlr: 0.01\nwidth: 32\n")
    project.cli("task=rnd", "+sweep=random", "sweep.num_samples=12",
                "task.lr=tag(log,interval(1e-5,1e-1))", "task.width=choice(16,32,64)",
                "runner.output_dir=outputs", timeout=300)
    sweep = project.sweep_dir()
    proc = project.cli("report", str(sweep), "--metric", "val/acc")
    assert proc.returncode == 0, proc.stderr
    width, height = png_size(sweep / "report" / "val-acc" / "params.png")
    assert width > 1500 and height > 700  # two panels side by side, 200 dpi
    assert "params.png" in (sweep / "report" / "val-acc" / "report.md").read_text()
    from runner.results.report import log_axes
    from runner.storage.store import SweepStore

    assert log_axes(SweepStore(sweep)) == (["task.lr", "task.width"], {"task.lr"})
    # what mattered: lr moves val/acc by up to 1, width by 0.05
    md = (sweep / "report" / "val-acc" / "report.md").read_text()
    rows = [line for line in md.splitlines() if line.startswith("| task.")]
    assert rows[0].startswith("| task.lr |") and rows[1].startswith("| task.width |"), md
    assert float(rows[0].split("|")[2]) > float(rows[1].split("|")[2])
    assert png_size(sweep / "report" / "val-acc" / "importances.png")[0] > 1000


RETRY_TASK = '''
import os, signal
import runner

def main(cfg):
    attempt = runner.current_run().attempt
    for step in range(5 if attempt == 1 else 3):  # the first attempt dies after 5 steps
        runner.log({"loss": attempt * 10 + step}, step=step)
    if attempt == 1:
        os.kill(os.getpid(), signal.SIGKILL)
    return {"loss": attempt * 10 + 2}
'''


def test_every_reader_takes_the_latest_attempts_row_per_step(project):
    """A resumed run logs steps again: metrics.jsonl and progress.csv keep every row with its
    attempt, and report, plots, the bot and status use the latest attempt's row per step."""
    import csv
    import json

    from runner.results import queries
    from runner.results.aggregate import collect
    from runner.storage.store import SweepStore

    (project.root / "retry.py").write_text(RETRY_TASK)
    (project.root / "conf" / "task" / "retry.yaml").write_text("name: retry\nfn: retry:main\n")
    assert project.run("task=retry").returncode == 1  # SIGKILLed: CRASHED
    assert project.run("task=retry", "runner.retry_crashed=true").returncode == 0
    store = SweepStore(project.sweep_dir())
    (ref,) = store.runs()
    rows = [json.loads(line) for line in ref.paths.metrics.read_text().splitlines()]
    assert [(r["attempt"], r["step"]) for r in rows] == [(1, s) for s in range(5)] + [
        (2, s) for s in range(3)]
    with open(ref.paths.progress, newline="") as f:
        table = list(csv.DictReader(f))
    assert [(t["attempt"], t["step"]) for t in table] == [(str(r["attempt"]), str(r["step"]))
                                                          for r in rows]
    (result,) = collect(store, "loss", "final", "min")  # report, plots and the bot's /plot
    assert list(result.steps) == [0, 1, 2, 3, 4]
    assert list(result.series) == [20, 21, 22, 13, 14]  # per step: the latest attempt's row
    summary = queries.run_summary(store, ref.id)  # the bot's /summary and status
    assert summary["metrics"]["loss"] == 22 and summary["attempt"] == 2


@pytest.mark.parametrize("metric, mode", [
    ("loss", "min"), ("val/loss", "min"), ("train_error", "min"), ("val/acc", "max"),
    ("top1_accuracy", "max"), ("f1", "max"), ("score", None), ("val/acc_loss_gap", None),
])
def test_the_mode_comes_from_the_metrics_name_only_when_it_says(metric, mode):
    from runner.errors import RunnerError
    from runner.results.aggregate import mode_for

    if mode is None:
        with pytest.raises(RunnerError, match="give --mode max or --mode min"):
            mode_for(metric)
    else:
        assert mode_for(metric) == mode
    assert mode_for(metric, "min") == "min"


def test_the_end_of_a_sweep_shows_its_best_runs_or_the_next_command(project):
    proc = project.run("+sweep=grid", "task.lr=0.1,0.2,0.3", "seed=0,1", "runner.metric=score",
                       "runner.mode=max", check=True)
    assert "best 5 run(s) by score (max is better):" in proc.stderr
    table = [line for line in proc.stdout.splitlines() if "COMPLETED" in line]
    assert len(table) == 5 and "score=4" in table[0]  # lr 0.3 * 10 + seed 1
    proc = project.run("seed=5", check=True)
    assert "results: `python -m runner status" in proc.stderr
    assert "--metric " in proc.stderr and "(metrics: " in proc.stderr
    status = project.cli("status", str(project.root / "outputs" / next(
        p.name for p in (project.root / "outputs").iterdir() if "single" in p.name)),
        "--sort", "loss")
    assert status.returncode == 0 and "best first by loss (min is better)" in status.stderr


def test_the_notebook_api_gives_the_data_report_uses(project):
    """runner.load(sweep_dir): runs, metrics (latest attempt per step) and groups as DataFrames,
    equal to what status and report say."""
    pytest.importorskip("pandas")
    import runner

    (project.root / "retry.py").write_text(RETRY_TASK)
    (project.root / "conf" / "task" / "retry.yaml").write_text("name: retry\nfn: retry:main\n")
    assert project.run("task=retry", "seed=0,1").returncode == 1  # both SIGKILLed once
    assert project.run("task=retry", "seed=0,1", "runner.retry_crashed=true").returncode == 0
    sweep = runner.load(project.sweep_dir())
    runs = sweep.runs()
    status = {r["id"]: r for r in project.status()["runs"]}
    assert sorted(runs["id"]) == sorted(status)
    assert set(runs["state"]) == {"COMPLETED"} and set(runs["attempt"]) == {2}
    assert sorted(runs["seed"]) == [0, 1] and list(runs["summary.loss"]) == [22, 22]
    metrics = sweep.metrics(["loss"])
    assert len(metrics) == 2 * 5 and not metrics.duplicated(["id", "step"]).any()
    first = metrics[metrics["id"] == runs["id"][0]]
    assert list(first["loss"]) == [20, 21, 22, 13, 14] and list(first["attempt"]) == [2, 2, 2, 1, 1]
    (project.root / "split.py").write_text(  # two metrics at one step, in two calls
        "import runner\n\ndef main(cfg):\n    for s in range(3):\n"
        "        runner.log({'train/loss': 1.0 / (s + 1)}, step=s)\n"
        "        runner.log({'val/acc': 0.1 * s}, step=s)\n")
    (project.root / "conf" / "task" / "split.yaml").write_text("name: split\nfn: split:main\n")
    project.run("task=split", check=True)
    split = next(d for d in (project.root / "outputs").iterdir() if d.name.startswith("split-"))
    both = runner.load(split).metrics()
    assert list(both["step"]) == [0, 1, 2] and list(both["val/acc"]) == [0.0, 0.1, 0.2]
    assert list(both["train/loss"]) == [1.0, 0.5, pytest.approx(1 / 3)]
    every = sweep.metrics(latest=False)
    assert len(every) == 2 * 8 and {"seed", "step", "attempt", "loss"} <= set(every.columns)
    groups = sweep.groups("loss")
    assert list(groups["runs"]) == [2] and groups["mean"][0] == pytest.approx(22)  # the summary


def test_show_tells_everything_about_one_run(project):
    (project.root / "retry.py").write_text(RETRY_TASK)
    (project.root / "conf" / "task" / "retry.yaml").write_text("name: retry\nfn: retry:main\n")
    project.run("task=retry", "seed=4")
    project.run("task=retry", "seed=4", "runner.retry_crashed=true", check=True)
    (row,) = project.status()["runs"]
    proc = project.cli("show", row["dir"], "--json")
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    assert info["state"] == "COMPLETED" and info["attempt"] == 2 and info["summary"] == {"loss": 22}
    first, second = info["attempts"]
    assert (first["attempt"], first["state"]) == (1, "CRASHED")
    assert first["reason"].startswith("killed by SIGKILL") and first["pid"] != second["pid"]
    assert (second["attempt"], second["state"]) == (2, "COMPLETED")
    assert all(a["host"] and a["start"] <= a["end"] for a in (first, second))
    assert first["end"] <= second["start"]
    assert info["config"]["seed"] == 4 and info["last_metrics"]["loss"] == 22
    assert info["files"]["stderr"].endswith("stderr.log")
    text = project.cli("show", row["dir"]).stdout
    assert "1: CRASHED on " in text and "2: COMPLETED on " in text and "config:" in text
    bad = project.cli("show", str(project.root))
    assert bad.returncode == 2 and "is not a run directory" in bad.stderr


WIDTH_TASK = '''
def main(cfg):
    return {"score": float(cfg.task.lr) * int(cfg.task.width) + 0.001 * int(cfg.seed)}
'''


def test_a_key_one_setting_leaves_out_still_tells_settings_apart(project):
    """A list sweep whose second entry sets a key the first leaves out: two settings, in the
    report, the status table, runner.load().groups() and the dry run; retrain-best retrains
    the better one."""
    import runner as runner_api

    (project.root / "width_task.py").write_text(WIDTH_TASK)
    with open(project.root / "conf" / "task" / "toy.yaml", "a") as f:
        f.write("width: 64\n")
    runs = "sweep.runs=[{task.lr: 0.1}, {task.lr: 0.1, task.width: 256}]"
    dry = project.run("task.fn=width_task:main", "+sweep=list", runs, "sweep.seeds=2",
                      "runner.dry_run=true", check=True)
    assert "task.width=None" not in dry.stdout and "task.width" in dry.stdout
    project.run("task.fn=width_task:main", "+sweep=list", runs, "sweep.seeds=2", check=True)
    sweep = project.sweep_dir()
    report = project.cli("report", str(sweep), "--metric", "score", "--mode", "max")
    groups = list(csv.DictReader(io.StringIO(
        (sweep / "report" / "score" / "groups.csv").read_text())))
    assert [(g["group"], g["n"]) for g in groups] == [("task.width=256", "2"),
                                                      ("task.width=64", "2")], report.stdout
    assert float(groups[0]["mean"]) == pytest.approx(25.6005)
    assert "task.width" in project.cli("status", str(sweep)).stdout
    frame = runner_api.load(sweep).groups("score", mode="max")
    assert len(frame) == 2
    retrain = project.cli("retrain-best", str(sweep), "--metric", "score", "--mode", "max",
                          "--seeds", "1")
    assert retrain.returncode == 0, retrain.stderr
    child = next(d for d in (project.root / "outputs").iterdir() if "retrain" in d.name)
    (row,) = project.status(child)["runs"]
    assert row["summary"]["score"] == pytest.approx(25.6 + 0.002)  # width 256, seed 2


def test_retrain_best_never_reuses_a_seed_of_a_sweep_without_a_seed_axis(project):
    """A random search has no seed axis: every run ran with the config's seed; the retrain's
    seeds are new against every frozen config."""
    (project.root / "width_task.py").write_text(WIDTH_TASK)
    with open(project.root / "conf" / "task" / "toy.yaml", "a") as f:
        f.write("width: 64\n")
    project.run("task.fn=width_task:main", "+sweep=random", "sweep.num_samples=3",
                "task.lr=interval(0.1,0.2)", "seed=7", check=True)
    parent = project.sweep_dir()
    proc = project.cli("retrain-best", str(parent), "--metric", "score", "--mode", "max",
                       "--seeds", "2")
    assert proc.returncode == 0, proc.stderr
    child = next(d for d in (project.root / "outputs").iterdir() if "retrain" in d.name)
    assert sorted(r["values"]["seed"] for r in project.status(child)["runs"]) == [8, 9]


VALUES_ONLY = '''
def main(cfg):
    return {"acc": float(cfg.task.lr) + 0.01 * int(cfg.seed)}
'''


def test_every_figure_of_report_and_compare_is_readable(results_project, tmp_path):
    """Reports and a compare of three sweeps drawn in this process, each figure checked by
    runner.results.plots.layout_problems; a sweep that only returns values gets no empty curves."""
    from runner.results import plots
    from runner.results.report import compare, make_report
    from runner.storage.store import SweepStore

    project = results_project
    first = project.sweep_dir()
    for lrs, name in (("0.5,0.6", "second-sweep-with-a-long-name"), ("0.7", "third")):
        project.run("task.fn=results_task:main", f"task.lr={lrs}", "seed=0,1",
                    f"runner.name={name}", check=True)
    stores = [SweepStore(first), SweepStore(project.root / "outputs" / "second-sweep-with-a-"
                                            "long-name"), SweepStore(project.root / "outputs" /
                                                                    "third")]
    plots.PROBLEMS.clear()
    for store in stores:
        make_report(store, "acc", "max")
    compare(stores, "acc", "max", "final", tmp_path / "compare")
    assert plots.PROBLEMS and {k: v for k, v in plots.PROBLEMS.items() if v} == {}
    (project.root / "values_only.py").write_text(VALUES_ONLY)
    project.run("task.fn=values_only:main", "task.lr=0.1,0.2", "seed=0,1",
                "runner.name=values", check=True)
    report = make_report(SweepStore(project.root / "outputs" / "values"), "acc", "max")
    assert "curves.png" not in report.files and "finals.png" in report.files
    assert "no curve" in report.files["report.md"].read_text()
