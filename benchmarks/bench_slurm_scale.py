"""A sweep of many short runs on the test cluster: one array task per run against runs packed
into pools (``launcher.runs_per_job``), at one or more sizes.

    SLURM_NODES=1 SLURM_CPUS=4 SLURM_ACCOUNTING=0 bash tests/slurm/cluster-up.sh   # as root
    python benchmarks/bench_slurm_scale.py --runs 200 1000 --runs-per-job 4
    python benchmarks/bench_slurm_scale.py --runs 2000 10000 --array-up-to 2000
    python benchmarks/bench_slurm_scale.py --runs 10000 --method array   # about 75 minutes

For each size and method: the number of ``sbatch`` calls (one per submission directory), the
most jobs pending at once (``squeue -t PENDING``, polled every 0.5 s), the time from the command
to its end, the runner's own CPU seconds (the submitting process and the SLURM commands it
called, from ``wait4``: not this script's polling), then ``status --json`` and a ``resume``
with nothing left, timed at that size. The runs are the launcher benchmarks' trivial task
(write one small JSON file).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent


def _pending(project: Path) -> int:
    """Jobs of this project's sweep that wait in the queue (its job names start with the
    sweep's name)."""
    sweeps = [d.name for d in (project / "outputs").glob("*") if not d.name.startswith(".")]
    if not sweeps:
        return 0
    out = subprocess.run(["squeue", "-h", "-r", "-t", "PENDING", "-o", "%j"],
                         capture_output=True, text=True, check=False).stdout
    return sum(1 for name in out.split() if name.startswith(f"{sweeps[0]}."))


def one(runs: int, k: int, work: Path) -> dict[str, float]:
    """One sweep of ``runs`` trivial runs, one array task each (k=1) or in pools of k."""
    project = work / f"n{runs}-k{k}"
    (project / "conf" / "task").mkdir(parents=True)
    shutil.copy(HERE / "trivial_task.py", project / "trivial_task.py")
    (project / "conf" / "task" / "trivial.yaml").write_text(
        "name: trivial\nfn: trivial_task:main\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(project)]),
           "BENCH_OUT": str(project)}
    command = [sys.executable, "-m", "runner", "task=trivial", "+sweep=grid",
               f"+x=range(0,{runs})", "launcher=slurm", "launcher.poll_s=1",
               f"launcher.runs_per_job={k}", "runner.progress=false",
               "notifier.console.events=[]", "runner.output_dir=outputs"]
    peak = [0]
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], _pending(project))
            time.sleep(0.5)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    start = time.monotonic()
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(command, cwd=project, env=env, stdout=subprocess.DEVNULL,
                                stderr=err)
        # the runner's own CPU and its SLURM commands', not this script's squeue polling
        _, status, usage = os.wait4(proc.pid, 0)
        took = time.monotonic() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        err.seek(0)
        stderr = err.read().decode(errors="replace")
    done.set()
    watcher.join()
    if proc.returncode != 0:
        raise SystemExit(f"the sweep failed ({proc.returncode}):\n{stderr[-3000:]}")
    (sweep,) = [d for d in (project / "outputs").iterdir() if not d.name.startswith(".")]
    time.sleep(2.0)
    left = _pending(project)  # (pools still queued when the sweep ended are cancelled)
    completed = len(list(sweep.glob("runs/*/COMPLETED")))
    start = time.monotonic()
    status = subprocess.run([sys.executable, "-m", "runner", "status", str(sweep), "--json"],
                            cwd=project, env=env, capture_output=True, text=True, check=True)
    status_s = time.monotonic() - start
    counted = json.loads(status.stdout)["counts"]["COMPLETED"]
    start = time.monotonic()
    subprocess.run([sys.executable, "-m", "runner", "resume", str(sweep)], cwd=project, env=env,
                   capture_output=True, text=True, check=True)
    resume_s = time.monotonic() - start
    return {"completed": completed, "counted": counted, "left_pending": left,
            "sbatch": len([d for d in (sweep / "slurm").iterdir() if d.is_dir()]),
            "peak_pending": peak[0], "time_s": took,
            "cpu_s": usage.ru_utime + usage.ru_stime,
            "status_s": status_s, "resume_s": resume_s}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, nargs="+", default=[200, 1000])
    parser.add_argument("--runs-per-job", type=int, default=4)
    parser.add_argument("--array-up-to", type=int, default=None,
                        help="measure one array task per run only up to this many runs (at "
                        "about 0.4 s a run on a node of 4 CPUs, 10,000 runs take 70 minutes)")
    parser.add_argument("--method", choices=["both", "array", "pools"], default="both",
                        help="measure one array task per run, pools, or both (default)")
    args = parser.parse_args()
    if shutil.which("sbatch") is None:
        raise SystemExit("needs SLURM's commands and a cluster (tests/slurm/cluster-up.sh)")
    shape = subprocess.run(["sinfo", "-h", "-N", "-o", "%N %c"], capture_output=True,
                           text=True, check=True).stdout.split("\n")
    print(f"cluster: {', '.join(s for s in shape if s)} (node, CPUs); {os.cpu_count()} cores "
          "on this host")
    print(f"{'runs':>6} {'method':<16} {'done':>6} {'sbatch':>6} {'peak pending':>12} "
          f"{'time s':>8} {'runner CPU s':>12} {'status s':>8} {'resume s':>8} "
          f"{'queued after':>12}")
    with tempfile.TemporaryDirectory() as tmp:
        for runs in args.runs:
            methods = {"both": (1, args.runs_per_job), "array": (1,),
                       "pools": (args.runs_per_job,)}[args.method]
            for k in methods:
                if k == 1 and args.array_up_to is not None and runs > args.array_up_to:
                    print(f"{runs:>6} {'array task/run':<16} (not measured: --array-up-to "
                          f"{args.array_up_to})", flush=True)
                    continue
                r = one(runs, k, Path(tmp))
                method = "array task/run" if k == 1 else f"pools of {k}"
                print(f"{runs:>6} {method:<16} {r['completed']:>6} {r['sbatch']:>6} "
                      f"{r['peak_pending']:>12} {r['time_s']:>8.1f} {r['cpu_s']:>12.1f} "
                      f"{r['status_s']:>8.2f} {r['resume_s']:>8.2f} {r['left_pending']:>12}",
                      flush=True)


if __name__ == "__main__":
    main()
