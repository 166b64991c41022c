"""One run on several nodes: ``launcher=slurm launcher.nodes=N`` (with ``launcher.nproc_per_run``
ranks on each node).

The array task's job holds N nodes (``--nodes=N --ntasks-per-node=1``); the run's process runs
on the first of them as ever (its lease, heartbeat and FLAG files) and, in place of the task,
``run_nodes``: one ``srun`` step with one task per node, each task torch's elastic agent
(``python -m runner.slurm.nodes``, what ``torchrun --nnodes=N --node-rank=K`` runs) with a
static rendezvous at the first node on a port free there. Each agent starts its node's ranks
with the environment ``torch.distributed`` expects (``RANK`` across nodes, ``LOCAL_RANK``,
``GROUP_RANK`` the node's rank, ``WORLD_SIZE`` = N x nproc_per_run, ``MASTER_ADDR``), each
rank running ``runner.execution.ranks.rank_main`` as on one node: rank 0 owns the run's
results and trackers, every rank signs its process and host into the lease, and every rank's
output reaches the run's ``stdout.log`` prefixed ``[rank<N>]:`` (and is kept under
``ranks/node<K>/``).

Faults: a node's agent whose rank failed writes that failure (rank, exit code, traceback, time)
to ``ranks/failure-node<K>.json`` and exits non-zero, and ``srun --kill-on-bad-exit`` stops every
other node's agent and ranks at once (a rank left waiting in a collective included); the run
ends CRASHED with the first failed rank's traceback, or INTERRUPTED (and resumes) where that
rank was killed from outside. The step dies with the run's process (``srun`` killed ends the
step on every node), so a killed run, a timeout or a cancelled job leaves no rank behind.
Rank 0's return value reaches the run as JSON (``ranks/result.json``: the run's summary),
never as a pickle.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

from runner.errors import RunnerError

NODES_ENV = "RUNNER_NODES"
ENTRY = "runner.slurm.nodes:run_nodes"
RESULT = "result.json"


def hostnames(nodelist: str) -> list[str]:
    """SLURM's compact node list (``node[1-2]``) as host names, in order."""
    from runner.slurm.commands import _call

    names = _call(["scontrol", "show", "hostnames", nodelist]).split()
    if not names:
        raise RunnerError(f"scontrol show hostnames {nodelist} named no host")
    return names


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("", 0))
        return int(sock.getsockname()[1])


def run_nodes(cfg: Any) -> Any:
    """The run's process, on the job's first node: start one agent per node, wait for them,
    return rank 0's result (the run's summary)."""
    import runner
    from runner.execution.ranks import NPROC_ENV, RANK_ENTRY_ENV, failure_error
    from runner.execution.worker import die_with_parent

    ctx = runner.current_run()
    nproc, nodes = int(os.environ[NPROC_ENV]), int(os.environ[NODES_ENV])
    entry = os.environ.get(RANK_ENTRY_ENV) or str(cfg.task.fn)
    logs = ctx.paths.root / "ranks"
    logs.mkdir(mode=0o755, exist_ok=True)
    for old in [*logs.glob("failure-node*.json"), logs / RESULT]:  # (an earlier attempt's)
        old.unlink(missing_ok=True)
    master = hostnames(os.environ["SLURM_JOB_NODELIST"])[0]
    command = ["srun", f"--nodes={nodes}", f"--ntasks={nodes}", "--ntasks-per-node=1",
               "--kill-on-bad-exit=1", "--unbuffered", sys.executable, "-m", "runner.slurm.nodes",
               str(ctx.paths.root), entry, str(ctx.attempt), ctx.lease_token or "", master,
               str(free_port()), str(nproc), str(nodes),
               f"{ctx.run_id}-{ctx.attempt}-{uuid.uuid4().hex[:8]}"]
    parent = os.getpid()
    step = subprocess.Popen(command, stdin=subprocess.DEVNULL,
                            preexec_fn=lambda: die_with_parent(parent))
    try:
        code = step.wait()
    finally:  # (interrupted: the step goes with the run)
        if step.poll() is None:
            step.kill()
            step.wait()
    failures = []
    for path in logs.glob("failure-node*.json"):
        try:
            failures.append(json.loads(path.read_text()))
        except (OSError, ValueError):
            continue
    if failures:  # the first rank that failed; the others were stopped because of it
        raise failure_error(min(failures, key=lambda f: f["time"] or float("inf")),
                            nproc * nodes)
    if code != 0:
        raise RunnerError(f"the run's ranks on {nodes} nodes ended with srun's exit status "
                          f"{code} and no rank said why (see the run's stderr.log)")
    try:
        return json.loads((logs / RESULT).read_text())
    except (OSError, ValueError):
        return None


def node_main(argv: list[str]) -> int:
    """One node's agent (``srun`` task ``SLURM_NODEID``): its ranks, a failure told in a file."""
    from torch.distributed.elastic.multiprocessing import DefaultLogsSpecs, Std
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    from runner.execution.ranks import first_failure, rank_main, start_method
    from runner.execution.worker import summary_of
    from runner.storage.atomic import write_text_atomic

    run_dir, entry, attempt, token, master, port, nproc, nodes, tag = argv
    node = int(os.environ["SLURM_NODEID"])
    logs = Path(run_dir) / "ranks"
    conf = LaunchConfig(
        min_nodes=int(nodes), max_nodes=int(nodes), nproc_per_node=int(nproc), run_id=tag,
        rdzv_backend="static", rdzv_endpoint=f"{master}:{port}",
        rdzv_configs={"rank": node, "timeout": 300}, max_restarts=0, monitor_interval=0.1,
        start_method=start_method(), role="rank", log_line_prefix_template="[rank${rank}]:",
        logs_specs=DefaultLogsSpecs(log_dir=str(logs / f"node{node}"), redirects=Std.ALL,
                                    tee=Std.ALL))
    try:
        results = elastic_launch(conf, rank_main)(run_dir, entry, int(attempt), os.getpid(),
                                                 token)
    except ChildFailedError as exc:
        write_text_atomic(logs / f"failure-node{node}.json", json.dumps(first_failure(exc)))
        return 1
    except SignalException as exc:  # stopped: another node's rank failed, or the run ended
        return 128 + int(exc.sigval)
    if 0 in results:
        write_text_atomic(logs / RESULT, json.dumps(summary_of(results[0]), default=str))
    return 0


if __name__ == "__main__":
    sys.exit(node_main(sys.argv[1:]))
