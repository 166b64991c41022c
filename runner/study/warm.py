"""Warm starts: the ended trials of other sweeps as a study's history (``sweep.warm_start``).

When the study is planned, the other sweeps' COMPLETED runs with a value of the objective are
read (their searched keys from the run's swept values, else from its frozen config), those
inside this study's space are kept, and the list is frozen with the study as
``warm_start.json`` (written with ``study.json`` when the sweep is created, atomically): every
proposal after a kill or a resume, or with the other sweeps grown or gone, sees the same
history. The sampler sees them as completed trials before the study's own; ``n_trials`` counts
the study's own trials only. Settings the other sweeps ran with that differ from this study's
(outside the searched keys) are stated, not refused: their values are taken as they are.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from runner.errors import SweepError
from runner.study.history import Trial, objectives_of

WARM_FILE = "warm_start.json"
_MISSING = object()


def sources(value: Any) -> list[str]:
    """``sweep.warm_start``: one folder or a list of them (absent: none)."""
    if value in (None, "", []):
        return []
    items = value if isinstance(value, list | tuple) else [value]
    return [str(v) for v in items]


def check_sources(value: Any) -> list[str]:
    """The sweep folders, absolute, each a sweep's (else an error naming it)."""
    out = []
    for item in sources(value):
        path = Path(item).expanduser().absolute()
        if not (path / "sweep.json").is_file():
            raise SweepError(f"sweep.warm_start: {item} is not a sweep folder (no sweep.json)")
        out.append(str(path))
    return out


def _select(config: dict[str, Any], key: str) -> Any:
    node: Any = config
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return _MISSING
        node = node[part]
    return node


def collect(folders: list[str], dists: dict[str, Any], metric: str | list[str],
            template: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The warm history of ``folders`` for a study of ``dists`` (what ``warm_start.json``
    holds) and the notes that say what was taken (``metric``: a list for a study of several
    objectives, whose history needs a value of each)."""
    from runner.config.configfile import load_run_config
    from runner.results.status import scan
    from runner.storage.metrics import flatten
    from runner.storage.store import SweepStore
    from runner.study.space import inside

    records: list[dict[str, Any]] = []
    outside = no_value = 0
    differing: dict[str, tuple[Any, Any]] = {}
    mine = flatten({k: v for k, v in template.items() if k != "seed"})
    for folder in folders:
        for row in scan(SweepStore(folder)):
            if row.state != "COMPLETED":
                continue
            value, values = objectives_of(row, metric)
            if value is None and values is None:
                no_value += 1
                continue
            config = load_run_config(row.ref.paths)
            params = {}
            for key in dists:
                got = row.ref.values.get(key, _MISSING)
                params[key] = _select(config, key) if got is _MISSING else got
            if any(v is _MISSING or not inside(dists[k], v) for k, v in params.items()):
                outside += 1
                continue
            theirs = flatten({k: v for k, v in config.items() if k != "seed"})
            for key in set(mine) | set(theirs):
                if key.replace("/", ".") in dists or key.split("/")[0] == "trial":
                    continue
                if mine.get(key, _MISSING) != theirs.get(key, _MISSING):
                    differing.setdefault(key.replace("/", "."),
                                         (theirs.get(key), mine.get(key)))
            records.append({"sweep": folder, "run": row.ref.id, "params": params,
                            **({"value": value} if values is None else {"values": values})})
    names = ", ".join(Path(f).name for f in folders)
    named = metric if isinstance(metric, str) else " and of ".join(metric)
    notes = [f"warm start: {len(records)} ended trial(s) of {names} taken as history"
             + (f"; {outside} outside this study's space left out" if outside else "")
             + (f"; {no_value} without a value of {named} left out" if no_value else "")]
    if differing:
        shown = "; ".join(f"{k}={a!r} there, {b!r} here" for k, (a, b) in
                          sorted(differing.items())[:5])
        more = f" and {len(differing) - 5} more" if len(differing) > 5 else ""
        notes.append(f"warm start: those runs ran with other settings ({shown}{more}); their "
                     "values are taken as they are")
    if not records:
        raise SweepError(f"sweep.warm_start: {names} has no ended trial with a value of "
                         f"{named} inside this study's space ({', '.join(dists)})")
    return {"version": 1, "trials": records, "differing": sorted(differing)}, notes


def load_warm(root: Path) -> list[Trial]:
    """The frozen warm history of the study in ``root``, numbered -k..-1 (none: [])."""
    path = Path(root) / WARM_FILE
    if not path.is_file():
        return []
    records = json.loads(path.read_text()).get("trials") or []
    k = len(records)
    return [Trial(i - k, dict(r["params"]), "COMPLETED",
                  None if "values" in r else float(r["value"]),
                  [float(v) for v in r["values"]] if "values" in r else None)
            for i, r in enumerate(records)]
