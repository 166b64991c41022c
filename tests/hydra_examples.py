"""Hydra's own example apps, run with ``-m`` under Hydra's basic launcher and sweeper and under
runner's plugins, compared file by file.

    python tests/hydra_examples.py [HYDRA_EXAMPLES] [--only NAME ...] [--keep DIR]

HYDRA_EXAMPLES is the ``examples/`` folder of Hydra's repository (the 1.3 branch:
``git clone -b 1.3_branch https://github.com/facebookresearch/hydra``); by default the subset kept
in ``tests/assets/hydra_examples`` (what CI runs, through tests/test_hydra_examples.py). Prints
one row per app and mode: ``same``, or what differed.

Each app runs in a fresh copy of its folder, three ways: Hydra's basic launcher and sweeper (the
reference), ``hydra/launcher=runner``, and ``hydra/launcher=runner hydra/sweeper=runner``; each of
runner's modes then runs again (a resume must run no job). Compared: the exit status, the jobs and
their numbers (``.hydra/overrides.yaml``), every job's composed config (``.hydra/config.yaml``),
its Hydra config (``.hydra/hydra.yaml``) and its log files, ``multirun.yaml``, the files in each
job's folder and the lines the jobs print. Left out of the comparison, as differing by design
(README, "Coming from Hydra multirun"): the sweep folder's name (``hydra.sweep.dir``: runner's
default is a fingerprint of the overrides, so that the same command finds the same folder), the
launcher's and sweeper's own settings, timestamps, and runner's own lines and files.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
VENDORED = HERE / "assets" / "hydra_examples"


@dataclass(frozen=True)
class App:
    script: str                 # relative to examples/
    overrides: tuple[str, ...]  # the sweep
    root: str = ""              # the folder copied (default: the script's own)
    path: tuple[str, ...] = ()  # extra PYTHONPATH entries, relative to examples/


APPS = [
    App("advanced/config_search_path/my_app.py", ("dataset=cifar10,imagenet",)),
    App("advanced/defaults_list_interpolation/my_app.py",
        ("db=mysql,sqlite", "server=apache,nginx")),
    App("advanced/hydra_app_example/hydra_app/main.py", ("app.num1=1,2", "app.user=a,b"),
        root="advanced/hydra_app_example"),
    App("advanced/nested_defaults_list/my_app.py", ("server/db=mysql,sqlite",)),
    App("advanced/package_overrides/simple.py", ("db=mysql,postgresql",)),
    App("advanced/package_overrides/two_packages.py",
        ("db@source=mysql,postgresql", "db@destination=mysql,postgresql")),
    App("configure_hydra/custom_help/my_app.py", ("db=mysql,postgresql",)),
    App("configure_hydra/job_name/no_config_file_override.py", ("+a=1,2",)),
    App("configure_hydra/job_name/with_config_file_override.py", ("+a=1,2",)),
    App("configure_hydra/job_override_dirname/my_app.py",
        ("learning_rate=0.1,0.01", "seed=1,2")),
    App("configure_hydra/logging/my_app.py", ("+a=1,2",)),
    App("configure_hydra/workdir/my_app.py", ("a=a1,a2",)),
    App("experimental/rerun/my_app.py", ("foo=bar,baz",)),
    App("instantiate/docs_example/my_app.py", ("trainer.optimizer.lr=0.01,0.1",)),
    App("instantiate/object/my_app.py", ("db=mysql,postgresql",)),
    App("instantiate/object_recursive/my_app.py", ("car.driver.age=7,8",)),
    App("instantiate/partial/my_app.py", ("model.optim_partial.algo=SGD,Adam",)),
    App("instantiate/schema/my_app.py", ("db=mysql,postgresql",)),
    App("instantiate/schema_recursive/my_app.py", ("tree.value=1,2",)),
    App("patterns/configuring_experiments/my_app.py", ("+experiment=aplite,nglite",)),
    App("patterns/extending_configs/my_app.py",
        ("db=mysql_extending_from_another_group,mysql_extending_from_this_group",)),
    App("patterns/multi-select/my_app.py", ("server/site=[amazon],[fb,google]",)),
    App("patterns/specializing_config/example.py",
        ("dataset=cifar10,imagenet", "model=alexnet,resnet")),
    App("patterns/write_protect_config_node/frozen.py", ("baud_rate=9600,19200",)),
    App("plugins/example_launcher_plugin/example/my_app.py", ("db=mysql,postgresql",),
        path=("plugins/example_launcher_plugin",)),
    App("plugins/example_sweeper_plugin/example/my_app.py", ("db=mysql,postgresql",),
        path=("plugins/example_sweeper_plugin",)),
    App("tutorials/basic/running_your_hydra_app/3_working_directory/my_app.py", ("+a=1,2",)),
    App("tutorials/basic/running_your_hydra_app/3_working_directory/original_cwd.py",
        ("+a=1,2",)),
    App("tutorials/basic/running_your_hydra_app/4_logging/my_app.py",
        ("+a=1,2", "hydra.verbose=true")),
    App("tutorials/basic/running_your_hydra_app/5_basic_sweep/my_app.py", ("db.user=a,b",)),
    App("tutorials/basic/your_first_hydra_app/1_simple_cli/my_app.py",
        ("+db.driver=mysql,postgresql", "+db.user=omry")),
    App("tutorials/basic/your_first_hydra_app/2_config_file/my_app.py", ("db.user=a,b",)),
    App("tutorials/basic/your_first_hydra_app/3_using_config/my_app.py",
        ("node.waldo=fud,fudd",)),
    App("tutorials/basic/your_first_hydra_app/4_config_groups/my_app.py",
        ("+db=mysql,postgresql",)),
    App("tutorials/basic/your_first_hydra_app/5_defaults/my_app.py",
        ("db=mysql,postgresql", "db.user=a,b")),
    App("tutorials/basic/your_first_hydra_app/6_composition/my_app.py",
        ("db=mysql,postgresql", "schema=school,support", "ui=full,view")),
    App("tutorials/structured_configs/1_minimal/my_app.py", ("port=3306,3307",)),
    App("tutorials/structured_configs/1_minimal/my_app_type_error.py", ("port=1,2",)),
    App("tutorials/structured_configs/2_static_complex/my_app.py", ("ui.width=800,1024",)),
    App("tutorials/structured_configs/3_config_groups/my_app.py", ("+db=mysql,postgresql",)),
    App("tutorials/structured_configs/3_config_groups/my_app_with_inheritance.py",
        ("+db=mysql,postgresql",)),
    App("tutorials/structured_configs/4_defaults/my_app.py", ("db=mysql,postgresql",)),
    App("tutorials/structured_configs/5.1_structured_config_schema_same_config_group/my_app.py",
        ("db=mysql,postgresql",)),
    App("tutorials/structured_configs/5.2_structured_config_schema_different_config_group/"
        "my_app.py", ("db=mysql,postgresql",)),
]
# apps of the examples folder that are not run with -m here, and why
NOT_RUN = {
    "advanced/ad_hoc_composition/hydra_compose_example.py": "the compose API, no @hydra.main",
    "advanced/ray_example/ray_compose_example.py": "needs ray",
}
MODES = {"basic": (), "launcher": ("hydra/launcher=runner",),
         "launcher+sweeper": ("hydra/launcher=runner", "hydra/sweeper=runner")}


@dataclass
class Outcome:
    rc: int
    stdout: str
    stderr: str
    sweep: Path | None
    jobs: dict[str, dict[str, Any]] = field(default_factory=dict)


def _run(app: App, examples: Path, work: Path, mode: str) -> tuple[Path, Outcome]:
    root = examples / (app.root or str(Path(app.script).parent))
    folder = work / mode
    if not folder.exists():
        shutil.copytree(root, folder)
    script = folder / Path(app.script).relative_to(app.root or Path(app.script).parent)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HYDRA_", "RUNNER_"))}
    env["PYTHONPATH"] = os.pathsep.join([str(folder), *(str(examples / p) for p in app.path),
                                         str(REPO), env.get("PYTHONPATH", "")])
    env["COLUMNS"] = "120"
    proc = subprocess.run([sys.executable, str(script), "-m", *app.overrides, *MODES[mode]],
                          cwd=script.parent, env=env, capture_output=True, text=True,
                          timeout=300)
    return folder, _collect(folder, proc)


def _collect(folder: Path, proc: subprocess.CompletedProcess[str]) -> Outcome:
    found = sorted(p.parent for p in folder.rglob("multirun.yaml") if "runs" not in p.parts)
    sweep = found[-1] if found else None
    out = Outcome(proc.returncode, proc.stdout, proc.stderr, sweep)
    if sweep is None:
        return out
    for hydra_dir in sorted(sweep.rglob(".hydra")):
        job = hydra_dir.parent
        if "runs" in job.relative_to(sweep).parts:
            continue
        files = {p.relative_to(job).as_posix(): p for p in job.rglob("*") if p.is_file()}
        out.jobs[job.relative_to(sweep).as_posix()] = {
            name: (p.read_text(errors="replace") if p.suffix in (".yaml", ".log") else None)
            for name, p in files.items()}
    return out


TIME = re.compile(r"\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}\]")
DATE_DIR = re.compile(r"\d{4}-\d\d-\d\d/\d\d-\d\d-\d\d")


def _normal(text: str, outcome: Outcome, folder: Path) -> str:
    if outcome.sweep is not None:
        text = text.replace(str(outcome.sweep), "<SWEEP>")
    text = text.replace(str(folder), "<APP>")
    return DATE_DIR.sub("<DATE>", TIME.sub("[<TIME>]", text))


PLUGIN_KEYS = ("hydra/launcher", "hydra/sweeper", "hydra.launcher", "hydra.sweeper")


def _hydra_yaml(text: str) -> Any:
    """A job's or the sweep's Hydra config without what differs by design."""
    data = yaml.safe_load(text)
    hydra = data["hydra"]
    for key in ("launcher", "sweeper"):
        hydra.pop(key, None)
    sweep = hydra.get("sweep", {})
    if "dir" in sweep:  # its name differs by design; relative stays relative
        sweep["dir"] = "<absolute>" if os.path.isabs(str(sweep["dir"])) else "<relative>"
    choices = hydra.get("runtime", {}).get("choices", {})
    for key in ("hydra/launcher", "hydra/sweeper"):
        choices.pop(key, None)
    overrides = hydra.get("overrides", {})
    if "hydra" in overrides:
        overrides["hydra"] = [o for o in overrides["hydra"] if not o.startswith(PLUGIN_KEYS)]
    return data


RUNNER_LINE = re.compile(r"\[HYDRA\] runner: |^results: |^nothing ran: |Launching \d+ jobs? "
                         r"locally|\t#\d+ : |\[HYDRA\] job #\d+ failed: ")


# Hydra's lines about the plugins chosen and their own banners (the app's example launcher and
# sweeper are replaced by runner's in these modes)
PLUGIN_LINE = re.compile(r"hydra/(launcher|sweeper)\b|Validated configs of \d+ jobs|Sweep output "
                         r"dir : |Example Launcher\(|ExampleSweeper \(")


def _printed(outcome: Outcome, folder: Path) -> list[str]:
    """What the jobs printed (stdout), in any order, without launcher lines and job prefixes."""
    lines = []
    for line in _normal(outcome.stdout, outcome, folder).splitlines():
        line = re.sub(r"^\[#\d+\] ", "", line)
        if line.strip() and not RUNNER_LINE.search(line) and not PLUGIN_LINE.search(line):
            lines.append(line)
    return sorted(lines)


def compare(app: App, examples: Path, work: Path) -> dict[str, list[str]]:
    """mode -> what differed from the basic launcher (empty: the same)."""
    base_folder, base = _run(app, examples, work, "basic")
    result = {}
    for mode in ("launcher", "launcher+sweeper"):
        folder, got = _run(app, examples, work, mode)
        diffs = _differences(base, base_folder, got, folder)
        if got.rc == 0 and got.sweep is not None:  # a resume runs no job
            stamps = {p: p.stat().st_mtime_ns for p in got.sweep.rglob("*.log")}
            _, again = _run(app, examples, work, mode)
            if again.rc != 0:
                diffs.append(f"resume: exit {again.rc}: {again.stderr.strip()[-300:]}")
            elif {p: p.stat().st_mtime_ns for p in got.sweep.rglob("*.log")} != stamps:
                diffs.append("resume: job logs were written again")
        result[mode] = diffs
    return result


def _differences(base: Outcome, base_folder: Path, got: Outcome, folder: Path) -> list[str]:
    diffs = []
    if (base.rc == 0) != (got.rc == 0):
        diffs.append(f"exit {got.rc}, basic {base.rc}: {got.stderr.strip()[-300:]}")
    if base.rc != 0 and got.rc != 0:  # the same error, and the app's frame named
        said = [ln for ln in base.stderr.splitlines() if ERROR_LINE.match(ln)
                or (ln.strip().startswith(f'File "{base_folder}') and "<module>" not in ln)]
        missing = [ln for ln in said if _normal(ln, base, base_folder).strip()
                   not in _normal(got.stderr, got, folder)]
        if missing:
            diffs.append(f"error lacks {missing}")
    printed = [_printed(o, f) for o, f in ((base, base_folder), (got, folder))]
    if printed[0] != printed[1]:
        diffs.append(f"printed {_multiset_minus(printed[1], printed[0])[:4]}, basic "
                     f"{_multiset_minus(printed[0], printed[1])[:4]}")
    if (base.sweep is None) != (got.sweep is None):
        diffs.append("no sweep folder" if got.sweep is None else "a sweep folder, basic none")
        return diffs
    if base.sweep is None or got.sweep is None:
        return diffs
    sweep_files = [set(p.name for p in o.sweep.iterdir() if p.is_file())  # type: ignore[union-attr]
                   for o in (base, got)]
    if not sweep_files[0] <= sweep_files[1]:
        diffs.append(f"sweep folder lacks {sorted(sweep_files[0] - sweep_files[1])}")
    multirun = [_hydra_yaml(_normal((o.sweep / "multirun.yaml").read_text(), o, f))  # type: ignore[operator]
                for o, f in ((base, base_folder), (got, folder))]
    if multirun[0] != multirun[1]:
        diffs.append("multirun.yaml: " + _first_difference(multirun[0], multirun[1]))
    if base.rc != 0:  # a failing job stops Hydra's basic launcher, not runner's (README)
        got.jobs = {k: v for k, v in got.jobs.items() if k in base.jobs}
    if sorted(base.jobs) != sorted(got.jobs):
        diffs.append(f"job folders {sorted(got.jobs)}, basic {sorted(base.jobs)}")
        return diffs
    for name, job in base.jobs.items():
        other = got.jobs[name]
        extra_or_missing = set(job) ^ set(other)
        if extra_or_missing:
            diffs.append(f"job {name} files differ: {sorted(extra_or_missing)}")
        for file, text in job.items():
            if text is None or file not in other:
                continue
            mine = _normal(other[file], got, folder)
            theirs = _normal(text, base, base_folder)
            if file == ".hydra/hydra.yaml":
                a, b = _hydra_yaml(theirs), _hydra_yaml(mine)
                if a["hydra"]["runtime"]["choices"].get("hydra/launcher") != "basic":
                    for job_node in (a["hydra"]["job"], b["hydra"]["job"]):
                        job_node.pop("id")  # the app's own launcher names its jobs
                if a != b:
                    diffs.append(f"job {name} hydra.yaml: {_first_difference(a, b)}")
            elif mine != theirs:
                diffs.append(f"job {name} {file}: {mine[:120]!r}, basic {theirs[:120]!r}")
    return diffs


ERROR_LINE = re.compile(r"^[\w.]*(Error|Exception)\b")


def _multiset_minus(a: list[str], b: list[str]) -> list[str]:
    """The lines of ``a`` that ``b`` lacks, as many times as they are missing."""
    return sorted((Counter(a) - Counter(b)).elements())


def _first_difference(a: Any, b: Any, where: str = "") -> str:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b), key=str):
            if a.get(key) != b.get(key):
                return _first_difference(a.get(key), b.get(key), f"{where}.{key}")
    return f"{where.lstrip('.')}: {b!r} (basic {a!r})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("examples", type=Path, nargs="?", default=VENDORED)
    parser.add_argument("--only", nargs="*", default=None, help="apps whose path has this")
    parser.add_argument("--keep", type=Path, default=None, help="keep the runs' folders here")
    args = parser.parse_args(argv)
    apps = [a for a in APPS if (args.examples / a.script).exists()
            and (args.only is None or any(o in a.script for o in args.only))]
    work_root = args.keep or Path(tempfile.mkdtemp(prefix="hydra-examples-"))
    counts = {mode: [0, 0] for mode in MODES if mode != "basic"}
    for i, app in enumerate(apps):
        result = compare(app, args.examples, work_root / str(i))
        for mode, diffs in result.items():
            counts[mode][0 if not diffs else 1] += 1
            print(f"| {app.script} | {mode} | {'same' if not diffs else '; '.join(diffs)} |",
                  flush=True)
    for script, why in NOT_RUN.items():
        if (args.examples / script).exists():
            print(f"| {script} | - | not run: {why} |")
    for mode, (same, differ) in counts.items():
        print(f"{mode}: {same} same, {differ} differ, of {same + differ} apps")
    if args.keep is None:
        shutil.rmtree(work_root, ignore_errors=True)
    return 0 if all(d == 0 for _, d in counts.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
