"""``hydra/launcher=runner`` and ``hydra/sweeper=runner`` with a real ``@hydra.main`` app run as
``python app.py -m ...``: resume, SIGKILL mid-sweep, failing jobs, Hydra's semantics inside
each job, the pinned backend, runner's sweep kinds, and runner's commands on the sweep."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import psutil
import pytest

from conftest import REPO, wait_for

APP = '''
import logging, os, time
from pathlib import Path
import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

log = logging.getLogger(__name__)


@hydra.main(version_base=None, config_path="conf", config_name="config")
def my_app(cfg: DictConfig) -> dict:
    job = HydraConfig.get().job
    marks = Path(os.environ["MARKERS"])
    marks.mkdir(exist_ok=True)
    (marks / f"start-{job.num}-{os.getpid()}").touch()
    log.info(f"job {job.num}: db={cfg.db.driver} lr={cfg.lr}")
    if cfg.get("record"):
        Path(os.environ["MARKERS"], f"env-{job.num}.json").write_text(json.dumps({
            "cwd": os.getcwd(), "affinity": sorted(os.sched_getaffinity(0)),
            "cuda": os.environ.get("CUDA_VISIBLE_DEVICES"),
            "env_set": os.environ.get("APP_FLAVOUR"),
            "output_dir": HydraConfig.get().runtime.output_dir}))
    time.sleep(cfg.sleep)
    if cfg.lr < 0:
        raise ValueError(f"negative lr {cfg.lr}")
    (marks / f"done-{job.num}-{os.getpid()}").touch()
    return {"val/loss": abs(cfg.lr - 0.01) + cfg.db.port / 1e5, "num": job.num}


if __name__ == "__main__":
    my_app()
'''.replace("import logging, os, time", "import json, logging, os, time")

CALLBACK = '''
import os
from pathlib import Path
from hydra.experimental.callback import Callback

class Ledger(Callback):
    def on_job_start(self, config, **kwargs):
        Path(os.environ["MARKERS"], f"cb-start-{config.hydra.job.num}").touch()
    def on_job_end(self, config, job_return, **kwargs):
        name = f"cb-end-{config.hydra.job.num}-{job_return.status.name}"
        Path(os.environ["MARKERS"], name).touch()
    def on_multirun_start(self, config, **kwargs):
        Path(os.environ["MARKERS"], f"cb-multirun-start-{os.getpid()}").touch()
    def on_multirun_end(self, config, **kwargs):
        Path(os.environ["MARKERS"], f"cb-multirun-end-{os.getpid()}").touch()
'''


class App:
    """A Hydra app in its own folder (conf/config.yaml, conf/db/{mysql,postgresql}.yaml)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.markers = root / "markers"
        (root / "conf" / "db").mkdir(parents=True)
        self.markers.mkdir()
        (root / "app.py").write_text(APP)
        (root / "ledger.py").write_text(CALLBACK)
        (root / "conf" / "config.yaml").write_text(
            "defaults:\n  - db: mysql\n  - _self_\nlr: 0.01\nsleep: 0.0\nrecord: false\n")
        (root / "conf" / "db" / "mysql.yaml").write_text("driver: mysql\nport: 3306\n")
        (root / "conf" / "db" / "postgresql.yaml").write_text("driver: postgresql\nport: 5432\n")

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
        env["MARKERS"] = str(self.markers)
        env["PYTHONPATH"] = os.pathsep.join([str(REPO), str(self.root)])
        return env

    def args(self, *overrides: str) -> list[str]:
        return [sys.executable, "app.py", "-m", "hydra/launcher=runner",
                "hydra.launcher.progress=false", *overrides]

    def run(self, *overrides: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.args(*overrides), cwd=self.root, env=self.env(), text=True,
                              capture_output=True, timeout=timeout)

    def ok(self, *overrides: str) -> str:
        proc = self.run(*overrides)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return proc.stdout + proc.stderr

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "runner", *args], cwd=self.root,
                              env=self.env(), text=True, capture_output=True, timeout=120)

    def sweep(self) -> Path:
        (only,) = (self.root / "multirun").iterdir()
        return only

    def status(self, sweep: Path | None = None) -> dict[str, Any]:
        """What ``status <sweep> --json`` prints, read in this process (no process per look)."""
        from runner.results.status import json_text
        from runner.storage.store import SweepStore

        return json.loads(json_text(SweepStore(sweep or self.sweep()), workers=1))

    def marks(self, kind: str) -> dict[int, int]:
        """job num -> how many marker files of that kind (start, done)."""
        out: dict[int, int] = {}
        for f in self.markers.glob(f"{kind}-*"):
            parts = f.name.split("-")
            if len(parts) == 3 and parts[1].isdigit():
                out[int(parts[1])] = out.get(int(parts[1]), 0) + 1
        return out


@pytest.fixture
def app(tmp_path: Path) -> App:
    return App(tmp_path / "app")


def runs_of(status: dict[str, Any]) -> list[dict[str, Any]]:
    return status["runs"]


