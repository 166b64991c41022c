"""Nodes a sweep leaves out: where its runs kept failing for the machine, not for the task.

A run that ends on a node for the machine's fault (failure class ``node``: its job ended without
the worker recording a result, the worker vanished; or SLURM ended it with a node failure)
adds one to that node's streak; a run that completes there ends the streak. At
``launcher.bad_node_after`` in a row the node is left out of every later submission of the sweep
(``sbatch --exclude``), and a standing notice says so: ``status`` shows it, the notifiers are
told. The notice is the record: it lives with the sweep, so a resume keeps leaving the node out;
``launcher.bad_node_after=0`` uses every node again.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

from runner.storage import notices
from runner.storage.failures import classify
from runner.storage.state import State, dict_field

PREFIX = "slurm.bad_node:"
_NODE_ENDINGS = ("ended with a node failure", "failed to boot its node")


def node_fault(state: State, data: dict[str, Any]) -> bool:
    """Whether an attempt that ended so failed for its node's fault."""
    if state is State.CRASHED:
        return classify(data) == "node"
    if state is State.INTERRUPTED:
        return any(words in str(data.get("reason", "")) for words in _NODE_ENDINGS)
    return False


class BadNodes:
    def __init__(self, sweep_root: Path, after: int) -> None:
        self.root, self.after = sweep_root, after
        self.streaks: dict[str, list[str]] = defaultdict(list)  # node -> runs failed in a row
        self.news: list[str] = []  # notices not yet told

    def excluded(self) -> list[str]:
        """The nodes to leave out of the next submission (with ``bad_node_after=0``: none, and
        the notices that named them are taken back)."""
        named = [k for k in notices.read(self.root) if k.startswith(PREFIX)]
        if not self.after:
            for key in named:
                notices.drop(self.root, key)
            return []
        return sorted(k[len(PREFIX):] for k in named)

    def _named(self, node: str) -> bool:
        return PREFIX + node in notices.read(self.root)

    def saw(self, run_id: str, state: State, data: dict[str, Any]) -> None:
        """One of the sweep's attempts ended (``data``: its terminal record)."""
        node = str(dict_field(data.get("launcher")).get("node") or "")
        if not node or not self.after:
            return
        if state is State.COMPLETED:
            self.streaks.pop(node, None)
            return
        if not node_fault(state, data):
            return  # the task's own failure, or a stop from outside: says nothing of the node
        self._failed(node, run_id, str(data.get("reason", "")))

    def saw_pool(self, job: str, node: str, slurm_state: str) -> None:
        """A pool of the sweep (``launcher.runs_per_job``) ended: one that failed (its set-up
        or runner exited non-zero before its runs could, or SLURM failed its node) counts
        against its node like a run that failed there; one that completed ends the streak."""
        if not node or not self.after:
            return
        if slurm_state == "COMPLETED":
            self.streaks.pop(node, None)
        elif slurm_state in ("FAILED", "NODE_FAIL", "BOOT_FAIL"):
            self._failed(node, f"pool {job}", f"the pool ended {slurm_state}")

    def _failed(self, node: str, what: str, reason: str) -> None:
        streak = self.streaks[node]
        streak.append(what)
        if len(streak) >= self.after and not self._named(node):
            reason = (reason.splitlines() or [""])[0][:160]
            text = (f"node {node} is left out of this sweep's submissions: {len(streak)} runs "
                    f"in a row failed there for the machine ({', '.join(streak[-3:])}; last: "
                    f"{reason}); launcher.bad_node_after=0 uses it again")
            if notices.put(self.root, PREFIX + node, text):
                self.news.append(text)
