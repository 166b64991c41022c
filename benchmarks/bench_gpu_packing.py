"""Throughput of packing MNIST runs onto one GPU with the pinned launcher.

    python benchmarks/bench_gpu_packing.py                 # on a machine with an NVIDIA GPU
    python benchmarks/bench_gpu_packing.py --cpu           # smoke test without a GPU

For k in 1, 2, 4 (--ks), k MNIST runs start together on one GPU (launcher=pinned,
gpus_per_run=1, runs_per_gpu=k). Each run logs its training samples/s every epoch; a run's rate is
the median over its epochs after the first (CUDA warm-up), and the aggregate is their sum, the
same measure as shared/notes/gpu-packing.md (raw processes: 2.95x at k=4 on an H100). The table
prints each aggregate as a ratio to k=1 measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run_k(k: int, args: argparse.Namespace, out: Path) -> tuple[float, list[float]]:
    place = (["launcher.gpus_per_run=0", f"launcher.cpus_per_run={args.cpus_per_run}",
              "task.device=cpu"] if args.cpu else
             ["launcher.gpus_per_run=1", f"launcher.runs_per_gpu={k}", "launcher.gpus=[0]",
              f"launcher.cpus_per_run={args.cpus_per_run}", "task.device=cuda"])
    cmd = [sys.executable, "-m", "runner", "task=mnist", "launcher=pinned", *place,
           f"+task.bench_k={k}", f"seed=range({k})", f"task.epochs={args.epochs}",
           f"task.channels={args.channels}", "task.log_every=1000000", "task.eval_every=null",
           "runner.preload=[torch]",
           f"runner.output_dir={out}", "runner.progress=false", "task.threads=null"]
    subprocess.run(cmd, cwd=REPO, check=True)
    (sweep,) = [d for d in out.iterdir() if not d.name.startswith(".")]
    rates = []
    for run in sorted((sweep / "runs").iterdir()):
        epochs = [json.loads(line)["samples_per_s"]
                  for line in (run / "metrics.jsonl").read_text().splitlines()
                  if "samples_per_s" in line]
        rates.append(statistics.median(epochs[1:] or epochs))
    for d in out.iterdir():
        d.rename(out.parent / f"done-{k}-{d.name}")
    return sum(rates), rates


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--ks", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--channels", type=int, default=32)
    parser.add_argument("--cpus-per-run", type=int, default=1)
    parser.add_argument("--cpu", action="store_true", help="no GPU: pin runs to CPUs instead")
    args = parser.parse_args()
    if not args.cpu:
        try:
            subprocess.run(["nvidia-smi", "-L"], check=True, capture_output=True)
        except (OSError, subprocess.CalledProcessError):
            sys.exit("no NVIDIA GPU here (nvidia-smi failed); use --cpu for a smoke test")
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for k in args.ks:
            out = Path(tmp) / "outputs"
            out.mkdir(exist_ok=True)
            total, rates = run_k(k, args, out)
            results.append((k, total, rates))
    base = results[0][1]
    print(f"{'runs per GPU' if not args.cpu else 'runs (CPU)':>14} {'per run samples/s':>22} "
          f"{'aggregate':>12} {'vs k=' + str(results[0][0]):>8}")
    for k, total, rates in results:
        per = ", ".join(f"{r:,.0f}" for r in rates)
        print(f"{k:>14} {per:>22} {total:>12,.0f} {total / base:>7.2f}x")


if __name__ == "__main__":
    main()