def test_a_sweep_runs_every_job_once_and_the_same_command_resumes(app: App) -> None:
    out = app.ok("db=mysql,postgresql", "lr=0.1,0.01")
    assert "4 of 4 job(s) completed" in out
    sweep = app.sweep()
    assert sweep.name.startswith("app-")  # a fingerprint of the command, not the time
    assert sorted(p.name for p in sweep.iterdir() if p.name.isdigit()) == ["0", "1", "2", "3"]
    for num in range(4):
        hydra_dir = sweep / str(num) / ".hydra"
        assert {p.name for p in hydra_dir.iterdir()} == {"config.yaml", "hydra.yaml",
                                                         "overrides.yaml"}
        assert f"job {num}: db=" in (sweep / str(num) / "app.log").read_text()  # its log lines
    assert app.marks("start") == {0: 1, 1: 1, 2: 1, 3: 1}
    rows = runs_of(app.status())
    assert [r["state"] for r in rows] == ["COMPLETED"] * 4
    assert {json.dumps(r["values"], sort_keys=True) for r in rows} == {
        json.dumps({"db": d, "lr": lr}, sort_keys=True)
        for d in ("mysql", "postgresql") for lr in (0.1, 0.01)}

    out = app.ok("lr=0.1,0.01", "db=mysql,postgresql")  # the same sweep, written otherwise
    assert "4 of 4 job(s) completed" in out
    assert app.marks("start") == {0: 1, 1: 1, 2: 1, 3: 1}  # nothing ran again
    assert app.sweep() == sweep


def test_a_users_sweep_dir_is_respected_and_job_numbers_stay_put(app: App) -> None:
    app.ok("lr=0.1,0.01", "hydra.sweep.dir=mine", "hydra.sweep.subdir=job_${hydra.job.num}")
    assert not (app.root / "multirun").exists()
    assert {p.name for p in (app.root / "mine").glob("job_*")} == {"job_0", "job_1"}
    before = {r["values"]["lr"]: r for r in runs_of(app.status(app.root / "mine"))}
    # a wider sweep into the same directory: the two frozen jobs keep their numbers and results
    app.ok("lr=0.1,0.01,0.001", "hydra.sweep.dir=mine",
           "hydra.sweep.subdir=job_${hydra.job.num}")
    assert app.marks("start") == {0: 1, 1: 1, 2: 1}
    after = {r["values"]["lr"]: r for r in runs_of(app.status(app.root / "mine"))}
    assert {lr: r["id"] for lr, r in before.items()} == {lr: after[lr]["id"] for lr in before}
    assert all(after[lr]["state"] == "COMPLETED" for lr in (0.1, 0.01, 0.001))
    assert (app.root / "mine" / "job_2" / ".hydra" / "overrides.yaml").read_text().strip() == \
        "- lr=0.001"


