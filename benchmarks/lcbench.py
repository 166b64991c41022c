"""LCBench (YAHPO Gym's surrogate of real learning curves) from ``../shared/data/yahpo``:
``curve(task, config)`` plays one configuration's 52 epochs (val_accuracy and the simulated
seconds of training so far). Needs ``pip install yahpo-gym onnxruntime``.

Also a runner task, ``task.fn: lcbench:train``: it plays one configuration epoch by epoch
through ``runner.log`` and sleeps ``task.time_scale`` real seconds per simulated second, so a
pruned trial saves real time.
"""

from __future__ import annotations

import os
import tempfile
import time
from functools import lru_cache
from pathlib import Path
from typing import Any

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "yahpo"
TASKS = ("3945", "7593", "34539", "126025", "126026")  # the tasks the defaults were tuned on
# tasks the defaults were never tuned on, where the README's headline table is measured
HELD_APART = ("126029", "146212", "167104", "167149", "167152", "167161", "167168", "167181",
              "167184", "167185")
EPOCHS = 52
SPACE = {  # LCBench's 7 hyperparameters, in runner's grammar
    "batch_size": "tag(log,int(interval(16,512)))",
    "learning_rate": "tag(log,interval(0.0001,0.1))",
    "momentum": "interval(0.1,0.99)",
    "weight_decay": "interval(0.00001,0.1)",
    "num_layers": "int(interval(1,5))",
    "max_units": "tag(log,int(interval(64,1024)))",
    "max_dropout": "interval(0.0,1.0)",
}


@lru_cache(maxsize=1)
def _bench() -> Any:
    import warnings

    # one config file per process: YAHPO writes it at init, and processes loading at once
    # (Hydra's joblib workers) would read each other's half-written file
    os.environ["YAHPO_LOCAL_CONFIG"] = str(Path(tempfile.gettempdir())
                                           / f"runner-yahpo-config-{os.getpid()}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from yahpo_gym import benchmark_set, local_config

        local_config.init_config()
        local_config.set_data_path(str(DATA))
        return benchmark_set.BenchmarkSet("lcbench")


def curve(task: str, config: dict[str, Any], first: int = 1, last: int = EPOCHS
          ) -> tuple[list[float], list[float]]:
    """(val_accuracy per epoch, cumulative simulated seconds per epoch), epochs first..last
    (one batched query: 52 epochs cost about as much as 3 single ones)."""
    bench = _bench()
    bench.set_instance(task)
    point = {k: config[k] for k in SPACE}
    for key in ("batch_size", "num_layers", "max_units"):
        point[key] = int(round(point[key]))
    rows = bench.objective_function([{**point, "OpenML_task_id": task, "epoch": e}
                                     for e in range(first, last + 1)])
    return [float(r["val_accuracy"]) for r in rows], [float(r["time"]) for r in rows]


class LazyCurve:
    """A curve queried in pieces as a trial gets that far (pruned trials stop early)."""

    def __init__(self, task: str, config: dict[str, Any], pieces: tuple[int, ...]) -> None:
        self.task, self.config = task, config
        self.ends = sorted({*(p for p in pieces if p < EPOCHS), EPOCHS})
        self.acc: list[float] = []
        self.secs: list[float] = []

    def _upto(self, epoch: int) -> None:
        while len(self.acc) < epoch:
            end = next(e for e in self.ends if e >= epoch)
            acc, secs = curve(self.task, self.config, len(self.acc) + 1, end)
            self.acc += acc
            self.secs += secs

    def accuracy(self, epoch: int) -> float:
        self._upto(epoch)
        return self.acc[epoch - 1]

    def seconds(self, epoch: int) -> float:
        self._upto(epoch)
        return self.secs[epoch - 1]


def play(task: str, config: dict[str, Any], time_scale: float, epochs: int = EPOCHS,
         log: Any = None) -> float:
    """Train one configuration: sleep ``time_scale`` real seconds per simulated second, epoch
    by epoch (``log(epoch, accuracy)`` after each); its final val_accuracy. With
    ``$LCBENCH_TIMES`` set, the seconds spent training are written there (one JSON file)."""
    import json
    import uuid

    acc, seconds = curve(task, config)
    began = time.time()
    previous = 0.0
    try:
        for epoch in range(1, epochs + 1):
            time.sleep(max(0.0, (seconds[epoch - 1] - previous) * time_scale))
            previous = seconds[epoch - 1]
            if log is not None:
                log(epoch, acc[epoch - 1])
    finally:
        if os.environ.get("LCBENCH_TIMES"):
            out = Path(os.environ["LCBENCH_TIMES"]) / f"{uuid.uuid4().hex}.json"
            out.write_text(json.dumps({"start": began, "end": time.time()}))
    return acc[epochs - 1]


def train(cfg: Any) -> dict[str, float]:
    """A runner task: one LCBench configuration, epoch by epoch through ``runner.log``."""
    import runner

    t = cfg.task
    final = play(str(t.lcbench_task), dict(t.hp), float(t.time_scale), int(t.epochs),
                 lambda epoch, acc: runner.log({"epoch": epoch, "val_accuracy": acc}))
    return {"val_accuracy": final}


if os.environ.get("LCBENCH_PRELOAD"):  # imported once by a fork server: every run shares it
    _bench()
