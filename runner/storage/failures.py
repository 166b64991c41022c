"""Why a run crashed, as a class: what retries (``runner.retries``) and ``status`` go by.

* ``task``: the task's own exception or ``sys.exit`` (a bug: retrying repeats it);
* ``timeout``: it ran past ``launcher.timeout_min``;
* ``signal``: killed by a signal (SIGKILL from the out-of-memory killer or a user, SIGSEGV);
* ``oom``: the cluster says it ran out of memory;
* ``node``: its process or node went away without a word (a worker gone, a node failure).

The class is read from the CRASHED record (its reason and exit status), so records written
before classes existed are classified too.
"""

from __future__ import annotations

from typing import Any

CLASSES = ("task", "timeout", "signal", "oom", "node")
MACHINE = ("signal", "oom", "node")  # failures of the machine, not of the task: retried


def check_classes(values: list[str], key: str = "runner.retry_on") -> None:
    """Refuse a name that is not a failure class (a typo would silently retry nothing)."""
    import difflib

    from runner.errors import ConfigError

    for value in values:
        if value not in CLASSES:
            close = difflib.get_close_matches(str(value), CLASSES, n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise ConfigError(f"{key}: '{value}' is not a failure class{hint}; the classes are "
                              f"{', '.join(CLASSES)}")


def classify(data: dict[str, Any]) -> str:
    """The class of a CRASHED record's data (``reason``, ``exit_status``)."""
    if data.get("class") in CLASSES:
        return str(data["class"])
    reason = str(data.get("reason") or "")
    if "timed out after" in reason:
        return "timeout"
    if "out of memory" in reason:
        return "oom"
    if reason.startswith("killed by SIG"):
        return "signal"
    if "without recording a result" in reason or "without the worker recording" in reason \
            or "NODE_FAIL" in reason or "lost" in reason:
        return "node"
    return "task"