def test_sigkill_of_the_app_mid_sweep_then_the_same_command_completes_each_job_once(
        app: App) -> None:
    args = ("lr=0.1,0.01,0.001,0.002,0.003,0.004", "sleep=1.0", "hydra.launcher.max_parallel=2")
    proc = subprocess.Popen(app.args(*args), cwd=app.root, env=app.env(), text=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    wait_for(lambda: len(app.marks("done")) >= 2 and len(app.marks("start")) >= 3, timeout=60)
    children = psutil.Process(proc.pid).children(recursive=True)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    psutil.wait_procs(children, timeout=20)  # the runs die with the app (no orphans)
    assert not [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]
    done_before = set(app.marks("done"))

    out = app.ok(*args)
    assert "6 of 6 job(s) completed" in out
    done = app.marks("done")
    assert done == {n: 1 for n in range(6)}  # every job completed exactly once
    starts = app.marks("start")
    assert all(starts[n] == 1 for n in done_before)  # a completed job never started again
    assert [r["state"] for r in runs_of(app.status())] == ["COMPLETED"] * 6


def test_a_job_that_raises_is_a_crash_with_its_traceback_and_the_sweep_goes_on(
        app: App) -> None:
    proc = app.run("lr=0.1,-1,0.01")
    assert proc.returncode == 1
    assert "ValueError: negative lr -1" in proc.stderr  # Hydra re-raises the job's exception
    assert app.marks("done") == {0: 1, 2: 1}  # the other jobs ran
    rows = {r["values"]["lr"]: r for r in runs_of(app.status())}
    assert rows[-1]["state"] == "CRASHED"
    (crash,) = app.sweep().glob("runs/*/CRASH.txt")
    text = crash.read_text()
    assert "ValueError: negative lr -1" in text and "Traceback" in text
    record = json.loads((crash.parent / "hydra_return.json").read_text())  # never a pickle
    assert record["status"] == "FAILED" and record["value"]["type"] == "ValueError"
    assert (crash.parent / "hydra_return.json").stat().st_mode & 0o777 == 0o600

    again = app.run("lr=0.1,-1,0.01")  # resumed: the crash is the result (not run again)
    assert again.returncode == 1 and "ValueError: negative lr -1" in again.stderr
    assert "nothing ran: 1 crashed run(s)" in again.stderr  # and how to run it again:
    assert "hydra.launcher.retry_crashed=true" in again.stderr
    assert app.marks("start") == {0: 1, 1: 1, 2: 1}
    retried = app.run("lr=0.1,-1,0.01", "hydra.launcher.retry_crashed=true")
    assert retried.returncode == 1 and app.marks("start") == {0: 1, 1: 2, 2: 1}


def test_hydra_semantics_inside_each_job(app: App) -> None:
    app.ok("db=mysql,postgresql", "record=true", "hydra.job.chdir=true",
           "+hydra.job.env_set.APP_FLAVOUR=vanilla",
           "+hydra.callbacks.ledger._target_=ledger.Ledger")
    sweep = app.sweep()
    for num in (0, 1):
        seen = json.loads((app.markers / f"env-{num}.json").read_text())
        assert seen["cwd"] == str(sweep / str(num)) == seen["output_dir"]  # hydra.job.chdir
        assert seen["env_set"] == "vanilla"  # hydra.job.env_set
        assert (app.markers / f"cb-start-{num}").exists()  # on_job_* in the job
        assert (app.markers / f"cb-end-{num}-COMPLETED").exists()
    assert len(list(app.markers.glob("cb-multirun-start-*"))) == 1  # on_multirun_* in the app
    assert len(list(app.markers.glob("cb-multirun-end-*"))) == 1


def test_a_job_whose_config_changed_keeps_its_frozen_config_or_is_refused(app: App) -> None:
    app.ok("db=mysql,postgresql")
    (app.root / "conf" / "db" / "mysql.yaml").write_text("driver: mysql\nport: 3307\n")
    refused = app.run("db=mysql,postgresql", "hydra.launcher.on_config_change=error",
                      "hydra.launcher.retry_crashed=true")
    assert refused.returncode != 0
    assert "config of 1 job(s) changed" in refused.stderr and "db.port: 3306 -> 3307" in \
        refused.stderr
    out = app.ok("db=mysql,postgresql")
    assert "config of 1 job(s) changed" in out and "frozen config" in out
    assert app.marks("start") == {0: 1, 1: 1}


def test_the_pinned_backend_gives_each_job_its_own_cpu_and_gpu(app: App) -> None:
    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("needs 2 CPUs")
    app.ok("lr=0.1,0.01,0.001,0.002", "record=true", "sleep=0.3",
           "hydra.launcher.backend=pinned", "hydra.launcher.cpus_per_run=1",
           "hydra.launcher.gpus=[0,1]", "hydra.launcher.gpus_per_run=1")
    seen = [json.loads((app.markers / f"env-{n}.json").read_text()) for n in range(4)]
    assert all(len(s["affinity"]) == 1 for s in seen)
    assert {s["cuda"] for s in seen} == {"0", "1"}
    slots = {s["cuda"]: set() for s in seen}
    for s in seen:
        slots[s["cuda"]].add(tuple(s["affinity"]))
    assert slots["0"].isdisjoint(slots["1"])  # two slots, each its own CPU and GPU


def test_runners_sweep_kinds_from_a_hydra_app(app: App) -> None:
    out = app.ok("hydra/sweeper=runner", "hydra.sweeper.kind=random",
                 "hydra.sweeper.num_samples=4", "hydra.sweeper.seeds=2", "+seed=0",
                 "lr=tag(log,interval(0.001,0.1))", "db=mysql,postgresql")
    assert "8 of 8 job(s) completed" in out
    rows = runs_of(app.status())
    assert len(rows) == 8 and {r["values"]["seed"] for r in rows} == {0, 1}
    assert all(0.001 <= r["values"]["lr"] <= 0.1 for r in rows)
    # a filter and a grid, with Hydra's own basic launcher
    filtered = subprocess.run(
        [sys.executable, "app.py", "-m", "hydra/sweeper=runner",
         'hydra.sweeper.filter="not (db == \'postgresql\' and lr > 0.05)"',
         "db=mysql,postgresql", "lr=0.1,0.01", "hydra.sweep.dir=basic"],
        cwd=app.root, env=app.env(), text=True, capture_output=True, timeout=120)
    assert filtered.returncode == 0, filtered.stderr
    assert "kept 3 of 4" in filtered.stdout + filtered.stderr
    assert len(list((app.root / "basic").glob("*/.hydra"))) == 3
    bad = app.run("hydra/sweeper=runner", "hydra.sweeper.kind=bayes", "lr=0.1,0.2")
    assert bad.returncode != 0 and "hydra.sweeper.kind='bayes' is not one of" in bad.stderr


def test_runners_commands_work_on_a_hydra_sweep(app: App, tmp_path: Path) -> None:
    app.ok("db=mysql,postgresql", "lr=0.1,0.01", "hydra.launcher.metric=val/loss")
    sweep = app.sweep()
    report = app.cli("report", str(sweep), "--metric", "val/loss", "--out", str(tmp_path / "r"))
    assert report.returncode == 0, report.stderr
    assert "mysql" in report.stdout and "val/loss" in report.stdout
    (run_dir,) = [p for p in sweep.glob("runs/*") if "postgresql" in p.name and "0.1" in p.name]
    show = app.cli("show", str(run_dir), "--json")
    assert show.returncode == 0, show.stderr
    resume = app.cli("resume", str(sweep))
    assert resume.returncode != 0
    assert "python" in resume.stderr and "app.py" in resume.stderr  # how to resume it instead


def test_runners_own_command_line_speaks_to_hydra_users(app: App, tmp_path: Path) -> None:
    foreign = app.cli("lr=0.1")  # in the app's folder: its conf/config.yaml is not runner's
    assert foreign.returncode != 0
    assert "config.yaml is the Hydra app app.py's primary config" in foreign.stderr
    assert "python app.py -m hydra/launcher=runner" in foreign.stderr
    assert "Traceback" not in foreign.stderr
    for setting in ("hydra.job.chdir=true", "hydra.run.dir=x", "hydra.sweep.dir=y",
                    "hydra/launcher=joblib", "+hydra.job.env_set.A=1"):
        refused = app.cli(setting)
        assert refused.returncode != 0 and f"'{setting}' is a Hydra setting" in refused.stderr
    assert not (app.root / "outputs").exists()

    project = tmp_path / "proj"
    (project / "conf").mkdir(parents=True)
    (project / "conf" / "mine.yaml").write_text(
        "defaults:\n  - config\n  - _self_\ntask:\n  width: 3\n")
    env = {**app.env(), "PYTHONPATH": str(REPO)}
    shown = subprocess.run([sys.executable, "-m", "runner", "-m", "-cd", "conf", "-cn", "mine",
                            "--cfg", "job", "+sweep=grid", "seed=1,2"], cwd=project, env=env,
                           text=True, capture_output=True, timeout=120)
    assert shown.returncode == 0, shown.stderr
    assert "# run 1 of 4" in shown.stdout and "width: 3" in shown.stdout  # (2 lr x 2 seeds)
    assert "launcher:" not in shown.stdout  # job: the run's config only
    assert not (project / "outputs").exists()  # printed, nothing written


@pytest.mark.parametrize("overrides", [
    [], ["db=postgresql"], ["lr=0.5"], ["db=postgresql", "db.port=1"],
    ["db.port=1", "db=postgresql"],
    ["+extra=3"], ["++lr=2"], ["~record"], ["+db/extra=more"], ["lr=${sleep}"],
    ["db=mysql", "lr=0.1", "+seed=4", "sleep=1.5"]])
def test_a_job_composed_from_a_template_is_the_job_hydra_composes(
        app: App, overrides: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """SweepConfigs (a copy of a per-group template + the value overrides) against Hydra's own
    full composition of the same job: the same config, Hydra node included."""
    from hydra._internal.config_loader_impl import ConfigLoaderImpl
    from hydra._internal.utils import create_config_search_path
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.utils import JobRuntime
    from hydra.types import RunMode
    from omegaconf import OmegaConf

    from runner.hydra_plugin.compose import SweepConfigs

    (app.root / "conf" / "db" / "extra").mkdir()
    (app.root / "conf" / "db" / "extra" / "more.yaml").write_text("flag: true\n")
    monkeypatch.chdir(app.root)
    GlobalHydra.instance().clear()
    JobRuntime.instance().set("name", "app")
    loader = ConfigLoaderImpl(config_search_path=create_config_search_path(
        str(app.root / "conf")))
    master = loader.load_configuration("config", ["db=mysql,postgresql", "lr=0.1,0.2"],
                                       RunMode.MULTIRUN)
    fast = SweepConfigs(loader)
    fast.load_sweep_config(master, ["db=mysql"])  # another job first: the template is shared
    mine = fast.load_sweep_config(master, list(overrides))
    hydras = loader.load_sweep_config(master, list(overrides))
    assert OmegaConf.to_container(mine, resolve=False) == OmegaConf.to_container(
        hydras, resolve=False)
    assert OmegaConf.is_struct(mine) and OmegaConf.to_yaml(mine) == OmegaConf.to_yaml(hydras)
    with pytest.raises(Exception, match="boo"):  # an unknown key: Hydra's own error
        fast.load_sweep_config(master, ["boo=1"])


def test_the_bot_reads_a_hydra_sweep(app: App, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("discord")
    from runner.integrations.discord_bot.config import BotConf
    from runner.integrations.discord_bot.logic import BotLogic

    app.ok("db=mysql,postgresql", "lr=0.1,0.01")
    monkeypatch.chdir(app.root)
    logic = BotLogic(BotConf(allowed_users=[1], channels=[2], outputs=["multirun"],
                             workdir=str(app.root)))
    listed = logic.sweeps().text
    assert app.sweep().name in listed and "hydra" in listed
    runs = logic.runs(app.sweep().name).text
    assert runs.count("COMPLETED") == 4 and "postgresql" in runs
    (run_dir,) = [p for p in app.sweep().glob("runs/*") if "postgresql" in p.name
                  and "lr=0.1-" in p.name]
    summary = logic.summary(run_dir.name, sweep=app.sweep().name).text
    assert "val/loss" in summary


def test_a_run_folder_never_makes_a_resume_run_code(app: App) -> None:
    """A job's return value is JSON: a pickle planted in a run folder (the old file name) or a
    crafted JSON record is read as data, never run."""
    import pickle

    app.ok("lr=0.1,0.01")
    pwned = app.root / "pwned"

    class Boom:
        def __reduce__(self) -> tuple[Any, ...]:
            return (open, (str(pwned), "w"))

    runs = sorted(app.sweep().glob("runs/*/"))
    (runs[0] / "hydra_return.pkl").write_bytes(pickle.dumps(Boom()))
    record = json.loads((runs[1] / "hydra_return.json").read_text())
    record["value"] = {"$runner": "text", "type": "os.system", "text": "touch pwned"}
    (runs[1] / "hydra_return.json").write_text(json.dumps(record))
    app.ok("lr=0.1,0.01")  # resumed: both jobs' results read back
    assert not pwned.exists()


def test_job_return_values_round_trip_as_data() -> None:
    import math

    from omegaconf import OmegaConf

    from runner.hydra_plugin import returns

    values = [None, True, 3, 2.5, "s", [1, [2]], {"a": {"b": 1}}, (1, 2), {1: "x", (2, 3): 4},
              {"$runner": "user's own key"}, OmegaConf.create({"a": [1, 2]}), ValueError("bad")]
    for value in values:
        back = returns.decode(json.loads(json.dumps(returns.encode(value))))
        if isinstance(value, BaseException):
            assert type(back) is ValueError and str(back) == "bad"
        else:
            assert back == value and type(back) is type(value), (value, back)
    assert math.isnan(returns.decode(returns.encode(float("nan"))))

    class Custom:
        def __repr__(self) -> str:
            return "Custom()"

    back = returns.decode(json.loads(json.dumps(returns.encode(Custom()))))
    assert back == "Custom()" and back.type_name.endswith("Custom")
    assert type(returns.decode(returns.encode(KeyError("k")))) is KeyError
    crafted = {"$runner": "exception", "type": "SystemExit", "message": "x"}
    assert type(returns.decode(crafted)) is RuntimeError  # not a BaseException it would raise


def test_retrain_best_of_a_runner_sweeper_sweep_runs_only_the_best_with_new_seeds(
        app: App) -> None:
    """The parent's sweeper (its kind, samples and seeds) is not carried over: the best
    setting runs with seeds no job used, and nothing else."""
    app.ok("hydra/sweeper=runner", "hydra.sweeper.kind=random", "hydra.sweeper.num_samples=3",
           "hydra.sweeper.seeds=2", "+seed=0", "lr=interval(0.01,0.1)", "db=mysql,postgresql")
    sweep = app.sweep()
    proc = app.cli("retrain-best", str(sweep), "--metric", "val/loss", "--mode", "min",
                   "--seeds", "2")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    (child,) = [d for d in (app.root / "multirun").iterdir() if "retrain" in d.name]
    rows = runs_of(app.status(child))
    assert sorted(r["values"]["seed"] for r in rows) == [2, 3]
    best = min(runs_of(app.status(sweep)), key=lambda r: r["summary"]["val/loss"])
    assert {r["values"]["lr"] for r in rows} == {best["values"]["lr"]}


@pytest.mark.parametrize("sweeper", [[], ["hydra/sweeper=runner"]],
                         ids=["basic-sweeper", "runner-sweeper"])
def test_hydras_sweep_grammar_runs_the_jobs_hydra_would(app: App, sweeper: list[str]) -> None:
    """Package overrides (two packages of one group), a group and a key inside it, glob(),
    a value listed twice, list values: the jobs, and the texts Hydra writes, as Hydra's."""
    from omegaconf import OmegaConf

    (app.root / "conf" / "db" / "sqlite.yaml").write_text("driver: sqlite\nport: 0\n")
    cases = [
        (["+db@src=mysql,postgresql", "+db@dst=mysql,postgresql"], 4),
        (["db=mysql,postgresql", "db.port=1,2"], 4),
        (["db=glob(*,exclude=sqlite)"], 2),
        (["db=mysql,postgresql,mysql"], 3),
        (["+hosts=[amazon],[google]"], 2),
    ]
    for i, (overrides, jobs) in enumerate(cases):
        out = app.ok(*sweeper, *overrides, f"hydra.sweep.dir=s{i}")
        assert f"{jobs} of {jobs} job(s) completed" in out, (overrides, out)
        assert len(list((app.root / f"s{i}").glob("*/.hydra/overrides.yaml"))) == jobs
    lines = [(app.root / "s4" / str(n) / ".hydra" / "overrides.yaml").read_text()
             for n in range(2)]
    assert "+hosts=[amazon]" in lines[0] and "+hosts=[google]" in lines[1], lines
    configs = [OmegaConf.load(app.root / "s0" / str(n) / ".hydra" / "config.yaml")
               for n in range(4)]
    assert sorted((c.src.driver, c.dst.driver) for c in configs) == [
        ("mysql", "mysql"), ("mysql", "postgresql"), ("postgresql", "mysql"),
        ("postgresql", "postgresql")]


def test_hydra_settings_errors_name_the_keys_as_written_and_lists_round_trip(app: App) -> None:
    bad = app.run("hydra.launcher.max_parallel=-1", "lr=0.1,0.2")
    assert bad.returncode != 0 and "hydra.launcher.max_parallel=-1 must be >= 1" in bad.stderr
    assert "Traceback" not in bad.stderr and len(bad.stderr.strip().splitlines()) <= 3
    typo = app.run("hydra.launcher.retry_on=[nod]", "lr=0.1,0.2")
    assert typo.returncode != 0 and "hydra.launcher.retry_on: 'nod' is not a failure class " \
        "(did you mean node?)" in typo.stderr
    # seeds on an app whose config has no seed: added, as the sweeper's own setting asks
    out = app.ok("hydra/sweeper=runner", "hydra.sweeper.seeds=2", "lr=0.1,0.2")
    assert "4 of 4 job(s) completed" in out
    sweep = app.sweep()
    manifest = json.loads((sweep / "sweep.json").read_text())
    assert manifest["execution"]["runner"]["secret_env"] == []  # a list, not "[]"
    for command in (["status", str(sweep)], ["cancel", str(sweep)]):
        proc = app.cli(*command)
        assert "Traceback" not in proc.stderr and "must be" not in proc.stderr, proc.stderr


def test_a_relative_sweep_dir_stays_relative_in_each_job(app: App) -> None:
    app.ok("lr=0.1,0.2", "hydra.sweep.dir=rel/sweep")
    saved = OmegaConf_load(app.root / "rel" / "sweep" / "0" / ".hydra" / "hydra.yaml")
    assert saved.hydra.sweep.dir == "rel/sweep"  # as Hydra's basic launcher writes it


def OmegaConf_load(path: Path) -> Any:  # noqa: N802
    from omegaconf import OmegaConf

    return OmegaConf.load(path)


def test_a_visible_gpu_runs_one_job_at_a_time_unless_asked(monkeypatch) -> None:
    from runner.hydra_plugin.launch import execution_of

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    assert execution_of({"backend": "local"})["launcher"]["max_parallel"] == 1
    assert execution_of({"backend": "local", "max_parallel": 4})["launcher"]["max_parallel"] == 4
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert "max_parallel" not in execution_of({"backend": "local"})["launcher"]


def test_every_backend_setting_is_a_hydra_launcher_setting() -> None:
    """What runner's backends can do, a Hydra app can ask for: each key of their config
    classes is a ``hydra.launcher.*`` key, and reaches the backend as set."""
    import dataclasses

    from runner.config.schema import PinnedLauncherConf, SlurmLauncherConf
    from runner.hydra_plugin.config import RunnerLauncherConf
    from runner.hydra_plugin.launch import execution_of

    plugin = {f.name for f in dataclasses.fields(RunnerLauncherConf)}
    for conf, backend in ((PinnedLauncherConf, "pinned"), (SlurmLauncherConf, "slurm")):
        keys = {f.name for f in dataclasses.fields(conf)} - {"_target_", "start_method"}
        assert keys <= plugin, (backend, sorted(keys - plugin))
    launcher = execution_of({"backend": "slurm", "nodes": 2, "nproc_per_run": 4,
                             "max_queued": 10, "bad_node_after": 0})["launcher"]
    assert (launcher["nodes"], launcher["nproc_per_run"], launcher["max_queued"],
            launcher["bad_node_after"]) == (2, 4, 10, 0)


def test_the_terminal_shows_the_jobs_output_and_a_failure_as_hydra_would(app: App) -> None:
    """Each job's log lines reach the terminal as they come, [#num]-prefixed when several run
    at once; a failed job is reported with the app's own frames and where its output is."""
    several = app.run("lr=0.1,0.01", "hydra.launcher.max_parallel=2")
    assert several.returncode == 0, several.stderr
    shown = several.stdout + several.stderr
    for num, lr in ((0, 0.1), (1, 0.01)):
        assert re.search(rf"\[#{num}\] .*job {num}: db=mysql lr={lr}", shown), shown
    alone = app.run("lr=0.2", "hydra.launcher.max_parallel=1", "hydra.sweep.dir=alone")
    shown = alone.stdout + alone.stderr
    assert "job 0: db=mysql lr=0.2" in shown and "[#0]" not in shown
    quiet = app.run("lr=0.3", "hydra.launcher.echo=false", "hydra.sweep.dir=quiet")
    assert "job 0: db=mysql lr=0.3" not in quiet.stdout + quiet.stderr
    failed = app.run("lr=-1", "hydra.sweep.dir=failed")
    assert failed.returncode == 1
    tail = failed.stderr[failed.stderr.index("Error executing job"):]
    assert 'app.py", line' in tail and "in my_app" in tail, tail
    assert "hydra/_internal" not in tail and "HYDRA_FULL_ERROR=1" in tail
    assert "its output: " in tail and "stderr.log" in tail


def test_a_jobs_fast_copies_are_omegaconfs_copies_and_the_task_gets_omegaconfs_own(
        app: App, monkeypatch: pytest.MonkeyPatch) -> None:
    """Inside run_job, a composed config is copied child by child through pickle: the copy is
    the one ``copy.deepcopy`` makes (values, flags, parent links, interpolations into the Hydra
    node, the masked copy HydraConfig keeps), a node that does not pickle is copied the usual
    way, and the task itself sees OmegaConf's own deepcopy."""
    import copy

    from hydra._internal.config_loader_impl import ConfigLoaderImpl
    from hydra._internal.utils import create_config_search_path
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.utils import JobRuntime
    from hydra.types import RunMode
    from omegaconf import DictConfig, OmegaConf, open_dict

    from runner.hydra_plugin.copies import fast_copies

    monkeypatch.chdir(app.root)
    GlobalHydra.instance().clear()
    JobRuntime.instance().set("name", "app")
    loader = ConfigLoaderImpl(config_search_path=create_config_search_path(
        str(app.root / "conf")))
    master = loader.load_configuration("config", ["db=postgresql", "lr=0.1"], RunMode.MULTIRUN)
    cfg = loader.load_sweep_config(master, ["db=postgresql", "lr=0.1"])
    with open_dict(cfg):
        cfg.where = "${hydra:job.name}/${db.user}"  # an interpolation through the Hydra node
        cfg.nested = {"deep": {"list": [1, {"x": "${lr}"}], "none": None}}
    OmegaConf.set_readonly(cfg.hydra, True)

    def shape(c: Any) -> Any:
        return (OmegaConf.to_yaml(c), OmegaConf.is_struct(c), OmegaConf.is_readonly(c.hydra),
                OmegaConf.is_readonly(c.nested), [n for n in c.nested.deep.list])

    expected = copy.deepcopy(cfg)
    ran: list[Any] = []

    def task(task_cfg: DictConfig) -> str:
        ran.append(DictConfig.__deepcopy__)
        return "done"

    with fast_copies(task) as job_task:
        fast = copy.deepcopy(cfg)
        masked = OmegaConf.masked_copy(cfg, "hydra")
        assert job_task(cfg) == "done" and job_task.__name__ == "task"
    assert shape(fast) == shape(expected) == shape(cfg)
    assert fast.hydra._get_parent() is fast and fast.nested.deep._get_parent() is fast.nested
    assert fast.nested.deep.list[1]._get_parent() is fast.nested.deep.list
    assert fast.nested is not cfg.nested and fast.nested.deep.list[1].x == 0.1
    assert masked.hydra.job.name == cfg.hydra.job.name and masked.hydra._get_parent() is masked
    with fast_copies(task):  # copies of one copy are independent
        fast.nested.deep.none = "changed"
    assert cfg.nested.deep.none is None
    assert ran == [DictConfig.__deepcopy__]  # the task ran with OmegaConf's own deepcopy

    class Opaque:  # a value pickle cannot take (a class defined in a function)
        pass

    odd = OmegaConf.create({"a": {"b": 1}}, flags={"allow_objects": True})
    odd.a.obj = Opaque()
    with fast_copies(task):
        copied = copy.deepcopy(odd)
    assert copied.a.b == 1 and isinstance(copied.a.obj, Opaque)


def test_a_jobs_yaml_files_are_the_text_omegaconf_writes(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Inside run_job (before the task), ``OmegaConf.to_yaml`` writes with libyaml's emitter
    where every string is printable ASCII or a newline, and the text is OmegaConf's own, for
    awkward strings (quoted look-alikes of numbers and booleans, YAML's indicators, long lines,
    newlines), nested lists, int keys, unresolved interpolations and resolved ones; any other
    character is written by OmegaConf's own emitter (libyaml escapes an emoji, for one); the
    task and everything after the job see OmegaConf's own ``to_yaml``."""
    import random

    import yaml
    from omegaconf import DictConfig, ListConfig, OmegaConf

    from runner.hydra_plugin import copies
    from runner.hydra_plugin.copies import fast_copies

    plain = ["", " ", "a b", " lead", "trail ", "x" * 100, "word " * 30, "one\ntwo", "\n",
             "a: b", "# c", "'q'", '"dq"', "back\\slash", "---", "...", "null", "~", "1e3",
             "0x10", ".inf", "yes", "on", "2024-01-01", "12:30", "[a]", "{a: 1}", "*ref", "&a",
             "!tag", "%p", "@at", "`b`", "|", ">", "- a", "? x", "a,b", "${lr}", "end\\"]
    other = ["é", "中文", "emoji 🎉", "tab\there", "\x85nel", "ü" * 90]
    values: list = [*plain, None, True, False, 0, -1, 10**30, 1.5, 1e-10, 3.0]
    rng = random.Random(0)

    def tree(strings: list, depth: int = 0) -> Any:
        pick = rng.random()
        if depth > 3 or pick < 0.5:
            return rng.choice([*strings, *values[len(plain):]])
        if pick < 0.75:
            return {rng.choice([*strings, 7, "k"]) or "e": tree(strings, depth + 1)
                    for _ in range(rng.randint(0, 4))}
        return [tree(strings, depth + 1) for _ in range(rng.randint(0, 4))]

    used: list[Any] = []
    dump = yaml.dump
    monkeypatch.setattr(yaml, "dump", lambda *a, **kw: used.append(kw.get("Dumper")) or dump(
        *a, **kw))
    ran: list[Any] = []
    with fast_copies(lambda cfg: ran.append(OmegaConf.to_yaml)) as job_task:
        for strings in (plain, [*plain, *other]):
            for _ in range(300):
                cfg = OmegaConf.create({"lr": 0.1, "root": tree(strings), "ref": "${lr}"})
                for resolve in (False, True):
                    ours = OmegaConf.to_yaml(cfg, resolve=resolve)
                    assert ours == copies._to_yaml(cfg, resolve=resolve), cfg
                listed = OmegaConf.create(["a", "${lr}", {"b": [1, "c"]}])
                assert OmegaConf.to_yaml(listed) == copies._to_yaml(listed)
        job_task(None)
    assert isinstance(cfg, DictConfig) and isinstance(listed, ListConfig)
    ours_used = [d for d in used if d is not None]
    assert copies._LibyamlDumper in ours_used and ours_used.count(copies._LibyamlDumper) < len(
        ours_used)  # (the non-ASCII configs went the usual way)
    assert ran == [copies._to_yaml] and OmegaConf.to_yaml == copies._to_yaml


def test_the_job_echo_follows_only_the_jobs_that_run(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """The echo reads the files of the jobs running now (a poll costs the same however many
    jobs a batch has), prints an ended job's last unfinished line, and reads all at the end."""
    import io

    from runner.hydra_plugin import terminal
    from runner.storage.store import RunRef

    monkeypatch.setattr(terminal, "POLL_S", 0.02)
    jobs = {}
    for num in range(300):
        run_dir = tmp_path / "runs" / f"job{num}"
        run_dir.mkdir(parents=True)
        jobs[str(run_dir)] = num
    out, err = io.StringIO(), io.StringIO()
    looked: list[Path] = []
    size = terminal._size
    monkeypatch.setattr(terminal, "_size", lambda p: looked.append(p) or size(p))
    echo = terminal.JobEcho(jobs, prefix=True, out=out, err=err)
    looked.clear()

    def ref(num: int) -> Any:
        return RunRef(f"job{num}", f"job{num}", {}, str(tmp_path / "runs" / f"job{num}"))

    with echo:
        echo.started(ref(7))
        (tmp_path / "runs" / "job7" / "stdout.log").write_text("hello\npartial")
        wait_for(lambda: "[#7] hello" in out.getvalue(), timeout=5)
        assert "partial" not in out.getvalue()  # an unfinished line waits for its end
        assert {p.parent.name for p in looked} == {"job7"}  # not the 299 others
        echo.ended(ref(7))
        wait_for(lambda: "[#7] partial" in out.getvalue(), timeout=5)
        (tmp_path / "runs" / "job9" / "stderr.log").write_text("never started here\n")
    assert "[#9] never started here" in err.getvalue()  # everything is read at the end


def test_a_batchs_configs_stay_out_of_the_collectors_sight_until_the_next_batch(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """What a batch makes (every job's config, held by the JobReturns) is frozen from its
    composing on, so that neither the sweeper's composing nor the interpreter's exit walks it
    all again and again (0.7 s and 1.0-1.9 s at 500 jobs); the next batch gives it back first,
    so a sweeper launching batch after batch keeps no batch's garbage; an app that froze
    objects itself is left as it was."""
    import gc
    import weakref

    from runner.hydra_plugin import collector
    from runner.hydra_plugin import launch as launching

    class Node:  # a cycle, like an OmegaConf node and its parent
        def __init__(self) -> None:
            self.me = self

    made: list[weakref.ref] = []

    def job() -> Node:  # a job composed by the sweeper
        node = Node()
        made.append(weakref.ref(node))
        collector.composed()
        return node

    monkeypatch.setattr(launching, "_launch", lambda *_: [])
    monkeypatch.setattr(collector, "_state", collector._State())
    monkeypatch.setattr(collector, "COMPOSED_EVERY", 2)
    gc.collect()
    assert gc.get_freeze_count() == 0
    try:
        batch = [job(), job()]
        assert gc.get_freeze_count() > 0  # frozen while the sweeper composes
        launching.launch({}, None, None, None, [], 0)  # type: ignore[arg-type]
        del batch
        gc.collect()
        assert all(ref() is not None for ref in made)  # kept, out of sight
        batch = [job(), job()]  # the next batch: the last one given back first
        launching.launch({}, None, None, None, [], 0)  # type: ignore[arg-type]
        gc.collect()
        assert [ref() is None for ref in made] == [True, True, False, False]
        del batch
        launching.launch({}, None, None, None, [], 0)  # (a launch without composing)
        gc.collect()
        assert all(ref() is None for ref in made)
        gc.unfreeze()
        collector._state.kept = collector._state.composing = False
        gc.freeze()  # the app's own freeze
        frozen = gc.get_freeze_count()
        batch = [job(), job()]
        launching.launch({}, None, None, None, [], 0)  # type: ignore[arg-type]
        assert gc.get_freeze_count() == frozen and not collector._state.kept
        del batch
        gc.collect()
        assert made[-1]() is None  # (nothing of ours frozen)
    finally:
        gc.unfreeze()
